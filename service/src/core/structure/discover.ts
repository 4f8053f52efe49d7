import { UnsupportedModelError } from '../errors.js';
import { GraphIndex, type Dim } from '../onnx/graph.js';
import { ONNX_OPERATORS, RUNTIME_DOMAINS, isDefaultDomain } from '../onnx/operators.js';
import type { ModelProto, NodeProto } from '../onnx/proto.js';
import { int64ToNumber } from '../onnx/proto.js';
import { attrFloat, attrInts, attrInt } from './attributes.js';
import type { ConvInfo, Structure, Unit, UnitKind } from './unit.js';

/**
 * Structure discovery: finds, in any exported graph, the units a planner can act on — residual
 * blocks, transformer blocks (attention + MLP residual pairs), convolutions with their
 * BatchNorm, activations (single ops and decomposed patterns such as SiLU and GELU), and linear
 * layers. It works on data flow alone (which tensors depend on which), never on node names or
 * per-architecture rules, so it applies to exports it has never seen.
 */
export function discoverStructure(model: ModelProto, shapes: Map<string, Dim[]>): Structure {
  const idx = new GraphIndex(model.graph ?? {});
  const warnings = checkOperators(idx);
  const d = new Discovery(idx, shapes);
  return { units: d.run(), warnings };
}

/** Unknown operators are an error; ops of onnxruntime's own domains are a warning. */
export function checkOperators(idx: GraphIndex): string[] {
  const unknown = new Map<string, number>();
  const opaque = new Map<string, number>();
  for (const n of idx.nodes) {
    const key = `${n.domain ? `${n.domain}::` : ''}${n.op_type}`;
    if (isDefaultDomain(n.domain)) {
      if (!ONNX_OPERATORS.has(n.op_type ?? '')) unknown.set(key, (unknown.get(key) ?? 0) + 1);
    } else if (RUNTIME_DOMAINS.has(n.domain ?? '')) {
      opaque.set(key, (opaque.get(key) ?? 0) + 1);
    } else {
      unknown.set(key, (unknown.get(key) ?? 0) + 1);
    }
  }
  if (unknown.size > 0) {
    const list = [...unknown].map(([k, c]) => `${k} (${c}×)`).join(', ');
    throw new UnsupportedModelError(
      `the model uses operators strata does not know: ${list}; strata accepts the standard ONNX operator set (ai.onnx, ai.onnx.ml) and onnxruntime's com.microsoft ops`,
      { operators: [...unknown.keys()] },
    );
  }
  return [...opaque].map(
    ([k, c]) => `operator ${k} (${c}×) runs in onnxruntime but strata does not look inside it; units containing it are not removable`,
  );
}

const ELEMENTWISE = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Sqrt', 'Erf', 'Tanh', 'Sigmoid', 'HardSigmoid', 'Clip', 'Relu', 'Softplus',
  'Exp', 'Neg', 'Abs', 'Min', 'Max', 'Reciprocal',
]);

const SINGLE_ACTIVATIONS: Record<string, string> = {
  Relu: 'relu', LeakyRelu: 'leakyrelu', HardSwish: 'hardswish', Sigmoid: 'sigmoid', Tanh: 'tanh', Elu: 'elu',
  Selu: 'selu', Celu: 'celu', Softplus: 'softplus', Softsign: 'softsign', Gelu: 'gelu', PRelu: 'prelu', Mish: 'mish',
  HardSigmoid: 'hardsigmoid', ThresholdedRelu: 'thresholdedrelu', Swish: 'silu',
};

const NORM_OPS = new Set([
  'ReduceMean', 'ReduceSumSquare', 'Sub', 'Pow', 'Add', 'Sqrt', 'Div', 'Mul', 'Reciprocal', 'Cast', 'Mean',
  'LayerNormalization', 'RMSNormalization',
]);
const REDUCTIONS = new Set(['ReduceMean', 'ReduceSumSquare', 'LayerNormalization', 'RMSNormalization']);

