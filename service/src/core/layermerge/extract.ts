/**
 * Reads the LayerMerge chain out of an ONNX graph: the convolutions along the network's trunk in
 * order, the activation after each, the residual skips over stretches of it, and barriers wherever
 * the trunk passes through something the chain cannot express.
 *
 * The trunk is followed tensor by tensor from the model's input. A tensor read by one node continues
 * through that node: a convolution (with the BatchNormalization discovery paired with it, folded
 * here) becomes a layer, an activation unit after a layer marks that position's activation, and any
 * other single-input node (pooling, reshape, a second activation in a row, …) is a barrier. A tensor
 * read by several nodes opens a fork; the fork closes at the first tensor every path from it reaches
 * (found by counting outstanding readers in topological order). If the closing node is an Add of the
 * fork tensor (identity skip) or of one convolution of it (projection skip) and the other operand is
 * a chain again, the fork is a residual; anything else — a concat, a skip with an activation on it, a
 * branch that starts with pooling — is kept whole as one barrier. Nothing here knows an architecture:
 * only data flow, operator types and shapes are used, so a graph the rules do not cover yields a
 * shorter or more interrupted chain, never a wrong one.
 *
 * Where the trunk cannot continue (several outputs, an unknown fork, a graph output read further on)
 * the chain ends; what lies before the first and after the last layer is the "rest" of the network,
 * which plans leave alone.
 */
import { UnsupportedModelError } from '../errors.js';
import { GraphIndex, type Dim } from '../onnx/graph.js';
import type { ModelProto, NodeProto, TensorProto } from '../onnx/proto.js';
import { DataType, readTensor, toFloat64 } from '../onnx/tensor.js';
import { attr, attrFloat, attrInt, attrInts } from '../structure/attributes.js';
import type { Unit } from '../structure/unit.js';
import type { Chain, ChainLayer, ResidualSpan } from './chain.js';
import { type ConvSpec, convOutputShape } from './conv.js';
import { foldBatchNorm } from './merge.js';

/** Where a chain layer lives in the graph. */
export interface LayerBinding {
  /** the conv unit's id (also the ChainLayer id) */
  id: string;
  convNode: string;
  batchNormNode?: string;
  /** the tensor the conv reads (the value at the layer's position) */
  input: string;
  /** the conv's output, after its BatchNormalization when there is one */
  output: string;
}

export interface ActivationBinding {
  /** the activation unit's id */
  id: string;
  kind: string;
  nodes: string[];
  input: string;
  output: string;
}

export interface ResidualBinding {
  addNode: string;
  /** the Add's output */
  output: string;
  /** the tensor the skip is taken from */
  skipInput: string;
  /** the branch operand of the Add */
  branchOutput: string;
  /** conv unit id of a projection skip */
  projectionId?: string;
  /** nodes of the projection (conv and its BatchNormalization) */
  projectionNodes: string[];
}

export interface ExtractedChain {
  chain: Chain;
  layers: LayerBinding[];
  /** one per chain.residuals entry */
  residuals: ResidualBinding[];
  /** index p: the activation at position p (undefined where there is none); length L + 1 */
  activations: (ActivationBinding | undefined)[];
  /** why parts of the trunk became barriers or why the chain ended, for reports */
  notes: string[];
}

type Item =
  | { kind: 'conv'; unit: Unit; spec: ConvSpec; inH: number; inW: number }
  | { kind: 'act'; unit: Unit }
  | { kind: 'opaque'; what: string }
  | {
      kind: 'residual';
      skip: 'identity' | 'projection';
      projection?: { unit: Unit; spec: ConvSpec };
      branch: Item[];
      addNode: number;
      output: string;
      skipInput: string;
      branchOutput: string;
      /** shapes of the skip input and the branch output, [c, h, w] */
      inShape: number[];
      outShape: number[];
      what: string;
    };

interface ParseResult {
  items: Item[];
  /** the tensor the parse stopped at */
  end: string;
  complete: boolean;
  stopReason?: string;
}

const JOINS = new Set(['Add', 'Sum']);

/**
 * The chain of a model whose structure has been discovered (`units` from discoverStructure over the
 * same `shapes`). `shapes` must hold numeric shapes of the trunk's tensors (probeShapes gives them).
 */
