import { test } from 'node:test';
import assert from 'node:assert/strict';
import { extractChain, replacedTensor } from '../../service/src/core/layermerge/extract.js';
import { foldBatchNorm } from '../../service/src/core/layermerge/merge.js';
import { emitLayerMerge } from '../../service/src/core/layermerge/emit.js';
import { UnsupportedModelError } from '../../service/src/core/errors.js';
import type { Dim } from '../../service/src/core/onnx/graph.js';
import type { ModelProto, NodeProto, TensorProto } from '../../service/src/core/onnx/proto.js';
import { makeFloatTensor } from '../../service/src/core/onnx/tensor.js';
import { discoverStructure } from '../../service/src/core/structure/discover.js';

/**
 * A tiny graph builder: NCHW tensors with batch 1, shapes tracked as nodes are added (the real pipeline
 * measures them with onnxruntime; here the few operators used have obvious shape rules).
 */
class G {
  readonly nodes: NodeProto[] = [];
  readonly inits: TensorProto[] = [];
  readonly shapes = new Map<string, Dim[]>();
  private n = 0;

  constructor(c: number, hw: number) {
    this.shapes.set('input', [1, c, hw, hw]);
  }

  private fresh(op: string): string {
    return `${op}${this.n++}`;
  }

  private shape(t: string): [number, number, number] {
    const s = this.shapes.get(t)!;
    return [s[1] as number, s[2] as number, s[3] as number];
  }

  conv(x: string, cout: number, k: number, o: { stride?: number; group?: number; pad?: number } = {}): string {
    const [c, h, w] = this.shape(x);
    const s = o.stride ?? 1;
    const p = o.pad ?? (k - 1) / 2;
    const g = o.group ?? 1;
    const name = this.fresh('conv');
    const weight = new Float32Array(cout * (c / g) * k * k).map((_, i) => ((i * 7) % 13) / 13 - 0.5);
    this.inits.push(makeFloatTensor(`${name}.w`, [cout, c / g, k, k], weight), makeFloatTensor(`${name}.b`, [cout], new Float32Array(cout).fill(0.1)));
    this.nodes.push({
      op_type: 'Conv',
      name,
      input: [x, `${name}.w`, `${name}.b`],
      output: [`${name}.out`],
      attribute: [
        { name: 'kernel_shape', type: 7, ints: [k, k] },
        { name: 'strides', type: 7, ints: [s, s] },
        { name: 'pads', type: 7, ints: [p, p, p, p] },
        { name: 'group', type: 2, i: g },
      ],
    });
    const oh = Math.floor((h + 2 * p - k) / s) + 1;
    const ow = Math.floor((w + 2 * p - k) / s) + 1;
    this.shapes.set(`${name}.out`, [1, cout, oh, ow]);
    return `${name}.out`;
  }

  bn(x: string): string {
    const [c] = this.shape(x);
    const name = this.fresh('bn');
    const v = (f: number) => new Float32Array(c).map((_, i) => f + i / 10);
    this.inits.push(
      makeFloatTensor(`${name}.s`, [c], v(1)),
      makeFloatTensor(`${name}.b`, [c], v(0.2)),
      makeFloatTensor(`${name}.m`, [c], v(-0.1)),
      makeFloatTensor(`${name}.v`, [c], v(0.5)),
    );
    this.nodes.push({
      op_type: 'BatchNormalization',
      name,
      input: [x, `${name}.s`, `${name}.b`, `${name}.m`, `${name}.v`],
      output: [`${name}.out`],
      attribute: [{ name: 'epsilon', type: 1, f: 1e-5 }],
    });
    this.shapes.set(`${name}.out`, this.shapes.get(x)!);
    return `${name}.out`;
  }

  op(op: string, inputs: string[], attribute: NodeProto['attribute'] = [], shape?: Dim[]): string {
    const name = this.fresh(op.toLowerCase());
    this.nodes.push({ op_type: op, name, input: inputs, output: [`${name}.out`], attribute });
    this.shapes.set(`${name}.out`, shape ?? this.shapes.get(inputs[0]!)!);
    return `${name}.out`;
  }

  relu(x: string): string {
    return this.op('Relu', [x]);
  }

  pool(x: string): string {
    const [c, h, w] = this.shape(x);
    return this.op('MaxPool', [x], [{ name: 'kernel_shape', type: 7, ints: [2, 2] }, { name: 'strides', type: 7, ints: [2, 2] }], [1, c, h / 2, w / 2]);
  }

  head(x: string): ModelProto {
    const [c] = this.shape(x);
    const gap = this.op('GlobalAveragePool', [x], [], [1, c, 1, 1]);
    const flat = this.op('Flatten', [gap], [], [1, c]);
    this.inits.push(makeFloatTensor('fc.w', [c, 3], new Float32Array(c * 3).fill(0.01)));
    this.nodes.push({ op_type: 'MatMul', name: 'fc', input: [flat, 'fc.w'], output: ['logits'] });
    this.shapes.set('logits', [1, 3]);
    const [ic, ih, iw] = [...this.shapes.get('input')!.slice(1)] as number[];
    return {
      ir_version: 8,
      opset_import: [{ domain: '', version: 17 }],
      graph: {
        name: 'g',
        node: this.nodes,
        initializer: this.inits,
        input: [{ name: 'input', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }, { dim_value: ic }, { dim_value: ih }, { dim_value: iw }] } } } }],
        output: [{ name: 'logits', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }, { dim_value: 3 }] } } } }],
      },
    };
  }
}

function extract(g: G, m: ModelProto) {
  const { units } = discoverStructure(m, g.shapes);
  return extractChain(m, units, g.shapes);
}