const PARAMETRIC = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'Einsum', 'QLinearConv', 'QLinearMatMul', 'ConvInteger', 'MatMulInteger']);

interface Region {
  nodes: Set<number>;
  input: string;
  output: string;
}

class Discovery {
  private readonly idx: GraphIndex;
  private readonly shapes: Map<string, Dim[]>;
  private readonly units: (Unit & { nodeSet: Set<number>; rankKey: number })[] = [];

  constructor(idx: GraphIndex, shapes: Map<string, Dim[]>) {
    this.idx = idx;
    this.shapes = shapes;
  }

  run(): Unit[] {
    // linear layers first: their bias Add must not be absorbed into a decomposed activation
    const claimed = this.findLinears();
    const activationOf = this.findActivations(claimed);
    this.findConvs(activationOf);
    const residuals = this.findResiduals();
    this.findTransformers(residuals);
    return this.finish();
  }

  private nodeName(i: number): string {
    const n = this.idx.node(i);
    return n.name && n.name.length > 0 ? n.name : `${n.op_type}#${i}`;
  }

  private isData(t: string): boolean {
    return t !== '' && !this.idx.constant.has(t);
  }

  private dataInputs(n: NodeProto): string[] {
    return (n.input ?? []).filter((t) => this.isData(t));
  }

  private shape(t: string): Dim[] | null {
    return this.shapes.get(t) ?? null;
  }

  private add(kind: UnitKind, nodes: Set<number>, input: string, output: string, extra: Partial<Unit> = {}): Unit {
    const sorted = [...nodes].sort((a, b) => this.idx.rank[a]! - this.idx.rank[b]!);
    const producer = this.idx.producer.get(output);
    const unit = {
      id: '',
      kind,
      nodes: sorted.map((i) => this.nodeName(i)),
      input,
      output,
      removable: false,
      parameters: this.countParameters(nodes),
      macs: this.countMacs(nodes),
      inputShape: this.shape(input),
      outputShape: this.shape(output),
      children: [],
      ...extra,
      nodeSet: nodes,
      rankKey: producer === undefined ? -1 : this.idx.rank[producer]!,
    };
    this.units.push(unit);
    return unit;
  }

  // ---------- activations ----------

  /** Returns: activation unit by the tensor it reads. */
  private findActivations(claimed: Set<number>): Map<string, Unit> {
    const byInput = new Map<string, Unit>();
    const used = new Set<number>(claimed);
    for (const i of this.idx.order) {
      if (used.has(i)) continue;
      const n = this.idx.node(i);
      // x·x counts once: GELU-tanh exports start with Mul(x, x)
      const data = [...new Set(this.dataInputs(n))];
      if (data.length !== 1 || !ELEMENTWISE.has(n.op_type ?? '') && !SINGLE_ACTIVATIONS[n.op_type ?? '']) continue;
      const x = data[0]!;
      const region = this.growElementwise(i, x, used);
      let name = region ? this.classifyActivation(region) : undefined;
      let chosen = region;
      if (!name) {
        const single = this.singleActivation(n);
        if (!single) continue;
        name = single;
        chosen = { nodes: new Set([i]), input: x, output: n.output?.[0] ?? '' };
      }
      if (!chosen) continue;
      for (const j of chosen.nodes) used.add(j);
      const unit = this.add('activation', chosen.nodes, chosen.input, chosen.output, { activation: name });
      unit.removable = sameShape(unit.inputShape, unit.outputShape);
      if (!unit.removable) unit.reason = 'input and output shapes differ or are unknown';
      byInput.set(chosen.input, unit);
    }
    return byInput;
  }

  private singleActivation(n: NodeProto): string | undefined {
    const op = n.op_type ?? '';
    if (op === 'Clip') {
      const [lo, hi] = this.clipBounds(n);
      if (lo === 0 && hi === 6) return 'relu6';
      if (lo === 0 && hi === Infinity) return 'relu';
      return 'clip';
    }
    return SINGLE_ACTIVATIONS[op];
  }

