import { test } from 'node:test';
import assert from 'node:assert/strict';
import { discoverStructure } from '../../service/src/core/structure/discover.js';
import type { ModelProto, NodeProto, TensorProto } from '../../service/src/core/onnx/proto.js';
import type { Dim } from '../../service/src/core/onnx/graph.js';
import { makeFloatTensor } from '../../service/src/core/onnx/tensor.js';
import { UnsupportedModelError } from '../../service/src/core/errors.js';

/** A tiny graph builder: nodes as [op, inputs, outputs, attributes?]. */
function build(
  nodes: [string, string[], string[], NodeProto['attribute']?, string?][],
  weights: Record<string, number[]>,
  input = 'x',
  output?: string,
): ModelProto {
  const initializer: TensorProto[] = Object.entries(weights).map(([name, dims]) =>
    makeFloatTensor(name, dims, new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(0.1)),
  );
  const node = nodes.map(([op_type, inp, out, attribute, domain], i) => ({
    op_type,
    input: inp,
    output: out,
    name: `n${i}_${op_type}`,
    ...(attribute ? { attribute } : {}),
    ...(domain ? { domain } : {}),
  }));
  const last = output ?? nodes[nodes.length - 1]![2][0]!;
  return {
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }],
    graph: { node, initializer, input: [{ name: input }], output: [{ name: last }] },
  };
}

function uniformShapes(model: ModelProto, dims: Dim[]): Map<string, Dim[]> {
  const m = new Map<string, Dim[]>();
  for (const n of model.graph!.node!) for (const o of n.output ?? []) m.set(o, dims);
  m.set('x', dims);
  return m;
}

function attentionMlpBlock(x: string, p: string, post: boolean): { nodes: [string, string[], string[]][]; out: string; weights: Record<string, number[]> } {
  const w = (n: string) => `${p}${n}`;
  const nodes: [string, string[], string[]][] = [];
  let src = x;
  if (!post) {
    nodes.push(['LayerNormalization', [x, w('g1'), w('b1')], [w('ln1')]]);
    src = w('ln1');
  }
  nodes.push(
    ['MatMul', [src, w('Wq')], [w('q')]],
    ['MatMul', [src, w('Wk')], [w('k')]],
    ['MatMul', [src, w('Wv')], [w('v')]],
    ['Transpose', [w('k')], [w('kt')]],
    ['MatMul', [w('q'), w('kt')], [w('s')]],
    ['Softmax', [w('s')], [w('p')]],
    ['MatMul', [w('p'), w('v')], [w('a')]],
    ['MatMul', [w('a'), w('Wo')], [w('o')]],
    ['Add', [x, w('o')], [w('y')]],
  );
  let y = w('y');
  if (post) {
    nodes.push(['LayerNormalization', [y, w('g1'), w('b1')], [w('yn')]]);
    y = w('yn');
  }
  let m = y;
  if (!post) {
    nodes.push(['LayerNormalization', [y, w('g2'), w('b2')], [w('ln2')]]);
    m = w('ln2');
  }
  nodes.push(['MatMul', [m, w('W1')], [w('h')]], ['Relu', [w('h')], [w('r')]], ['MatMul', [w('r'), w('W2')], [w('f')]], ['Add', [y, w('f')], [w('z')]]);
  let out = w('z');
  if (post) {
    nodes.push(['LayerNormalization', [out, w('g2'), w('b2')], [w('zn')]]);
    out = w('zn');
  }
  const weights: Record<string, number[]> = {
    [w('Wq')]: [16, 16], [w('Wk')]: [16, 16], [w('Wv')]: [16, 16], [w('Wo')]: [16, 16], [w('W1')]: [16, 16], [w('W2')]: [16, 16],
    [w('g1')]: [16], [w('b1')]: [16], [w('g2')]: [16], [w('b2')]: [16],
  };
  return { nodes, out, weights };
}

for (const post of [false, true]) {
  test(`finds every ${post ? 'post' : 'pre'}-norm transformer block and marks it removable`, () => {
    const b0 = attentionMlpBlock('x', 'a.', post);
    const b1 = attentionMlpBlock(b0.out, 'b.', post);
    const b2 = attentionMlpBlock(b1.out, 'c.', post);
    const model = build([...b0.nodes, ...b1.nodes, ...b2.nodes], { ...b0.weights, ...b1.weights, ...b2.weights });
    const { units } = discoverStructure(model, uniformShapes(model, [1, 5, 16]));
    const blocks = units.filter((u) => u.kind === 'transformer');
    assert.equal(blocks.length, 3);
    assert.deepEqual(blocks.map((b) => b.norm), [post ? 'post' : 'pre', post ? 'post' : 'pre', post ? 'post' : 'pre']);
    assert.deepEqual(blocks.map((b) => [b.input, b.output]), [['x', b0.out], [b0.out, b1.out], [b1.out, b2.out]]);
    assert.ok(blocks.every((b) => b.removable));
    // attention and MLP halves are nested inside their block
    const halves = units.filter((u) => u.kind === 'attention' || u.kind === 'mlp');
    assert.equal(halves.length, 6);
    assert.ok(halves.every((h) => blocks.some((b) => b.id === h.parent)));
  });
}