test('a plain chain: layers in order, activations at their positions, a barrier at the pool', () => {
  const g = new G(3, 16);
  let t = g.relu(g.conv('input', 8, 3));
  t = g.relu(g.conv(t, 8, 3));
  t = g.pool(t);
  t = g.conv(t, 8, 1);
  const x = extract(g, g.head(t));
  assert.deepEqual(
    x.chain.layers.map((l) => [l.spec.cin, l.spec.cout, l.spec.kh, l.inH, l.activationAfter, l.barrierAfter === true]),
    [
      [3, 8, 3, 16, true, false],
      [8, 8, 3, 16, true, true],
      [8, 8, 1, 8, false, true],
    ],
  );
  assert.equal(x.activations.length, 4);
  assert.equal(x.activations[1]?.kind, 'relu');
  assert.equal(x.activations[3], undefined);
  assert.ok(x.notes.some((n) => n.includes('MaxPool')));
});

test('identity and projection skips become residual spans; the post-Add activation sits at the span end', () => {
  const g = new G(3, 8);
  const stem = g.relu(g.conv('input', 4, 3));
  let b = g.relu(g.conv(stem, 4, 3));
  b = g.conv(b, 4, 3);
  const r1 = g.relu(g.op('Add', [b, stem]));
  let c = g.relu(g.conv(r1, 8, 3, { stride: 2 }));
  c = g.conv(c, 8, 3);
  const proj = g.conv(r1, 8, 1, { stride: 2, pad: 0 });
  const r2 = g.relu(g.op('Add', [proj, c]));
  const x = extract(g, g.head(r2));
  assert.equal(x.chain.layers.length, 5);
  assert.deepEqual(
    x.chain.residuals.map((r) => [r.start, r.end, r.skip]),
    [
      [1, 3, 'identity'],
      [3, 5, 'projection'],
    ],
  );
  assert.equal(x.chain.residuals[1]!.projection!.stride[0], 2);
  assert.equal(x.residuals[0]!.skipInput, stem);
  assert.equal(x.activations[3]!.input, x.residuals[0]!.output);
  // a block covering the first residual replaces the Add's output; one inside it, the branch conv's
  assert.equal(replacedTensor(x, 1, 3), x.residuals[0]!.output);
  assert.equal(replacedTensor(x, 2, 3), x.layers[2]!.output);
});

test('BatchNormalization after a conv is folded into the layer', () => {
  const g = new G(2, 6);
  const conv = g.conv('input', 3, 3);
  const t = g.relu(g.bn(conv));
  const m = g.head(t);
  const x = extract(g, m);
  assert.equal(x.chain.layers.length, 1);
  assert.ok(x.layers[0]!.batchNormNode);
  const init = (n: string) => m.graph!.initializer!.find((i) => i.name === n)!;
  const f32 = (n: string) => new Float32Array(init(n).raw_data!.slice().buffer);
  const bnName = x.layers[0]!.batchNormNode!;
  const expected = foldBatchNorm(
    { cin: 2, cout: 3, kh: 3, kw: 3, stride: [1, 1], pads: [1, 1, 1, 1], dilation: [1, 1], group: 1, weight: f32('conv0.w'), bias: f32('conv0.b') },
    { scale: f32(`${bnName}.s`), bias: f32(`${bnName}.b`), mean: f32(`${bnName}.m`), var: f32(`${bnName}.v`), epsilon: 1e-5 },
  );
  assert.deepEqual([...x.chain.layers[0]!.spec.weight], [...expected.weight]);
  assert.deepEqual([...x.chain.layers[0]!.spec.bias], [...expected.bias]);
});

test('depthwise and grouped convs keep their groups', () => {
  const g = new G(4, 8);
  let t = g.relu(g.conv('input', 8, 1));
  t = g.relu(g.conv(t, 8, 3, { group: 8 }));
  t = g.conv(t, 8, 3, { group: 2 });
  const x = extract(g, g.head(t));
  assert.deepEqual(
    x.chain.layers.map((l) => l.spec.group),
    [1, 8, 2],
  );
});

test('a concat of two branches is one barrier: its convs stay out of the chain', () => {
  const g = new G(3, 8);
  const stem = g.relu(g.conv('input', 4, 3));
  const a = g.conv(stem, 4, 1);
  const b = g.conv(stem, 4, 3);
  const cat = g.op('Concat', [a, b], [{ name: 'axis', type: 2, i: 1 }], [1, 8, 8, 8]);
  const t = g.relu(g.conv(cat, 8, 3));
  const x = extract(g, g.head(t));
  assert.equal(x.chain.layers.length, 2);
  assert.equal(x.chain.layers[0]!.barrierAfter, true);
  assert.ok(x.notes.some((n) => n.includes('Concat')));
});

test('a residual whose branch ends in an activation before the Add is a barrier, not a span', () => {
  const g = new G(3, 8);
  const stem = g.relu(g.conv('input', 4, 3));
  const b = g.relu(g.conv(g.relu(g.conv(stem, 4, 3)), 4, 3));
  const r = g.op('Add', [b, stem]);
  const t = g.relu(g.conv(r, 4, 3));
  const m = g.head(t);
  const x = extract(g, m);
  assert.equal(x.chain.residuals.length, 0);
  assert.equal(x.chain.layers.length, 2);
  assert.equal(x.chain.layers[0]!.barrierAfter, true);
  // a block can still change a layer next to the barrier, and the graph stays valid
  const out = emitLayerMerge(m, x, [{ i: 1, j: 2, kept: [] }]);
  assert.equal(out.blocks.length, 1);
});

test('a graph without convolutions on its trunk is refused with a reason', () => {
  const g = new G(3, 4);
  const m = g.head(g.relu('input'));
  assert.throws(() => extract(g, m), (e: unknown) => e instanceof UnsupportedModelError && /no convolution chain/.test(e.message));
});
