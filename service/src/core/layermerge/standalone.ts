/**
 * Small ONNX models built around one LayerMerge block: the merged Conv, the residual Adds the block
 * leaves in place at its end, and the activation it keeps — for timing a table entry on its own, and
 * for running a block's merged conv on captured activations. Also the "suffix" sub-model that runs a
 * network from one tensor to its outputs, fed with whatever else that part reads.
 */
import { InvalidArgumentError } from '../errors.js';
import { GraphIndex } from '../onnx/graph.js';
import type { ModelProto, NodeProto, TensorProto, ValueInfo } from '../onnx/proto.js';
import { makeFloatTensor } from '../onnx/tensor.js';
import type { ConvShape, ConvSpec } from './conv.js';
import { convOutputShape } from './conv.js';
import { convNode } from './emit.js';

/** An activation's nodes lifted out of a model, with the constants they read, ready to be re-wired. */
export interface ActivationTemplate {
  kind: string;
  nodes: NodeProto[];
  initializers: TensorProto[];
  input: string;
  output: string;
}

/** Copies an activation (its nodes, plus the initializers and Constant nodes feeding them) out of a model. */
export function activationTemplate(model: ModelProto, kind: string, nodeNames: readonly string[], input: string, output: string): ActivationTemplate {
  const idx = new GraphIndex(model.graph ?? {});
  const byName = new Map<string, number>();
  idx.nodes.forEach((n, i) => byName.set(n.name && n.name.length > 0 ? n.name : `${n.op_type}#${i}`, i));
  const picked = new Set<number>();
  const initializers = new Map<string, TensorProto>();
  const visit = (i: number): void => {
    if (picked.has(i)) return;
    picked.add(i);
    for (const t of idx.node(i).input ?? []) {
      if (t === '' || t === input || !idx.constant.has(t)) continue;
      const init = idx.initializers.get(t);
      if (init) initializers.set(t, init);
      const p = idx.producer.get(t);
      if (p !== undefined) visit(p);
    }
  };
  for (const name of nodeNames) {
    const i = byName.get(name);
    if (i === undefined) throw new InvalidArgumentError('activation', `node "${name}" is not in the model`);
    visit(i);
  }
  const nodes = [...picked].sort((a, b) => idx.rank[a]! - idx.rank[b]!).map((i) => idx.node(i));
  // Shared, not copied: instantiate() builds new node objects and nothing writes to the tensors.
  return { kind, nodes, initializers: [...initializers.values()], input, output };
}

/** The template's nodes reading `from` and writing `to`. */
function instantiate(t: ActivationTemplate, from: string, to: string): NodeProto[] {
  return t.nodes.map((n) => ({
    ...n,
    input: (n.input ?? []).map((v) => (v === t.input ? from : v)),
    output: (n.output ?? []).map((v) => (v === t.output ? to : v)),
  }));
}

export interface FeatureShape {
  c: number;
  h: number;
  w: number;
}

export interface BlockModelSpec {
  /** the merged conv; absent for an identity block */
  conv?: ConvSpec;
  input: FeatureShape;
  /** residual Adds applied after the conv, innermost first; each adds a second model input */
  adds?: { skip: FeatureShape; projection?: ConvSpec }[];
  activation?: ActivationTemplate;
  /** a number, or a symbolic name */
  batch: number | string;
  opset: ModelProto['opset_import'];
  irVersion?: ModelProto['ir_version'];
  /** pass the input and each skip through a node named LAYOUT_PASS_PREFIX… first (see blockModel) */
  layoutPass?: boolean;
}

/** Names of the pass-through nodes blockModel puts on its inputs for timing; their kernel time is not the block's. */
export const LAYOUT_PASS_PREFIX = 'strata_layout_pass';

function valueInfo(name: string, batch: number | string, s: FeatureShape): ValueInfo {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: 1,
        shape: {
          dim: [typeof batch === 'number' ? { dim_value: batch } : { dim_param: batch }, { dim_value: s.c }, { dim_value: s.h }, { dim_value: s.w }],
        },
      },
    },
  };
}

/** Deterministic fill for timing models: the values do not matter to the kernels, only that they are ordinary floats. */
export function pseudoRandomWeights(count: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(count);
  for (let k = 0; k < count; k++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[k] = (s / 4294967296 - 0.5) * 0.2;
  }
  return out;
}

/** Gives a shape-only conv weights, so a timing model can be built from candidate geometry alone. */
export function withWeights(shape: ConvShape, seed: number): ConvSpec {
  const n = shape.cout * (shape.cin / shape.group) * shape.kh * shape.kw;
  return { ...shape, weight: pseudoRandomWeights(n, seed), bias: pseudoRandomWeights(shape.cout, seed + 1) };
}