export function extractChain(model: ModelProto, units: readonly Unit[], shapes: Map<string, Dim[]>): ExtractedChain {
  return new Extractor(model, units, shapes).run();
}

/**
 * The tensor a block (i, j] replaces: the output of the outermost residual ending at j that the block
 * covers, otherwise the output of layer j − 1. Everything that read it reads the block's result.
 */
export function replacedTensor(x: ExtractedChain, i: number, j: number): string {
  let best: number | null = null;
  x.chain.residuals.forEach((r, n) => {
    if (r.end !== j || r.start < i) return;
    if (best === null || r.start < x.chain.residuals[best]!.start) best = n;
  });
  return best === null ? x.layers[j - 1]!.output : x.residuals[best]!.output;
}

class Extractor {
  private readonly idx: GraphIndex;
  private readonly byName = new Map<string, number>();
  private readonly convUnitByNode = new Map<number, Unit>();
  private readonly activationByInput = new Map<string, Unit>();
  private readonly notes: string[] = [];

  constructor(
    model: ModelProto,
    units: readonly Unit[],
    private readonly shapes: Map<string, Dim[]>,
  ) {
    this.idx = new GraphIndex(model.graph ?? {});
    this.idx.nodes.forEach((n, i) => this.byName.set(n.name && n.name.length > 0 ? n.name : `${n.op_type}#${i}`, i));
    for (const u of units) {
      if (u.kind === 'conv') {
        const first = this.byName.get(u.nodes[0] ?? '');
        if (first !== undefined) this.convUnitByNode.set(first, u);
      } else if (u.kind === 'activation') {
        this.activationByInput.set(u.input, u);
      }
    }
  }

  run(): ExtractedChain {
    const inputs = this.idx.inputs;
    const outputs = this.idx.outputs;
    if (inputs.length !== 1 || outputs.length < 1) {
      throw new UnsupportedModelError(
        `LayerMerge follows one input through the network; this model has ${inputs.length} inputs and ${outputs.length} outputs`,
      );
    }
    const allowed = this.ancestorsOf(outputs);
    const target = outputs.length === 1 ? outputs[0]! : '';
    const parsed = this.parse(inputs[0]!, target, allowed);
    if (!parsed.complete && parsed.stopReason) this.notes.push(`the chain ends at "${parsed.end}": ${parsed.stopReason}`);
    const flat = new Flattener(this.idx, this.notes);
    flat.emit(parsed.items);
    if (flat.layers.length === 0) {
      throw new UnsupportedModelError('found no convolution chain in this model: LayerMerge needs consecutive 2-D convolutions on the trunk');
    }
    return flat.result();
  }

  private nodeName(i: number): string {
    const n = this.idx.node(i);
    return n.name && n.name.length > 0 ? n.name : `${n.op_type}#${i}`;
  }

  private isData(t: string): boolean {
    return t !== '' && !this.idx.constant.has(t);
  }

  private ancestorsOf(tensors: readonly string[]): Set<number> {
    const seen = new Set<number>();
    const stack = tensors.map((t) => this.idx.producer.get(t)).filter((p): p is number => p !== undefined);
    while (stack.length > 0) {
      const i = stack.pop()!;
      if (seen.has(i)) continue;
      seen.add(i);
      for (const t of this.idx.node(i).input ?? []) {
        const p = this.idx.producer.get(t);
        if (p !== undefined && !seen.has(p)) stack.push(p);
      }
    }
    return seen;
  }

  private readers(t: string, allowed: Set<number>): number[] {
    return this.idx.consumersOf(t).filter((c) => allowed.has(c));
  }

  private shape3(t: string): number[] | null {
    const s = this.shapes.get(t);
    if (!s || s.length !== 4) return null;
    const [, c, h, w] = s;
    return typeof c === 'number' && typeof h === 'number' && typeof w === 'number' ? [c, h, w] : null;
  }