  private clipBounds(n: NodeProto): [number, number] {
    const lo = this.scalar(n.input?.[1]) ?? attrFloat(n, 'min', -Infinity);
    const hi = this.scalar(n.input?.[2]) ?? attrFloat(n, 'max', Infinity);
    return [lo, hi];
  }

  /** The value of a one-element constant tensor (initializer or Constant node), if it is one. */
  private scalar(name: string | undefined): number | undefined {
    if (!name) return undefined;
    const t = this.idx.initializers.get(name) ?? this.constantNodeTensor(name);
    if (!t) return undefined;
    const count = (t.dims ?? []).map(int64ToNumber).reduce((a, b) => a * b, 1);
    if (count !== 1) return undefined;
    if (t.float_data && t.float_data.length === 1) return t.float_data[0];
    const raw = t.raw_data;
    if (!raw) return undefined;
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    if (t.data_type === 1 && raw.byteLength === 4) return dv.getFloat32(0, true);
    if (t.data_type === 11 && raw.byteLength === 8) return dv.getFloat64(0, true);
    return undefined;
  }

  private constantNodeTensor(name: string) {
    const p = this.idx.producer.get(name);
    if (p === undefined) return undefined;
    const n = this.idx.node(p);
    if (n.op_type !== 'Constant') return undefined;
    return (n.attribute ?? []).find((a) => a.name === 'value')?.t;
  }

  /**
   * The largest set of elementwise nodes reachable from `seed` whose data inputs all come from x
   * or from the set itself, and which hands exactly one tensor to the rest of the graph: a
   * decomposed activation such as x·σ(x) or 0.5·x·(1 + erf(x/√2)).
   */
  private growElementwise(seed: number, x: string, used: Set<number>): Region | undefined {
    const nodes = new Set<number>([seed]);
    const inside = new Set<string>([x, ...(this.idx.node(seed).output ?? [])]);
    let grew = true;
    while (grew && nodes.size < 12) {
      grew = false;
      for (const t of [...inside]) {
        for (const c of this.idx.consumersOf(t)) {
          if (nodes.has(c) || used.has(c)) continue;
          const cn = this.idx.node(c);
          if (!ELEMENTWISE.has(cn.op_type ?? '')) continue;
          if (!this.dataInputs(cn).every((d) => inside.has(d))) continue;
          nodes.add(c);
          for (const o of cn.output ?? []) inside.add(o);
          grew = true;
        }
      }
    }
    const exits = new Set<string>();
    for (const i of nodes) {
      for (const o of this.idx.node(i).output ?? []) {
        const external = this.idx.consumersOf(o).some((c) => !nodes.has(c)) || this.idx.isGraphOutput(o);
        if (external) exits.add(o);
      }
    }
    if (exits.size !== 1) return undefined;
    return { nodes, input: x, output: [...exits][0]! };
  }

  private classifyActivation(r: Region): string | undefined {
    const ops = [...r.nodes].map((i) => this.idx.node(i).op_type ?? '');
    const has = (op: string) => ops.includes(op);
    if (ops.length === 1) {
      const n = this.idx.node([...r.nodes][0]!);
      return this.singleActivation(n);
    }
    if (has('Erf') && has('Mul')) return 'gelu';
    if (has('Tanh') && has('Softplus')) return 'mish';
    if (has('Tanh') && has('Mul') && (has('Pow') || ops.filter((o) => o === 'Mul').length >= 3)) return 'gelu-tanh';
    if (has('Sigmoid') && has('Mul') && ops.length === 2) return 'silu';
    if (has('HardSigmoid') && has('Mul') && ops.length === 2) return 'hardswish';
    if (has('Clip') && has('Mul') && has('Add') && ops.length <= 4) return 'hardswish';
    return undefined;
  }

