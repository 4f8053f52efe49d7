import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../../service/src/core/onnx/codec.js';
import { cloneModel } from '../../service/src/core/onnx/edit.js';
import { GraphIndex } from '../../service/src/core/onnx/graph.js';
import type { ModelProto } from '../../service/src/core/onnx/proto.js';
import { discoverStructure } from '../../service/src/core/structure/discover.js';
import type { Unit } from '../../service/src/core/structure/unit.js';
import { removeUnits } from '../../service/src/core/compress/remove-units.js';
import { loadModelFile } from '../../service/src/runtime/model-file.js';
import { probeShapes } from '../../service/src/runtime/shape-probe.js';
import { fixtureModel, type ModelName } from '../helpers/paths.js';

async function structureOf(name: ModelName) {
  const { model } = loadModelFile(fixtureModel(name));
  const shapes = await probeShapes(model, new Map([['input', [1, 1, 28, 28]]]));
  return { model, units: discoverStructure(model, shapes).units };
}

/**
 * The independent reference: a block whose last linear layer outputs zeros is an identity
 * (x + 0), so zeroing that layer's weights in the ORIGINAL graph must give what removing the
 * block gives.
 */
function zeroLastLayers(model: ModelProto, unit: Unit): ModelProto {
  const copy = cloneModel(model);
  const idx = new GraphIndex(copy.graph!);
  const lastOf = (u: Unit): string => {
    const add = idx.node(idx.producer.get(u.output)!);
    return (add.input ?? []).find((t) => t !== u.input)!;
  };
  const branchOutputs =
    unit.kind === 'transformer'
      ? [] // filled below from the two halves
      : [lastOf(unit)];
  if (unit.kind === 'transformer') {
    for (const n of idx.nodes) {
      if (n.op_type !== 'Add') continue;
      const [a, b] = n.input ?? [];
      if (!a || !b || idx.constant.has(a) || idx.constant.has(b)) continue;
      if (unit.nodes.includes(n.name ?? '')) {
        // a residual Add inside the block: the operand that is not the block's running stream
        const pa = idx.producer.get(a);
        const pb = idx.producer.get(b);
        const isLinear = (p: number | undefined) => p !== undefined && ['Add', 'MatMul', 'Gemm'].includes(idx.node(p).op_type ?? '') && (idx.node(p).input ?? []).some((t) => idx.constant.has(t));
        if (isLinear(pb)) branchOutputs.push(b);
        else if (isLinear(pa)) branchOutputs.push(a);
      }
    }
  }
  for (const out of branchOutputs) {
    const stack = [out];
    while (stack.length > 0) {
      const t = stack.pop()!;
      const p = idx.producer.get(t);
      if (p === undefined) continue;
      const n = idx.node(p);
      for (const inp of n.input ?? []) {
        const init = idx.initializers.get(inp);
        if (init && init.data_type === 1) init.raw_data = new Uint8Array(init.raw_data!.byteLength);
        else if (!idx.constant.has(inp) && !['Conv', 'MatMul', 'Gemm'].includes(n.op_type ?? '')) stack.push(inp);
      }
    }
  }
  return copy;
}

async function run(model: ModelProto, x: Float32Array): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(model));
  const r = await s.run({ input: new ort.Tensor('float32', x, [2, 1, 28, 28]) });
  await s.release();
  return r[s.outputNames[0]!]!.data as Float32Array;
}

const x = Float32Array.from({ length: 2 * 784 }, (_, i) => Math.sin(i * 0.37) * 1.5);

for (const [name, kind] of [['resnet20', 'residual'], ['vit', 'transformer'], ['mobilenetv2', 'residual']] as const) {
  test(`removing a ${kind} block of ${name} equals zeroing its branch in the original`, async () => {
    const { model, units } = await structureOf(name);
    const candidates = units.filter((u) => u.kind === kind && u.removable);
    assert.ok(candidates.length >= 2);
    for (const unit of [candidates[0]!, candidates[candidates.length - 1]!]) {
      const removed = removeUnits(model, [unit]);
      assert.ok(removed.removedNodes >= unit.nodes.length - 1, 'the block’s nodes are gone');
      assert.ok(removed.removedInitializers > 0, 'its weights are gone');
      const got = await run(removed.model, x);
      const want = await run(zeroLastLayers(model, unit), x);
      assert.equal(got.length, want.length);
      for (let i = 0; i < got.length; i++) {
        assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-4 + 1e-4 * Math.abs(want[i]!), `${unit.id}: output ${i} ${got[i]} vs ${want[i]}`);
      }
    }
  });
}

test('removing every removable block at once leaves a valid model with the same interface', async () => {
  for (const name of ['resnet20', 'vit'] as const) {
    const { model, units } = await structureOf(name);
    const all = units.filter((u) => !u.parent && u.removable && (u.kind === 'residual' || u.kind === 'transformer'));
    const { model: out } = removeUnits(model, all);
    assert.deepEqual(out.graph!.input!.map((i) => i.name), model.graph!.input!.map((i) => i.name));
    assert.deepEqual(out.graph!.output!.map((i) => i.name), model.graph!.output!.map((i) => i.name));
    const y = await run(out, x);
    assert.equal(y.length, 20);
    assert.ok(y.every(Number.isFinite));
  }
});

test('BAD CALL - a unit that is not removable is refused with its reason', async () => {
  const { model, units } = await structureOf('resnet20');
  const projection = units.find((u) => u.kind === 'residual' && !u.removable)!;
  assert.throws(() => removeUnits(model, [projection]), /cannot be removed: the skip is a projection/);
});