  /** Follows the trunk from `from` until `to` (or until it cannot go on), inside the node set `allowed`. */
  private parse(from: string, to: string, allowed: Set<number>): ParseResult {
    const items: Item[] = [];
    let cur = from;
    const stop = (reason: string): ParseResult => ({ items, end: cur, complete: false, stopReason: reason });
    for (let guard = 0; cur !== to; guard++) {
      if (guard > this.idx.nodes.length + 1) return stop('the walk does not advance');
      if (this.idx.isGraphOutput(cur)) return stop('it is a graph output that is also read further on');
      const readers = this.readers(cur, allowed);
      if (readers.length === 0) return stop('nothing on the way to the output reads it');

      const act = this.activationByInput.get(cur);
      if (act) {
        const nodes = act.nodes.map((n) => this.byName.get(n));
        if (nodes.every((n) => n !== undefined && allowed.has(n)) && readers.every((r) => nodes.includes(r))) {
          items.push({ kind: 'act', unit: act });
          cur = act.output;
          continue;
        }
      }

      if (readers.length === 1) {
        const n = readers[0]!;
        const conv = this.convUnitByNode.get(n);
        if (conv && conv.input === cur && conv.nodes.every((name) => allowed.has(this.byName.get(name) ?? -1))) {
          const item = this.convItem(conv, cur);
          if (typeof item !== 'string') {
            items.push(item);
            cur = conv.output;
            continue;
          }
          items.push({ kind: 'opaque', what: `${conv.id}: ${item}` });
          cur = conv.output;
          continue;
        }
        const node = this.idx.node(n);
        const data = (node.input ?? []).filter((t) => this.isData(t));
        const outs = (node.output ?? []).filter((o) => o !== '' && (o === to || this.readers(o, allowed).length > 0));
        if (data.length === 1 && data[0] === cur && outs.length === 1) {
          items.push({ kind: 'opaque', what: `${node.op_type ?? '?'} "${this.nodeName(n)}"` });
          cur = outs[0]!;
          continue;
        }
        return stop(`${node.op_type ?? '?'} "${this.nodeName(n)}" reads other data besides the trunk`);
      }

      const region = this.findJoin(cur, to, allowed);
      if (!region) return stop(`the ${readers.length} paths leaving it do not meet again before the output`);
      items.push(this.regionItem(cur, region.join, region.nodes));
      cur = region.join;
    }
    return { items, end: cur, complete: true };
  }

  /**
   * The first tensor that every path from `from` passes through: nodes reading the fork's tensors are
   * visited in topological order while the number of outstanding readers per live tensor is tracked;
   * when only one live tensor is left, just produced, the paths have met. A node that also reads data
   * from outside the fork means the region is not a function of `from` alone: no join.
   */
  private findJoin(from: string, to: string, allowed: Set<number>): { join: string; nodes: Set<number> } | null {
    const pending = new Map<string, number>([[from, this.readers(from, allowed).length]]);
    const region = new Set<number>();
    const produced = new Set<string>([from]);
    const startRank = (() => {
      const p = this.idx.producer.get(from);
      return p === undefined ? -1 : this.idx.rank[p]!;
    })();
    for (const n of this.idx.order) {
      if (this.idx.rank[n]! <= startRank || !allowed.has(n)) continue;
      const node = this.idx.node(n);
      const data = [...new Set((node.input ?? []).filter((t) => this.isData(t)))];
      const live = data.filter((t) => pending.has(t));
      if (live.length === 0) continue;
      if (data.some((t) => !produced.has(t))) return null;
      for (const t of live) {
        const left = pending.get(t)! - 1;
        if (left === 0) pending.delete(t);
        else pending.set(t, left);
      }
      region.add(n);
      for (const o of node.output ?? []) {
        if (o === '') continue;
        produced.add(o);
        const readers = this.readers(o, allowed).length + (o === to ? 1 : 0);
        if (this.idx.isGraphOutput(o) && o !== to) return null;
        if (readers > 0) pending.set(o, readers);
      }
      if (pending.size === 0) return null;
      if (pending.size === 1) {
        const [only] = pending.keys();
        if ((node.output ?? []).includes(only!)) return { join: only!, nodes: region };
      }
    }
    return null;
  }