  // ---------- convolutions and linear layers ----------

  private findConvs(activationOf: Map<string, Unit>): void {
    for (const i of this.idx.order) {
      const n = this.idx.node(i);
      if (n.op_type !== 'Conv' || !isDefaultDomain(n.domain)) continue;
      const x = n.input?.[0] ?? '';
      let out = n.output?.[0] ?? '';
      const nodes = new Set([i]);
      let batchNorm = false;
      const next = this.soleConsumer(out);
      if (next !== undefined && this.idx.node(next).op_type === 'BatchNormalization') {
        nodes.add(next);
        out = this.idx.node(next).output?.[0] ?? out;
        batchNorm = true;
      }
      const info = this.convInfo(n, batchNorm);
      const act = activationOf.get(out);
      if (act?.activation) info.activation = act.activation;
      const unit = this.add('conv', nodes, x, out, { conv: info });
      unit.removable = sameShape(unit.inputShape, unit.outputShape);
      if (!unit.removable) {
        unit.reason =
          info.inChannels !== info.outChannels
            ? `changes channels (${info.inChannels} → ${info.outChannels})`
            : info.stride.some((s) => s > 1)
              ? `strided (stride ${info.stride.join('×')})`
              : 'input and output shapes differ or are unknown';
      }
    }
  }

  private soleConsumer(t: string): number | undefined {
    const cs = this.idx.consumersOf(t);
    return cs.length === 1 && !this.idx.isGraphOutput(t) ? cs[0] : undefined;
  }

  private convInfo(n: NodeProto, batchNorm: boolean): ConvInfo {
    const w = this.idx.initializers.get(n.input?.[1] ?? '');
    const wDims = w ? (w.dims ?? []).map(int64ToNumber) : (this.shape(n.input?.[1] ?? '') ?? []).map((d) => (typeof d === 'number' ? d : 0));
    const groups = attrInt(n, 'group', 1);
    const spatial = Math.max(wDims.length - 2, 0);
    const kernel = attrInts(n, 'kernel_shape') ?? wDims.slice(2);
    const outChannels = wDims[0] ?? 0;
    const inChannels = (wDims[1] ?? 0) * groups;
    return {
      kernel,
      stride: attrInts(n, 'strides') ?? new Array(spatial).fill(1),
      pads: attrInts(n, 'pads') ?? new Array(spatial * 2).fill(0),
      dilation: attrInts(n, 'dilations') ?? new Array(spatial).fill(1),
      groups,
      inChannels,
      outChannels,
      depthwise: groups > 1 && groups === inChannels && (wDims[1] ?? 0) === 1,
      batchNorm,
    };
  }

  private findLinears(): Set<number> {
    const claimed = new Set<number>();
    for (const i of this.idx.order) {
      const n = this.idx.node(i);
      const op = n.op_type ?? '';
      const weighted = op === 'Gemm' || (op === 'MatMul' && (n.input ?? []).some((t) => this.idx.constant.has(t)));
      if (!weighted || this.dataInputs(n).length !== 1) continue;
      const nodes = new Set([i]);
      let out = n.output?.[0] ?? '';
      const next = this.soleConsumer(out);
      if (op === 'MatMul' && next !== undefined) {
        const nn = this.idx.node(next);
        if (nn.op_type === 'Add' && this.dataInputs(nn).length === 1) {
          nodes.add(next);
          out = nn.output?.[0] ?? out;
        }
      }
      const unit = this.add('linear', nodes, this.dataInputs(n)[0]!, out);
      unit.removable = sameShape(unit.inputShape, unit.outputShape);
      if (!unit.removable) unit.reason = 'input and output shapes differ or are unknown';
      for (const k of nodes) claimed.add(k);
    }
    return claimed;
  }

  // ---------- residual blocks ----------