test('recognizes decomposed and single-op activations after convolutions', () => {
  const conv = (i: string, o: string, w: string): [string, string[], string[]] => ['Conv', [i, w, `${w}.b`], [o]];
  const model = build(
    [
      conv('x', 'c0', 'w0'),
      ['Sigmoid', ['c0'], ['s0']],
      ['Mul', ['c0', 's0'], ['a0']],
      conv('a0', 'c1', 'w1'),
      ['Div', ['c1', 'sqrt2'], ['d1']],
      ['Erf', ['d1'], ['e1']],
      ['Add', ['e1', 'one'], ['p1']],
      ['Mul', ['c1', 'p1'], ['m1']],
      ['Mul', ['m1', 'half'], ['a1']],
      conv('a1', 'c2', 'w2'),
      ['Clip', ['c2', 'zero', 'six'], ['a2']],
      conv('a2', 'c3', 'w3'),
      ['HardSwish', ['c3'], ['a3']],
      conv('a3', 'c4', 'w4'),
      ['LeakyRelu', ['c4'], ['a4']],
    ],
    {
      w0: [4, 4, 3, 3], 'w0.b': [4], w1: [4, 4, 3, 3], 'w1.b': [4], w2: [4, 4, 3, 3], 'w2.b': [4], w3: [4, 4, 3, 3], 'w3.b': [4],
      w4: [4, 4, 3, 3], 'w4.b': [4], sqrt2: [1], one: [1], half: [1],
    },
  );
  const g = model.graph!;
  g.initializer!.push(makeFloatTensor('zero', [], new Float32Array([0])), makeFloatTensor('six', [], new Float32Array([6])));
  const { units } = discoverStructure(model, uniformShapes(model, [1, 4, 8, 8]));
  assert.deepEqual(
    units.filter((u) => u.kind === 'activation').map((u) => u.activation),
    ['silu', 'gelu', 'relu6', 'hardswish', 'leakyrelu'],
  );
  const convs = units.filter((u) => u.kind === 'conv');
  assert.deepEqual(convs.map((c) => c.conv?.activation), ['silu', 'gelu', 'relu6', 'hardswish', 'leakyrelu']);
  assert.equal(convs[0]!.macs, 8 * 8 * 4 * 4 * 9);
  assert.equal(convs[0]!.parameters, 4 * 4 * 9 + 4);
});

test('a residual block whose inside is read elsewhere is found but not removable', () => {
  const model = build(
    [
      ['Conv', ['x', 'w0'], ['c0']],
      ['Relu', ['c0'], ['r0']],
      ['Conv', ['r0', 'w1'], ['c1']],
      ['Add', ['x', 'c1'], ['y']],
      ['Add', ['y', 'r0'], ['z']],
    ],
    { w0: [4, 4, 3, 3], w1: [4, 4, 3, 3] },
  );
  const { units } = discoverStructure(model, uniformShapes(model, [1, 4, 8, 8]));
  const res = units.filter((u) => u.kind === 'residual');
  const first = res.find((u) => u.output === 'y');
  assert.ok(first);
  assert.equal(first.removable, false);
  assert.match(first.reason ?? '', /r0.*used outside/);
});

test('a projection skip makes a residual block that is not removable', () => {
  const model = build(
    [
      ['Conv', ['x', 'w0'], ['c0'], [{ name: 'strides', ints: [2, 2], type: 7 }]],
      ['Relu', ['c0'], ['r0']],
      ['Conv', ['r0', 'w1'], ['c1']],
      ['Conv', ['x', 'wp'], ['p'], [{ name: 'strides', ints: [2, 2], type: 7 }]],
      ['Add', ['c1', 'p'], ['y']],
    ],
    { w0: [8, 4, 3, 3], w1: [8, 8, 3, 3], wp: [8, 4, 1, 1] },
  );
  const shapes = uniformShapes(model, [1, 8, 4, 4]);
  shapes.set('x', [1, 4, 8, 8]);
  const { units } = discoverStructure(model, shapes);
  const res = units.filter((u) => u.kind === 'residual');
  assert.equal(res.length, 1);
  assert.equal(res[0]!.skip, 'projection');
  assert.equal(res[0]!.removable, false);
  assert.equal(res[0]!.input, 'x');
});

test('an Add of two computations without parameters is not a residual block', () => {
  const model = build(
    [
      ['Conv', ['x', 'w0'], ['c0']],
      ['Mul', ['c0', 'half'], ['h']],
      ['Add', ['c0', 'h'], ['y']],
    ],
    { w0: [4, 4, 3, 3], half: [1] },
  );
  const { units } = discoverStructure(model, uniformShapes(model, [1, 4, 8, 8]));
  assert.equal(units.filter((u) => u.kind === 'residual').length, 0);
});

test('BAD MODEL - unknown operators are named in the error', () => {
  const model = build([['Conv', ['x', 'w0'], ['c0']], ['FancyAct', ['c0'], ['y']], ['FancyAct', ['y'], ['z']]], { w0: [4, 4, 3, 3] });
  assert.throws(
    () => discoverStructure(model, uniformShapes(model, [1, 4, 8, 8])),
    (e: unknown) => e instanceof UnsupportedModelError && /FancyAct \(2×\)/.test(e.message) && /ai\.onnx/.test(e.message),
  );
});

test('BAD MODEL - operators of an unknown domain are named; onnxruntime contrib ops are a warning', () => {
  const custom = build([['Conv', ['x', 'w0'], ['c0']], ['Gelu', ['c0'], ['y'], undefined, 'my.company']], { w0: [4, 4, 3, 3] });
  assert.throws(
    () => discoverStructure(custom, uniformShapes(custom, [1, 4, 8, 8])),
    (e: unknown) => e instanceof UnsupportedModelError && /my\.company::Gelu/.test(e.message),
  );
  const contrib = build([['Conv', ['x', 'w0'], ['c0']], ['FastGelu', ['c0'], ['y'], undefined, 'com.microsoft']], { w0: [4, 4, 3, 3] });
  const s = discoverStructure(contrib, uniformShapes(contrib, [1, 4, 8, 8]));
  assert.equal(s.warnings.length, 1);
  assert.match(s.warnings[0]!, /com\.microsoft::FastGelu/);
});