  /** A fork-join region as a residual when it is one, else as one barrier. */
  private regionItem(from: string, join: string, nodes: Set<number>): Item {
    const addIdx = this.idx.producer.get(join)!;
    const add = this.idx.node(addIdx);
    const describe = `${nodes.size} nodes from "${from}" to "${join}"`;
    const opaque = (why: string): Item => ({ kind: 'opaque', what: `${describe} (${why})` });
    const data = (add.input ?? []).filter((t) => this.isData(t));
    if (!JOINS.has(add.op_type ?? '') || (add.input ?? []).length !== 2 || data.length !== 2) {
      return opaque(`joined by ${add.op_type ?? '?'}, not a two-operand Add`);
    }
    const [a, b] = data as [string, string];
    let skip: 'identity' | 'projection';
    let branchOp: string;
    let projection: { unit: Unit; spec: ConvSpec } | undefined;
    if (a === from || b === from) {
      if (a === b) return opaque('adds the fork tensor to itself');
      skip = 'identity';
      branchOp = a === from ? b : a;
    } else {
      const proj = [a, b]
        .map((t) => ({ t, unit: this.convUnitByNode.get(this.firstNodeOfUnitProducing(t) ?? -1) }))
        .find(({ t, unit }) => unit !== undefined && unit.input === from && unit.output === t);
      if (!proj || !proj.unit) return opaque('the skip is neither the fork tensor nor one convolution of it');
      const item = this.convItem(proj.unit, from);
      if (typeof item === 'string') return opaque(`projection ${proj.unit.id}: ${item}`);
      if (item.kind !== 'conv') return opaque('projection is not a convolution');
      skip = 'projection';
      projection = { unit: proj.unit, spec: item.spec };
      branchOp = proj.t === a ? b : a;
    }
    const branchNodes = this.backwardWithin(branchOp, from, nodes);
    const skipNodes = [...nodes].filter((n) => n !== addIdx && !branchNodes.has(n));
    const expectedSkip = projection ? projection.unit.nodes.map((name) => this.byName.get(name)) : [];
    if (skipNodes.length !== expectedSkip.length || !skipNodes.every((n) => expectedSkip.includes(n))) {
      return opaque('the skip path holds more than the skip');
    }
    const branch = this.parse(from, branchOp, branchNodes);
    if (!branch.complete) return opaque(`its branch is not a chain: ${branch.stopReason ?? ''}`);
    const inShape = this.shape3(from);
    const outShape = this.shape3(branchOp);
    if (!inShape || !outShape) return opaque('not over 2-D feature maps of known shape');
    return {
      kind: 'residual',
      skip,
      ...(projection ? { projection } : {}),
      branch: branch.items,
      addNode: addIdx,
      output: join,
      skipInput: from,
      branchOutput: branchOp,
      inShape,
      outShape,
      what: describe,
    };
  }

  private firstNodeOfUnitProducing(t: string): number | undefined {
    const p = this.idx.producer.get(t);
    if (p === undefined) return undefined;
    for (const [first, u] of this.convUnitByNode) if (u.output === t) return first;
    return p;
  }

  /** Nodes of `within` that `t` depends on, walking back no further than `stop`. */
  private backwardWithin(t: string, stop: string, within: Set<number>): Set<number> {
    const out = new Set<number>();
    const stack = [t];
    const seen = new Set<string>();
    while (stack.length > 0) {
      const cur = stack.pop()!;
      if (cur === stop || seen.has(cur)) continue;
      seen.add(cur);
      const p = this.idx.producer.get(cur);
      if (p === undefined || !within.has(p)) continue;
      out.add(p);
      for (const inp of this.idx.node(p).input ?? []) if (this.isData(inp)) stack.push(inp);
    }
    return out;
  }

