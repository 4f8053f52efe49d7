import { InvalidModelError } from '../errors.js';
import type { GraphProto, ModelProto, NodeProto, TensorProto, ValueInfo } from './proto.js';
import { int64ToNumber } from './proto.js';

/** A dimension: a number when fixed, the symbolic name (dim_param) when not, null when unknown. */
export type Dim = number | string | null;

/**
 * Index over a graph's nodes: producers, consumers, topological order, constants. Built once
 * from a GraphProto and rebuilt after edits (graphs strata edits have at most tens of thousands
 * of nodes, so a rebuild is cheap next to the runtime work around it).
 */
export class GraphIndex {
  readonly graph: GraphProto;
  readonly nodes: NodeProto[];
  /** tensor name → index of the node producing it */
  readonly producer = new Map<string, number>();
  /** tensor name → indices of the nodes consuming it (a node appears once per input slot) */
  readonly consumers = new Map<string, number[]>();
  readonly initializers = new Map<string, TensorProto>();
  readonly inputs: string[];
  readonly outputs: string[];
  /** node indices in a topological order */
  readonly order: number[];
  /** position of each node in `order` */
  readonly rank: Int32Array;
  /** tensors whose value does not depend on any graph input (weights and what is computed from them alone) */
  readonly constant = new Set<string>();
  /** per node: outer tensors its subgraphs (If/Loop/Scan bodies) read by name */
  private readonly implicit: string[][];

  constructor(graph: GraphProto) {
    this.graph = graph;
    this.nodes = graph.node ?? [];
    for (const t of graph.initializer ?? []) if (t.name) this.initializers.set(t.name, t);
    const initNames = new Set(this.initializers.keys());
    this.inputs = (graph.input ?? []).map((v) => v.name ?? '').filter((n) => !initNames.has(n));
    this.outputs = (graph.output ?? []).map((v) => v.name ?? '');
    this.implicit = this.nodes.map((n) => implicitInputs(n));
    this.nodes.forEach((n, i) => {
      for (const o of n.output ?? []) {
        if (!o) continue;
        if (this.producer.has(o)) {
          throw new InvalidModelError(`tensor "${o}" is produced by two nodes; an ONNX graph must be in SSA form`, { tensor: o });
        }
        this.producer.set(o, i);
      }
      for (const inp of this.allInputs(i)) {
        if (!inp) continue;
        const list = this.consumers.get(inp);
        if (list) list.push(i);
        else this.consumers.set(inp, [i]);
      }
    });
    this.order = this.topologicalOrder();
    this.rank = new Int32Array(this.nodes.length);
    this.order.forEach((nodeIdx, pos) => (this.rank[nodeIdx] = pos));
    for (const name of initNames) this.constant.add(name);
    const graphInputs = new Set(this.inputs);
    for (const i of this.order) {
      const n = this.nodes[i]!;
      const ins = this.allInputs(i).filter((x) => x);
      const isConst = ins.every((x) => !graphInputs.has(x) && (this.constant.has(x) || this.isOuterScope(x)));
      if (isConst) for (const o of n.output ?? []) if (o) this.constant.add(o);
    }
  }

  /** A node's explicit inputs and the outer tensors its subgraphs read: both order and keep it. */
  allInputs(i: number): string[] {
    const n = this.nodes[i]!;
    const implicit = this.implicit[i] ?? [];
    return implicit.length === 0 ? (n.input ?? []) : [...(n.input ?? []), ...implicit];
  }

  /** A name neither produced here nor declared: a subgraph capture from an outer scope. */
  private isOuterScope(name: string): boolean {
    return !this.producer.has(name) && !this.initializers.has(name) && !this.inputs.includes(name);
  }