  /**
   * Walks backwards from tensor t through data tensors, not expanding `stop`. Returns the nodes
   * visited and the data tensors where the walk ended (graph inputs, or `stop`).
   */
  private backward(t: string, stop: string | undefined, limit = Infinity): { nodes: Set<number>; roots: Set<string> } {
    const nodes = new Set<number>();
    const roots = new Set<string>();
    const stack = [t];
    const seen = new Set<string>();
    while (stack.length > 0) {
      const cur = stack.pop()!;
      if (seen.has(cur)) continue;
      seen.add(cur);
      if (cur === stop) {
        roots.add(cur);
        continue;
      }
      const p = this.idx.producer.get(cur);
      if (p === undefined) {
        roots.add(cur);
        continue;
      }
      if (nodes.has(p)) continue;
      nodes.add(p);
      if (nodes.size > limit) break;
      for (const inp of this.dataInputs(this.idx.node(p))) stack.push(inp);
    }
    return { nodes, roots };
  }

  private rankOfTensor(t: string): number {
    const p = this.idx.producer.get(t);
    return p === undefined ? -1 : this.idx.rank[p]!;
  }

  private findResiduals(): Unit[] {
    const found: Unit[] = [];
    for (const i of this.idx.order) {
      const n = this.idx.node(i);
      if (!(n.op_type === 'Add' || n.op_type === 'Sum') || !isDefaultDomain(n.domain)) continue;
      const data = this.dataInputs(n);
      if (data.length !== 2 || (n.input ?? []).length !== 2) continue;
      const [a, b] = data as [string, string];
      const unit = this.residualAt(i, a, b);
      if (unit) found.push(unit);
    }
    return found;
  }

  private residualAt(addIdx: number, a: string, b: string): Unit | undefined {
    const out = this.idx.node(addIdx).output?.[0] ?? '';
    // identity skip: one operand is an ancestor of the other and everything between flows from it
    for (const [x, y] of [[a, b], [b, a]] as const) {
      const walk = this.backward(y, x);
      if (walk.roots.size === 1 && walk.roots.has(x) && walk.nodes.size > 0) {
        if (!this.hasParametric(walk.nodes)) return undefined;
        const nodes = new Set([...walk.nodes, addIdx]);
        const unit = this.add('residual', nodes, x, out, { skip: 'identity' });
        this.judgeRemovable(unit, nodes, x, out);
        return unit;
      }
    }
    // both operands computed from a common source x: a projection (or other) skip
    const wa = this.backward(a, undefined);
    const wb = this.backward(b, undefined);
    const tensorsA = new Set<string>([a]);
    for (const k of wa.nodes) for (const o of this.idx.node(k).output ?? []) tensorsA.add(o);
    for (const r of wa.roots) tensorsA.add(r);
    let best: string | undefined;
    const consider = (t: string) => {
      if (tensorsA.has(t) && (best === undefined || this.rankOfTensor(t) > this.rankOfTensor(best))) best = t;
    };
    consider(b);
    for (const k of wb.nodes) for (const o of this.idx.node(k).output ?? []) if (this.isData(o)) consider(o);
    for (const r of wb.roots) consider(r);
    if (best === undefined) return undefined;
    const x = best;
    const pa = this.backward(a, x);
    const pb = this.backward(b, x);
    if (!(pa.roots.size === 1 && pa.roots.has(x) && pb.roots.size === 1 && pb.roots.has(x))) return undefined;
    if ([...pa.nodes].some((k) => pb.nodes.has(k))) return undefined;
    const costA = this.countMacs(pa.nodes) ?? pa.nodes.size;
    const costB = this.countMacs(pb.nodes) ?? pb.nodes.size;
    const [branch, skip] = costA >= costB ? [pa.nodes, pb.nodes] : [pb.nodes, pa.nodes];
    if (!this.hasParametric(branch)) return undefined;
    const skipKind = this.hasParametric(skip) ? 'projection' : 'other';
    const nodes = new Set([...branch, ...skip, addIdx]);
    const unit = this.add('residual', nodes, x, out, { skip: skipKind });
    unit.removable = false;
    unit.reason =
      skipKind === 'projection'
        ? 'the skip is a projection (it changes the shape or channels), so the block is not an identity when removed'
        : 'the skip path is not an identity';
    return unit;
  }