  /** A conv unit as a chain layer, or why it cannot be one. */
  private convItem(unit: Unit, input: string): Item | string {
    const convIdx = this.byName.get(unit.nodes[0] ?? '');
    if (convIdx === undefined) return 'its node is missing';
    const conv = this.idx.node(convIdx);
    const shape = this.shape3(input);
    if (!shape) return 'not a 2-D convolution over a map of known shape';
    const weight = this.constantTensor(conv.input?.[1]);
    if (!weight) return 'its weights are not constant';
    if (weight.data_type !== DataType.FLOAT) return 'its weights are not float32';
    const w = readTensor(weight);
    if (w.dims.length !== 4) return 'not a 2-D convolution';
    const [cout, cinG, kh, kw] = w.dims as [number, number, number, number];
    const group = attrInt(conv, 'group', 1);
    const stride = attrInts(conv, 'strides') ?? [1, 1];
    const dilation = attrInts(conv, 'dilations') ?? [1, 1];
    const kernel = attrInts(conv, 'kernel_shape') ?? [kh, kw];
    if (kernel[0] !== kh || kernel[1] !== kw) return 'kernel_shape disagrees with the weights';
    const pads = this.pads(conv, shape, [kh, kw], stride, dilation);
    if (!pads) return 'its auto_pad setting is not supported';
    if (stride.length !== 2 || dilation.length !== 2) return 'not a 2-D convolution';
    const biasName = conv.input?.[2];
    let bias = new Float32Array(cout);
    if (biasName) {
      const b = this.constantTensor(biasName);
      if (!b || b.data_type !== DataType.FLOAT) return 'its bias is not a float32 constant';
      bias = Float32Array.from(toFloat64(readTensor(b)));
    }
    let spec: ConvSpec = {
      cin: cinG * group,
      cout,
      kh,
      kw,
      stride: [stride[0]!, stride[1]!],
      pads,
      dilation: [dilation[0]!, dilation[1]!],
      group,
      weight: w.data as Float32Array,
      bias,
    };
    if (spec.cin !== shape[0]) return `reads ${shape[0]} channels, its weights expect ${spec.cin}`;
    if (unit.conv?.batchNorm) {
      const bnIdx = this.byName.get(unit.nodes[1] ?? '');
      if (bnIdx === undefined) return 'its BatchNormalization is missing';
      const bn = this.idx.node(bnIdx);
      if (attrInt(bn, 'training_mode', 0) !== 0) return 'its BatchNormalization is in training mode';
      const params = [1, 2, 3, 4].map((k) => this.constantTensor(bn.input?.[k]));
      if (params.some((p) => !p)) return 'its BatchNormalization parameters are not constant';
      const [scale, b, mean, variance] = params.map((p) => toFloat64(readTensor(p!))) as [Float64Array, Float64Array, Float64Array, Float64Array];
      spec = foldBatchNorm(spec, { scale, bias: b, mean, var: variance, epsilon: attrFloat(bn, 'epsilon', 1e-5) });
    }
    return { kind: 'conv', unit, spec, inH: shape[1]!, inW: shape[2]! };
  }

  private pads(conv: NodeProto, shape: number[], k: number[], stride: number[], dilation: number[]): [number, number, number, number] | null {
    const mode = attr(conv, 'auto_pad');
    const text = mode?.s ? new TextDecoder().decode(mode.s) : 'NOTSET';
    if (text === 'NOTSET' || text === '') {
      const p = attrInts(conv, 'pads') ?? [0, 0, 0, 0];
      return p.length === 4 ? [p[0]!, p[1]!, p[2]!, p[3]!] : null;
    }
    if (text === 'VALID') return [0, 0, 0, 0];
    if (text !== 'SAME_UPPER' && text !== 'SAME_LOWER') return null;
    const out: number[] = [0, 0, 0, 0];
    for (let a = 0; a < 2; a++) {
      const size = shape[a + 1]!;
      const s = stride[a] ?? 1;
      const total = Math.max(0, (Math.ceil(size / s) - 1) * s + (dilation[a] ?? 1) * (k[a]! - 1) + 1 - size);
      const small = Math.floor(total / 2);
      out[a] = text === 'SAME_UPPER' ? small : total - small;
      out[a + 2] = total - out[a]!;
    }
    return out as [number, number, number, number];
  }

  private constantTensor(name: string | undefined): TensorProto | undefined {
    if (!name) return undefined;
    const init = this.idx.initializers.get(name);
    if (init) return init;
    const p = this.idx.producer.get(name);
    if (p === undefined) return undefined;
    const n = this.idx.node(p);
    if (n.op_type !== 'Constant') return undefined;
    return (n.attribute ?? []).find((a) => a.name === 'value')?.t;
  }
}

/** Turns the parsed trunk into the flat chain: layers, positions, residual spans. */
class Flattener {
  readonly layers: ChainLayer[] = [];
  readonly bindings: LayerBinding[] = [];
  readonly residuals: ResidualSpan[] = [];
  readonly residualBindings: ResidualBinding[] = [];
  readonly activations: (ActivationBinding | undefined)[] = [undefined];
  private last: 'none' | 'layer' | 'act' | 'opaque' | 'residual' = 'none';

  constructor(
    private readonly idx: GraphIndex,
    private readonly notes: string[],
  ) {}

  private readonly barrierNotes: { after: number; what: string }[] = [];