/**
 * x → [Conv] → [+ skip (through a projection)]… → [activation] → y. Inputs: `x`, then `skip0`, `skip1`, …
 * Output: `y`. Returns null when the model would compute nothing (no conv, add or activation).
 */
export function blockModel(spec: BlockModelSpec): ModelProto | null {
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const inputs: ValueInfo[] = [valueInfo('x', spec.batch, spec.input)];
  let shape = spec.input;
  const adds = spec.adds ?? [];
  if (!spec.conv && adds.length === 0 && !spec.activation) return null;
  // In the network a block's input (and a skip) comes straight from the previous conv: in onnxruntime's
  // blocked layout, in cache, and an Add on it fuses into the conv. A 1×1 depthwise pass-through gives
  // a timing model the same conditions; its kernel (and the layout reorders) are timed apart and dropped.
  const pass = (input: string, c: number, tag: string): string => {
    if (!spec.layoutPass) return input;
    const name = `${LAYOUT_PASS_PREFIX}_${tag}`;
    initializers.push(makeFloatTensor(`${name}_w`, [c, 1, 1, 1], new Float32Array(c).fill(1)), makeFloatTensor(`${name}_b`, [c], new Float32Array(c)));
    const spec1: ConvSpec = { cin: c, cout: c, kh: 1, kw: 1, stride: [1, 1], pads: [0, 0, 0, 0], dilation: [1, 1], group: c, weight: new Float32Array(0), bias: new Float32Array(0) };
    nodes.push(convNode(name, input, `${name}_conv`, `${name}_w`, `${name}_b`, spec1));
    // The ReLU fuses into the pass-through as in the network, where the previous conv has its activation;
    // without it a following Add (an identity block's) would fuse into the pass-through and go untimed.
    nodes.push({ op_type: 'Relu', domain: '', name: `${name}_relu`, input: [`${name}_conv`], output: [`${name}_out`] });
    return `${name}_out`;
  };
  let cur = pass('x', shape.c, 'x');
  if (spec.conv) {
    const c = spec.conv;
    if (c.cin !== shape.c) throw new InvalidArgumentError('conv', `reads ${c.cin} channels, the input has ${shape.c}`);
    initializers.push(makeFloatTensor('w', [c.cout, c.cin / c.group, c.kh, c.kw], c.weight), makeFloatTensor('b', [c.cout], c.bias));
    nodes.push(convNode('conv', cur, 'conv_out', 'w', 'b', c));
    cur = 'conv_out';
    const o = convOutputShape(c, shape.h, shape.w);
    shape = { c: c.cout, h: o.h, w: o.w };
  }
  adds.forEach((a, n) => {
    const skip = `skip${n}`;
    inputs.push(valueInfo(skip, spec.batch, a.skip));
    let operand = pass(skip, a.skip.c, `skip${n}`);
    if (a.projection) {
      const p = a.projection;
      initializers.push(makeFloatTensor(`pw${n}`, [p.cout, p.cin / p.group, p.kh, p.kw], p.weight), makeFloatTensor(`pb${n}`, [p.cout], p.bias));
      nodes.push(convNode(`proj${n}`, operand, `proj${n}_out`, `pw${n}`, `pb${n}`, p));
      operand = `proj${n}_out`;
    }
    nodes.push({ op_type: 'Add', domain: '', name: `add${n}`, input: [cur, operand], output: [`add${n}_out`] });
    cur = `add${n}_out`;
  });
  if (spec.activation) {
    nodes.push(...instantiate(spec.activation, cur, 'y'));
    initializers.push(...spec.activation.initializers);
  } else {
    nodes.push({ op_type: 'Identity', domain: '', name: 'out', input: [cur], output: ['y'] });
  }
  return {
    ir_version: spec.irVersion ?? 8,
    opset_import: spec.opset ?? [{ domain: '', version: 17 }],
    producer_name: 'strata',
    graph: { name: 'block', node: nodes, initializer: initializers, input: inputs, output: [valueInfo('y', spec.batch, shape)] },
  };
}

/**
 * The part of `model` that depends on `root`: every node downstream of it, fed with `root` and with
 * the other data tensors those nodes read (computed upstream, unchanged by anything done at `root`).
 * `shapes` gives the per-sample shape ([c, h, w] or any rank, batch excluded) of each input.
 */