  private topologicalOrder(): number[] {
    const known = new Set<string>([...this.inputs, ...this.initializers.keys(), '']);
    const indeg = new Int32Array(this.nodes.length);
    this.nodes.forEach((_, i) => {
      for (const inp of this.allInputs(i)) {
        if (!inp || known.has(inp)) continue;
        if (this.producer.has(inp)) indeg[i]!++;
        // names produced nowhere: outer-scope captures in subgraphs, or missing tensors
        // reported by validate(); they do not order anything.
      }
    });
    const ready: number[] = [];
    for (let i = 0; i < this.nodes.length; i++) if (indeg[i] === 0) ready.push(i);
    const order: number[] = [];
    // keep the file's order among ready nodes: exporters write nodes topologically already,
    // and a stable order keeps reports and unit ids reproducible.
    let head = 0;
    const pending: number[] = [];
    while (head < ready.length || pending.length > 0) {
      if (head >= ready.length) {
        pending.sort((a, b) => a - b);
        ready.push(...pending.splice(0));
      }
      const i = ready[head++]!;
      order.push(i);
      for (const o of this.nodes[i]!.output ?? []) {
        if (!o) continue;
        for (const c of this.consumers.get(o) ?? []) {
          indeg[c]!--;
          if (indeg[c] === 0) pending.push(c);
        }
      }
      if (head >= ready.length) {
        pending.sort((a, b) => a - b);
        ready.push(...pending.splice(0));
      }
    }
    if (order.length !== this.nodes.length) {
      const stuck = this.nodes.map((n, i) => ({ n, i })).filter(({ i }) => indeg[i]! > 0).slice(0, 5);
      throw new InvalidModelError(
        `the graph has a cycle (nodes ${stuck.map(({ n }) => `"${n.name ?? n.op_type}"`).join(', ')} …); ONNX graphs must be acyclic`,
      );
    }
    return order;
  }

  node(i: number): NodeProto {
    const n = this.nodes[i];
    if (!n) throw new RangeError(`node index ${i} out of range`);
    return n;
  }

  /** Consumers of a tensor, excluding duplicates. */
  consumersOf(tensor: string): number[] {
    return [...new Set(this.consumers.get(tensor) ?? [])];
  }

  isGraphOutput(tensor: string): boolean {
    return this.outputs.includes(tensor);
  }

  /** Every node input is produced, declared or an initializer; every graph output is produced. */
  validate(): void {
    const available = new Set<string>([...this.inputs, ...this.initializers.keys(), ...this.producer.keys()]);
    for (const n of this.nodes) {
      for (const inp of n.input ?? []) {
        if (inp && !available.has(inp)) {
          throw new InvalidModelError(`node "${n.name ?? n.op_type}" reads tensor "${inp}", which nothing produces`, { tensor: inp });
        }
      }
    }
    for (const o of this.outputs) {
      if (!available.has(o)) throw new InvalidModelError(`graph output "${o}" is not produced by any node`, { tensor: o });
    }
  }
}

export function dimsOf(v: ValueInfo | undefined): Dim[] | undefined {
  const shape = v?.type?.tensor_type?.shape;
  if (!shape) return undefined;
  return (shape.dim ?? []).map((d) => {
    // proto defaults live on the prototype: only an own field was actually present in the file
    if (Object.prototype.hasOwnProperty.call(d, 'dim_value')) return int64ToNumber(d.dim_value);
    if (Object.prototype.hasOwnProperty.call(d, 'dim_param') && d.dim_param) return d.dim_param;
    return null;
  });
}

/** Shapes declared in the model: graph inputs, outputs, value_info, initializers. */
export function declaredShapes(model: ModelProto): Map<string, Dim[]> {
  const g = model.graph ?? {};
  const shapes = new Map<string, Dim[]>();
  for (const v of [...(g.input ?? []), ...(g.output ?? []), ...(g.value_info ?? [])]) {
    const d = dimsOf(v);
    if (v.name && d) shapes.set(v.name, d);
  }
  for (const t of g.initializer ?? []) if (t.name) shapes.set(t.name, (t.dims ?? []).map(int64ToNumber));
  return shapes;
}

/**
 * Names a node's subgraphs read from enclosing scopes: every name used inside (recursively) that
 * the subgraph itself neither produces, declares as input, nor holds as an initializer.
 */
export function implicitInputs(n: NodeProto): string[] {
  const out = new Set<string>();
  const visit = (g: GraphProto, outerDefined: Set<string>) => {
    const defined = new Set<string>(outerDefined);
    for (const v of g.input ?? []) if (v.name) defined.add(v.name);
    for (const t of g.initializer ?? []) if (t.name) defined.add(t.name);
    for (const sn of g.node ?? []) for (const o of sn.output ?? []) if (o) defined.add(o);
    for (const sn of g.node ?? []) {
      for (const inp of sn.input ?? []) if (inp && !defined.has(inp)) out.add(inp);
      for (const a of sn.attribute ?? []) for (const sub of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) visit(sub, defined);
    }
    for (const v of g.output ?? []) if (v.name && !defined.has(v.name)) out.add(v.name);
  };
  for (const a of n.attribute ?? []) for (const sub of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) visit(sub, new Set());
  return [...out];
}