  private barrier(what: string): void {
    const prev = this.layers[this.layers.length - 1];
    if (prev) {
      prev.barrierAfter = true;
      this.barrierNotes.push({ after: this.layers.length - 1, what });
    }
    this.last = 'opaque';
  }

  emit(items: readonly Item[]): void {
    for (const item of items) {
      switch (item.kind) {
        case 'conv': {
          const u = item.unit;
          const nodes = u.nodes;
          this.layers.push({ id: u.id, spec: item.spec, inH: item.inH, inW: item.inW, activationAfter: false });
          this.bindings.push({
            id: u.id,
            convNode: nodes[0]!,
            ...(nodes[1] !== undefined ? { batchNormNode: nodes[1] } : {}),
            input: u.input,
            output: u.output,
          });
          this.activations.push(undefined);
          this.last = 'layer';
          break;
        }
        case 'act': {
          const p = this.layers.length;
          if ((this.last === 'layer' || this.last === 'residual') && p > 0 && this.activations[p] === undefined) {
            this.layers[p - 1]!.activationAfter = true;
            this.activations[p] = {
              id: item.unit.id,
              kind: item.unit.activation ?? 'activation',
              nodes: item.unit.nodes,
              input: item.unit.input,
              output: item.unit.output,
            };
            this.last = 'act';
          } else {
            this.barrier(`activation ${item.unit.id} does not directly follow a convolution`);
          }
          break;
        }
        case 'opaque':
          this.barrier(item.what);
          break;
        case 'residual':
          if (this.wellFormed(item)) {
            const start = this.layers.length;
            this.emit(item.branch);
            const end = this.layers.length;
            if (this.residuals.some((r) => r.start === start && r.end === end)) {
              // The chain cannot hold two skips over the same span; the outer one stays in the graph.
              this.barrier(`${item.what} (a second skip over the same span)`);
              break;
            }
            const span: ResidualSpan = { start, end, skip: item.skip };
            if (item.projection) span.projection = item.projection.spec;
            this.residuals.push(span);
            const add = this.idx.node(item.addNode);
            this.residualBindings.push({
              addNode: add.name && add.name.length > 0 ? add.name : `${add.op_type}#${item.addNode}`,
              output: item.output,
              skipInput: item.skipInput,
              branchOutput: item.branchOutput,
              ...(item.projection ? { projectionId: item.projection.unit.id } : {}),
              projectionNodes: item.projection ? item.projection.unit.nodes : [],
            });
            this.last = 'residual';
          } else {
            this.barrier(`${item.what} (not a chain residual)`);
          }
          break;
        default: {
          const never: never = item;
          throw new Error(`unknown item ${JSON.stringify(never)}`);
        }
      }
    }
  }

  /**
   * The chain's residual model: the skip is taken at the input of the branch's first conv and added to
   * the output of its last conv, before that position's activation. Branches that start or end with
   * something else (pooling first, an activation before the Add) do not fit it.
   */
  private wellFormed(item: Extract<Item, { kind: 'residual' }>): boolean {
    const first = item.branch[0];
    const last = item.branch[item.branch.length - 1];
    const edgeOk = (it: Item | undefined): boolean =>
      it !== undefined && (it.kind === 'conv' || (it.kind === 'residual' && this.wellFormed(it)));
    if (!edgeOk(first) || !edgeOk(last)) return false;
    const [c0, h0, w0] = item.inShape as [number, number, number];
    const [c1, h1, w1] = item.outShape as [number, number, number];
    if (item.skip === 'identity') return c0 === c1 && h0 === h1 && w0 === w1;
    const p = item.projection!.spec;
    const o = convOutputShape(p, h0, w0);
    return p.cin === c0 && p.cout === c1 && o.h === h1 && o.w === w1;
  }

  result(): ExtractedChain {
    while (this.activations.length < this.layers.length + 1) this.activations.push(undefined);
    // What follows the last layer is the head, outside the chain anyway; only interruptions are news.
    for (const b of this.barrierNotes) {
      if (b.after < this.layers.length - 1) this.notes.push(`barrier after ${this.layers[b.after]!.id}: ${b.what}`);
    }
    return {
      chain: { layers: this.layers, residuals: this.residuals },
      layers: this.bindings,
      residuals: this.residualBindings,
      activations: this.activations,
      notes: this.notes,
    };
  }
}