  private hasParametric(nodes: Set<number>): boolean {
    for (const k of nodes) {
      const n = this.idx.node(k);
      if (PARAMETRIC.has(n.op_type ?? '') && (n.input ?? []).some((t) => this.idx.constant.has(t))) return true;
    }
    return false;
  }

  /** A unit can be replaced by its input when nothing outside reads its insides and shapes agree. */
  private judgeRemovable(unit: Unit, nodes: Set<number>, input: string, output: string): void {
    for (const k of nodes) {
      const n = this.idx.node(k);
      if (!isDefaultDomain(n.domain)) {
        unit.removable = false;
        unit.reason = `contains ${n.domain}::${n.op_type}, which strata does not look inside`;
        return;
      }
      for (const o of n.output ?? []) {
        if (o === output) continue;
        if (this.idx.isGraphOutput(o) || this.idx.consumersOf(o).some((c) => !nodes.has(c))) {
          unit.removable = false;
          unit.reason = `tensor "${o}" inside the unit is also used outside it`;
          return;
        }
      }
    }
    if (!sameShape(this.shape(input), this.shape(output))) {
      unit.removable = false;
      unit.reason = 'input and output shapes differ or are unknown';
      return;
    }
    unit.removable = true;
  }

  // ---------- transformer blocks ----------

  private findTransformers(residuals: Unit[]): void {
    const nodeSetOf = (u: Unit) => (u as Unit & { nodeSet: Set<number> }).nodeSet;
    const has = (u: Unit, op: string) => [...nodeSetOf(u)].some((k) => this.idx.node(k).op_type === op);
    const attention = residuals.filter((u) => has(u, 'Softmax'));
    const mlps = residuals.filter((u) => !has(u, 'Softmax') && !has(u, 'Conv') && (has(u, 'MatMul') || has(u, 'Gemm')));
    for (const u of attention) u.kind = 'attention';
    for (const u of mlps) u.kind = 'mlp';
    const mlpByInput = new Map(mlps.map((m) => [m.input, m]));
    for (const att of attention) {
      let mlp = mlpByInput.get(att.output);
      let norm: 'pre' | 'post' = 'pre';
      const extra = new Set<number>();
      let output: string | undefined;
      if (mlp) {
        output = mlp.output;
      } else {
        // post-norm: y = LN(x + Attn(x)); z = LN(y + MLP(y)); LN may be one op or decomposed
        const ln = this.normAfter(att.output);
        if (!ln) continue;
        mlp = mlpByInput.get(ln.output);
        if (!mlp) continue;
        for (const k of ln.nodes) extra.add(k);
        norm = 'post';
        const ln2 = this.normAfter(mlp.output);
        if (ln2) {
          for (const k of ln2.nodes) extra.add(k);
          output = ln2.output;
        } else {
          output = mlp.output;
        }
      }
      const nodes = new Set([...nodeSetOf(att), ...nodeSetOf(mlp), ...extra]);
      const unit = this.add('transformer', nodes, att.input, output, { norm, skip: 'identity' });
      if (!att.removable || !mlp.removable) {
        unit.removable = false;
        unit.reason = `its ${!att.removable ? 'attention' : 'MLP'} part is not removable: ${(!att.removable ? att : mlp).reason ?? ''}`;
      } else {
        this.judgeRemovable(unit, nodes, att.input, output);
      }
    }
  }