export function suffixModel(model: ModelProto, root: string, sampleShape: (tensor: string) => number[], batch: string): { model: ModelProto; inputs: string[] } {
  const g = model.graph ?? {};
  const idx = new GraphIndex(g);
  const down = new Set<number>();
  const live = new Set<string>([root]);
  for (const i of idx.order) {
    const n = idx.node(i);
    if (!(n.input ?? []).some((t) => live.has(t))) continue;
    down.add(i);
    for (const o of n.output ?? []) if (o !== '') live.add(o);
  }
  const produced = new Set<string>();
  for (const i of down) for (const o of idx.node(i).output ?? []) produced.add(o);
  const sides: string[] = [];
  for (const i of idx.order) {
    if (!down.has(i)) continue;
    for (const t of idx.node(i).input ?? []) {
      if (t === '' || t === root || produced.has(t) || idx.constant.has(t) || sides.includes(t)) continue;
      sides.push(t);
    }
  }
  // Constants computed by nodes (Constant, shape arithmetic on weights) come along.
  const constantNodes = new Set<number>();
  const need = (t: string): void => {
    const p = idx.producer.get(t);
    if (p === undefined || constantNodes.has(p) || down.has(p)) return;
    constantNodes.add(p);
    for (const u of idx.node(p).input ?? []) if (u !== '') need(u);
  };
  for (const i of down) for (const t of idx.node(i).input ?? []) if (t !== '' && idx.constant.has(t)) need(t);
  const keep = new Set([...down, ...constantNodes]);
  const nodes = idx.order.filter((i) => keep.has(i)).map((i) => idx.node(i));
  const used = new Set<string>();
  for (const n of nodes) for (const t of n.input ?? []) used.add(t);
  const outputs = (g.output ?? []).filter((o) => produced.has(o.name ?? ''));
  if (outputs.length === 0) throw new InvalidArgumentError('root', `no graph output depends on "${root}"`);
  const inputs = [root, ...sides];
  const info = (name: string): ValueInfo => {
    const s = sampleShape(name);
    return { name, type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_param: batch }, ...s.map((d) => ({ dim_value: d }))] } } } };
  };
  const sub: ModelProto = {
    ...(model.ir_version !== undefined ? { ir_version: model.ir_version } : {}),
    opset_import: model.opset_import ?? [],
    producer_name: 'strata',
    graph: {
      name: 'suffix',
      node: nodes,
      initializer: (g.initializer ?? []).filter((t) => used.has(t.name ?? '')),
      input: inputs.map(info),
      output: outputs,
    },
  };
  return { model: sub, inputs };
}

/**
 * A model that turns a batch of block inputs x [N, cin, H, W] and targets y [N, cout, oh, ow] into the
 * least-squares sums of a conv with `shape`'s geometry: the im2col patches come from a depthwise
 * "unfold" conv with one-hot kernels (patch row ci·kh·kw + tap, ONNX's weight order), and the products
 * run as batched MatMuls, one per group. Outputs: gram [G, D, D], xy [G, D, cout/G], sx [G, D],
 * sy [cout], yy [cout].
 */
