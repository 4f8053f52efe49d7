import { InvalidArgumentError } from '../errors.js';
import { decodeModel, encodeModel } from './codec.js';
import { GraphIndex } from './graph.js';
import type { GraphProto, ModelProto, NodeProto, TensorProto } from './proto.js';

/** An independent copy of a model, safe to edit. */
export function cloneModel(model: ModelProto): ModelProto {
  return decodeModel(encodeModel(model));
}

function graphOf(model: ModelProto) {
  const g = model.graph;
  if (!g) throw new InvalidArgumentError('model', 'has no graph');
  g.node ??= [];
  g.initializer ??= [];
  g.output ??= [];
  return g;
}

/** Every read of tensor `from` (node inputs) now reads `to`; graph outputs keep their names. */
export function rewire(model: ModelProto, from: string, to: string): void {
  const g = graphOf(model);
  for (const n of g.node!) {
    if (n.input) n.input = n.input.map((x) => (x === from ? to : x));
    for (const a of n.attribute ?? []) for (const sub of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) renameOuterRead(sub, from, to);
  }
  if (g.output!.some((o) => o.name === from)) {
    // The public interface must not change: keep the output name, fed by an Identity.
    g.node!.push({ op_type: 'Identity', name: `strata/identity/${from}`, input: [to], output: [from], domain: '' });
  }
}

/** Inside a subgraph, reads of an outer tensor `from` become `to`, unless the subgraph defines `from` itself. */
function renameOuterRead(g: GraphProto, from: string, to: string): void {
  const shadows =
    (g.input ?? []).some((v) => v.name === from) ||
    (g.initializer ?? []).some((t) => t.name === from) ||
    (g.node ?? []).some((n) => (n.output ?? []).includes(from));
  if (shadows) return;
  for (const n of g.node ?? []) {
    if (n.input) n.input = n.input.map((x) => (x === from ? to : x));
    for (const a of n.attribute ?? []) for (const sub of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) renameOuterRead(sub, from, to);
  }
  for (const v of g.output ?? []) if (v.name === from) v.name = to;
}

/**
 * Removes nodes that no graph output depends on, then initializers, graph inputs of
 * initializer type and value_info entries nothing uses any more.
 */
export function pruneDead(model: ModelProto): { removedNodes: number; removedInitializers: number } {
  const g = graphOf(model);
  const idx = new GraphIndex(g);
  const live = new Set<number>();
  const stack = idx.outputs.map((o) => idx.producer.get(o)).filter((i): i is number => i !== undefined);
  while (stack.length > 0) {
    const i = stack.pop()!;
    if (live.has(i)) continue;
    live.add(i);
    // allInputs includes what subgraph bodies read from this graph by name
    for (const inp of idx.allInputs(i)) {
      const p = idx.producer.get(inp);
      if (p !== undefined && !live.has(p)) stack.push(p);
    }
  }
  const before = g.node!.length;
  const used = new Set<string>(idx.outputs);
  for (const i of live) for (const x of idx.allInputs(i)) used.add(x);
  g.node = g.node!.filter((_, i) => live.has(i));
  // read before filtering: exporters that list weights as graph inputs need those inputs dropped too
  const initNames = new Set(g.initializer!.map((t) => t.name));
  const initBefore = g.initializer!.length;
  g.initializer = g.initializer!.filter((t) => used.has(t.name ?? ''));
  g.input = (g.input ?? []).filter((v) => !initNames.has(v.name) || used.has(v.name ?? ''));
  const produced = new Set<string>();
  for (const n of g.node) for (const o of n.output ?? []) produced.add(o);
  g.value_info = (g.value_info ?? []).filter((v) => produced.has(v.name ?? ''));
  return { removedNodes: before - g.node.length, removedInitializers: initBefore - g.initializer.length };
}

/** Adds tensors to the graph's outputs (activation capture); outputs already there are kept once. */
export function addOutputs(model: ModelProto, names: string[]): void {
  const g = graphOf(model);
  const have = new Set(g.output!.map((o) => o.name));
  for (const name of names) {
    if (have.has(name)) continue;
    g.output!.push({ name });
    have.add(name);
  }
}

export function replaceInitializer(model: ModelProto, tensor: TensorProto): void {
  const g = graphOf(model);
  const i = g.initializer!.findIndex((t) => t.name === tensor.name);
  if (i < 0) throw new InvalidArgumentError('initializer', `no initializer named "${tensor.name}"`);
  g.initializer![i] = tensor;
}

export function addInitializer(model: ModelProto, tensor: TensorProto): void {
  const g = graphOf(model);
  if (g.initializer!.some((t) => t.name === tensor.name)) {
    throw new InvalidArgumentError('initializer', `an initializer named "${tensor.name}" already exists`);
  }
  g.initializer!.push(tensor);
}

/** Adds nodes and restores a topological node order. */
export function insertNodes(model: ModelProto, nodes: NodeProto[]): void {
  const g = graphOf(model);
  g.node!.push(...nodes);
  sortNodes(model);
}

/** Rewrites graph.node in topological order (ONNX requires it; ORT rejects unsorted graphs). */
export function sortNodes(model: ModelProto): void {
  const g = graphOf(model);
  const idx = new GraphIndex(g);
  g.node = idx.order.map((i) => idx.node(i));
}

/** Removes the named nodes (by node index in graph.node). Callers rewire first. */
export function removeNodes(model: ModelProto, nodeIndices: Iterable<number>): void {
  const g = graphOf(model);
  const drop = new Set(nodeIndices);
  g.node = g.node!.filter((_, i) => !drop.has(i));
}

/** A name not used by any tensor or node of the graph, for nodes strata inserts. */
export function freshName(model: ModelProto, base: string): string {
  const g = graphOf(model);
  const taken = new Set<string>();
  for (const n of g.node!) {
    for (const x of [...(n.input ?? []), ...(n.output ?? [])]) taken.add(x);
    if (n.name) taken.add(n.name);
  }
  for (const t of g.initializer!) if (t.name) taken.add(t.name);
  if (!taken.has(base)) return base;
  for (let i = 1; ; i++) if (!taken.has(`${base}_${i}`)) return `${base}_${i}`;
}