  /**
   * The normalization applied to tensor t, when that is all that reads t: a LayerNormalization
   * (or RMS/Group) node, or the same decomposed into reductions and elementwise ops with
   * constant scale and shift (exports before opset 17). Returns its nodes and output.
   */
  private normAfter(t: string): Region | undefined {
    const first = this.idx.consumersOf(t);
    if (first.length === 0 || this.idx.isGraphOutput(t)) return undefined;
    if (first.length === 1) {
      const op = this.idx.node(first[0]!).op_type ?? '';
      if (op === 'LayerNormalization' || op === 'RMSNormalization' || op === 'GroupNormalization') {
        return { nodes: new Set([first[0]!]), input: t, output: this.idx.node(first[0]!).output?.[0] ?? '' };
      }
    }
    const nodes = new Set<number>();
    const inside = new Set<string>([t]);
    let grew = true;
    while (grew && nodes.size < 16) {
      grew = false;
      for (const x of [...inside]) {
        for (const c of this.idx.consumersOf(x)) {
          if (nodes.has(c)) continue;
          const cn = this.idx.node(c);
          if (!NORM_OPS.has(cn.op_type ?? '')) continue;
          if (!this.dataInputs(cn).every((d) => inside.has(d))) continue;
          nodes.add(c);
          for (const o of cn.output ?? []) inside.add(o);
          grew = true;
        }
      }
    }
    if (![...nodes].some((k) => REDUCTIONS.has(this.idx.node(k).op_type ?? ''))) return undefined;
    // every reader of t must be inside, and exactly one tensor may leave
    if (!this.idx.consumersOf(t).every((c) => nodes.has(c))) return undefined;
    const exits = new Set<string>();
    for (const k of nodes) {
      for (const o of this.idx.node(k).output ?? []) {
        if (this.idx.isGraphOutput(o) || this.idx.consumersOf(o).some((c) => !nodes.has(c))) exits.add(o);
      }
    }
    if (exits.size !== 1) return undefined;
    return { nodes, input: t, output: [...exits][0]! };
  }

  // ---------- parameters and MACs ----------

  private countParameters(nodes: Set<number>): number {
    const seen = new Set<string>();
    let total = 0;
    const visit = (t: string, depth: number) => {
      if (seen.has(t) || !this.idx.constant.has(t)) return;
      seen.add(t);
      const init = this.idx.initializers.get(t);
      if (init) {
        if (init.data_type === 1 || init.data_type === 10 || init.data_type === 11 || init.data_type === 16) {
          total += (init.dims ?? []).map(int64ToNumber).reduce((a, b) => a * b, 1);
        }
        return;
      }
      // weights reached through constant-only nodes: exporters de-duplicate tied weights with Identity
      const p = this.idx.producer.get(t);
      if (p === undefined || depth > 8) return;
      const op = this.idx.node(p).op_type ?? '';
      if (op === 'Identity' || op === 'Cast' || op === 'Transpose' || op === 'Reshape' || op === 'DequantizeLinear') {
        for (const x of this.idx.node(p).input ?? []) visit(x, depth + 1);
      }
    };
    for (const k of nodes) for (const t of this.idx.node(k).input ?? []) visit(t, 0);
    return total;
  }

  private countMacs(nodes: Set<number>): number | null {
    let total = 0;
    for (const k of nodes) {
      const m = this.nodeMacs(this.idx.node(k));
      if (m === null) return null;
      total += m;
    }
    return total;
  }