export function gramModel(shape: ConvShape, input: FeatureShape, batch: string): ModelProto {
  const { cin, cout, kh, kw, group } = shape;
  const taps = kh * kw;
  const d = (cin / group) * taps;
  const coutG = cout / group;
  const o = convOutputShape(shape, input.h, input.w);
  const p = o.h * o.w;
  const unfold = new Float32Array(cin * taps * taps);
  for (let ci = 0; ci < cin; ci++) for (let t = 0; t < taps; t++) unfold[(ci * taps + t) * taps + t] = 1;
  const i64 = (name: string, values: number[]): TensorProto => {
    const arr = BigInt64Array.from(values.map((v) => BigInt(v)));
    return { name, dims: [values.length], data_type: 7, raw_data: new Uint8Array(arr.buffer) };
  };
  const unfoldSpec: ConvSpec = {
    cin,
    cout: cin * taps,
    kh,
    kw,
    stride: shape.stride,
    pads: shape.pads,
    dilation: shape.dilation,
    group: cin,
    weight: unfold,
    bias: new Float32Array(cin * taps),
  };
  const nodes: NodeProto[] = [
    convNode('unfold', 'x', 'patches', 'unfold_w', 'unfold_b', unfoldSpec),
    { op_type: 'Reshape', domain: '', name: 'r1', input: ['patches', 'shape_ngdp'], output: ['p4'] },
    { op_type: 'Transpose', domain: '', name: 't1', input: ['p4'], output: ['p4t'], attribute: [{ name: 'perm', type: 7, ints: [1, 2, 0, 3] }] },
    { op_type: 'Reshape', domain: '', name: 'r2', input: ['p4t', 'shape_gdr'], output: ['xt'] },
    { op_type: 'Transpose', domain: '', name: 't2', input: ['xt'], output: ['xtt'], attribute: [{ name: 'perm', type: 7, ints: [0, 2, 1] }] },
    { op_type: 'MatMul', domain: '', name: 'gram', input: ['xt', 'xtt'], output: ['gram'] },
    { op_type: 'Reshape', domain: '', name: 'r3', input: ['y', 'shape_ngcp'], output: ['y4'] },
    { op_type: 'Transpose', domain: '', name: 't3', input: ['y4'], output: ['y4t'], attribute: [{ name: 'perm', type: 7, ints: [1, 0, 3, 2] }] },
    { op_type: 'Reshape', domain: '', name: 'r4', input: ['y4t', 'shape_grc'], output: ['yr'] },
    { op_type: 'MatMul', domain: '', name: 'xy', input: ['xt', 'yr'], output: ['xy'] },
    { op_type: 'ReduceSum', domain: '', name: 'sx', input: ['xt', 'axis2'], output: ['sx'], attribute: [{ name: 'keepdims', type: 2, i: 0 }] },
    { op_type: 'ReduceSum', domain: '', name: 'sy', input: ['y', 'axes023'], output: ['sy'], attribute: [{ name: 'keepdims', type: 2, i: 0 }] },
    {
      op_type: 'ReduceSumSquare',
      domain: '',
      name: 'yy',
      input: ['y'],
      output: ['yy'],
      attribute: [
        { name: 'axes', type: 7, ints: [0, 2, 3] },
        { name: 'keepdims', type: 2, i: 0 },
      ],
    },
  ];
  const f = (name: string, dims: (number | string)[]): ValueInfo => ({
    name,
    type: { tensor_type: { elem_type: 1, shape: { dim: dims.map((v) => (typeof v === 'number' ? { dim_value: v } : { dim_param: v })) } } },
  });
  return {
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }],
    producer_name: 'strata',
    graph: {
      name: 'refit-sums',
      node: nodes,
      initializer: [
        makeFloatTensor('unfold_w', [cin * taps, 1, kh, kw], unfold),
        makeFloatTensor('unfold_b', [cin * taps], new Float32Array(cin * taps)),
        i64('shape_ngdp', [-1, group, d, p]),
        i64('shape_gdr', [group, d, -1]),
        i64('shape_ngcp', [-1, group, coutG, p]),
        i64('shape_grc', [group, -1, coutG]),
        i64('axis2', [2]),
        i64('axes023', [0, 2, 3]),
      ],
      input: [f('x', [batch, cin, input.h, input.w]), f('y', [batch, cout, o.h, o.w])],
      output: [f('gram', [group, d, d]), f('xy', [group, d, coutG]), f('sx', [group, d]), f('sy', [cout]), f('yy', [cout])],
    },
  };
}

/**
 * Several models side by side in one graph, every name prefixed with `${prefix}${n}/` so that profiler
 * events (named after nodes or, once onnxruntime rewrites them, after their output tensors) can be
 * told apart. One session then times them all in every run, on one thread pool.
 */
export function combineModels(models: readonly ModelProto[], prefix: string): ModelProto {
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const inputs: ValueInfo[] = [];
  const outputs: ValueInfo[] = [];
  const opsets = new Map<string, number>();
  models.forEach((m, n) => {
    const p = `${prefix}${n}/`;
    const rename = (t: string): string => (t === '' ? t : `${p}${t}`);
    const g = m.graph ?? {};
    for (const node of g.node ?? []) {
      nodes.push({
        ...node,
        name: rename(node.name ?? node.op_type ?? 'node'),
        input: (node.input ?? []).map(rename),
        output: (node.output ?? []).map(rename),
      });
    }
    for (const t of g.initializer ?? []) initializers.push({ ...t, name: rename(t.name ?? '') });
    for (const v of g.input ?? []) inputs.push({ ...v, name: rename(v.name ?? '') });
    for (const v of g.output ?? []) outputs.push({ ...v, name: rename(v.name ?? '') });
    for (const o of m.opset_import ?? []) {
      const domain = o.domain ?? '';
      const version = Number(o.version ?? 0);
      opsets.set(domain, Math.max(opsets.get(domain) ?? 0, version));
    }
  });
  return {
    ir_version: 8,
    opset_import: [...opsets].map(([domain, version]) => ({ domain, version })),
    producer_name: 'strata',
    graph: { name: 'combined', node: nodes, initializer: initializers, input: inputs, output: outputs },
  };
}