  private nodeMacs(n: NodeProto): number | null {
    const op = n.op_type ?? '';
    if (op === 'Conv' || op === 'ConvTranspose') {
      const out = this.shape(n.output?.[0] ?? '');
      const w = this.shape(n.input?.[1] ?? '') ?? this.initDims(n.input?.[1]);
      if (!out || !w || !allNumbers(out) || !allNumbers(w)) return null;
      // weight: [cout, cin/groups, k...]; each output element needs cin/groups·Πk MACs
      const perElement = w.slice(1).reduce((a, b) => a * b, 1);
      if (op === 'Conv') return out.reduce((a, b) => a * b, 1) * perElement;
      // ConvTranspose scatters every input element through cout/groups·Πk taps
      const inp = this.shape(n.input?.[0] ?? '');
      if (!inp || !allNumbers(inp)) return null;
      return inp.reduce((a, b) => a * b, 1) * perElement;
    }
    if (op === 'Gemm' || op === 'MatMul') {
      const a = this.shape(n.input?.[0] ?? '') ?? this.initDims(n.input?.[0]);
      const out = this.shape(n.output?.[0] ?? '');
      if (!a || !out || !allNumbers(a) || !allNumbers(out) || a.length === 0) return null;
      const transA = op === 'Gemm' && attrInt(n, 'transA', 0) === 1;
      const kdim = transA ? a[a.length - 2] : a[a.length - 1];
      if (kdim === undefined) return null;
      return out.reduce((x, y) => x * y, 1) * kdim;
    }
    return 0;
  }

  private initDims(name: string | undefined): number[] | null {
    const t = name ? this.idx.initializers.get(name) : undefined;
    return t ? (t.dims ?? []).map(int64ToNumber) : null;
  }

  // ---------- ordering, nesting, ids ----------

  private finish(): Unit[] {
    const all = this.units;
    // parents: the smallest unit that strictly contains a unit's nodes
    for (const u of all) {
      let best: (typeof all)[number] | undefined;
      for (const v of all) {
        if (v === u || v.nodeSet.size <= u.nodeSet.size) continue;
        if (![...u.nodeSet].every((k) => v.nodeSet.has(k))) continue;
        if (!best || v.nodeSet.size < best.nodeSet.size) best = v;
      }
      if (best) (u as { parentRef?: unknown }).parentRef = best;
    }
    const depth = (u: (typeof all)[number]): number => {
      let d = 0;
      let p = (u as { parentRef?: (typeof all)[number] }).parentRef;
      while (p) {
        d++;
        p = (p as { parentRef?: (typeof all)[number] }).parentRef;
      }
      return d;
    };
    // order by where the unit's output is produced; an enclosing unit before what it contains
    const sorted = [...all].sort((x, y) => {
      const fx = Math.min(...[...x.nodeSet].map((k) => this.idx.rank[k]!));
      const fy = Math.min(...[...y.nodeSet].map((k) => this.idx.rank[k]!));
      return fx - fy || depth(x) - depth(y) || y.rankKey - x.rankKey;
    });
    const counters = new Map<string, number>();
    for (const u of sorted) {
      const c = counters.get(u.kind) ?? 0;
      counters.set(u.kind, c + 1);
      u.id = `${u.kind}${c}`;
    }
    const result: Unit[] = [];
    for (const u of sorted) {
      const parent = (u as { parentRef?: Unit }).parentRef;
      const clean: Unit = {
        id: u.id,
        kind: u.kind,
        nodes: u.nodes,
        input: u.input,
        output: u.output,
        removable: u.removable,
        ...(u.reason !== undefined && !u.removable ? { reason: u.reason } : {}),
        parameters: u.parameters,
        macs: u.macs,
        inputShape: u.inputShape,
        outputShape: u.outputShape,
        ...(parent ? { parent: parent.id } : {}),
        children: sorted.filter((v) => (v as { parentRef?: Unit }).parentRef === u).map((v) => v.id),
        ...(u.conv ? { conv: u.conv } : {}),
        ...(u.activation ? { activation: u.activation } : {}),
        ...(u.skip ? { skip: u.skip } : {}),
        ...(u.norm ? { norm: u.norm } : {}),
      };
      result.push(clean);
    }
    return result;
  }
}

function allNumbers(d: (number | string | null)[]): d is number[] {
  return d.every((x) => typeof x === 'number');
}

function sameShape(a: Dim[] | null, b: Dim[] | null): boolean {
  if (!a || !b || a.length !== b.length) return false;
  return a.every((d, i) => d !== null && d === b[i]);
}
