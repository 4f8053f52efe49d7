import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { CALIB_DATA, EVAL_DATA, fixtureModel } from '../helpers/paths.js';
import { strata, strataJson } from '../helpers/cli.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-sglp-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const json = strataJson;

const common = ['--data', CALIB_DATA, '--samples', '128', '--batch', '32'];

for (const name of ['resnet20', 'vit'] as const) {
  test(`similarity of ${name}: a symmetric CKA matrix with 1 on the diagonal, the same from both Gram backends`, () => {
    const a = json('similarity', fixtureModel(name), ...common);
    const b = json('similarity', fixtureModel(name), ...common, '--gram', 'typed-array');
    const units = a.units as string[];
    const m = a.matrix as number[][];
    const mb = b.matrix as number[][];
    assert.deepEqual(b.units, units);
    assert.equal(m.length, units.length);
    assert.ok(units.length >= (name === 'vit' ? 8 : 11));
    for (let i = 0; i < m.length; i++) {
      assert.ok(Math.abs(m[i]![i]! - 1) < 1e-6, `diagonal ${i}`);
      for (let j = 0; j < m.length; j++) {
        assert.ok(Math.abs(m[i]![j]! - m[j]![i]!) < 1e-9, 'symmetric');
        // float32 GEMM in onnxruntime vs float64 loops: agree to well within what matters for CKA
        assert.ok(Math.abs(m[i]![j]! - mb[i]![j]!) < 1e-3, `backends disagree at ${i},${j}: ${m[i]![j]} vs ${mb[i]![j]}`);
      }
    }
  });
}

test('segments partition the layers in order and the optimal cost falls with k', () => {
  const r = json('segments', fixtureModel('resnet20'), ...common);
  const segments = r.segments as string[][];
  const units = r.units as string[];
  assert.deepEqual(segments.flat(), units);
  assert.equal(segments.length, r.k);
  const curve = r.costCurve as number[];
  assert.equal(curve.length, units.length);
  for (let i = 1; i < curve.length; i++) assert.ok(curve[i]! <= curve[i - 1]! + 1e-12);
  const given = json('segments', fixtureModel('resnet20'), ...common, '--k', '4');
  assert.equal((given.segments as string[][]).length, 4);
});

test('plan → compress on ResNet-20: a valid smaller model, measured against the plan', () => {
  const planFile = join(dir, 'plan.json');
  const p = json('plan', fixtureModel('resnet20'), '--method', 'sglp', ...common, '--remove', '2', '-o', planFile, '--latency-batch', '8');
  assert.equal(p.method, 'sglp');
  const remove = p.remove as string[];
  assert.equal(remove.length, 2);
  assert.ok((p.predictedLatencyMs as number) < (p.baselineLatencyMs as number));
  assert.deepEqual(JSON.parse(readFileSync(planFile, 'utf8')).remove, remove);
  const inspect = json('inspect', fixtureModel('resnet20'));
  const units = inspect.units as { id: string; removable: boolean }[];
  for (const id of remove) assert.ok(units.find((u) => u.id === id)?.removable, `${id} is removable`);

  const out = join(dir, 'out.onnx');
  const c = json('compress', fixtureModel('resnet20'), '--plan', planFile, '-o', out, '--data', EVAL_DATA);
  assert.equal(c.output, out);
  assert.ok((c.latencyRatio as number) > 0);
  const before = json('evaluate', fixtureModel('resnet20'), '--data', EVAL_DATA);
  assert.equal(c.accuracyBefore, before.accuracy);
  const after = json('evaluate', out, '--data', EVAL_DATA, '--reference', fixtureModel('resnet20'));
  assert.equal(c.accuracyAfter, after.accuracy);
  assert.equal(c.agreement, after.agreement);
  const again = json('inspect', out);
  assert.equal((again.units as { kind: string }[]).filter((u) => u.kind === 'residual').length, 9 - 2);
});

test('compressed models load in onnxruntime with the original inputs and outputs', async () => {
  const planFile = join(dir, 'plan-vit.json');
  json('plan', fixtureModel('vit'), ...common, '--remove', '3', '-o', planFile, '--latency-batch', '4');
  const out = join(dir, 'vit-out.onnx');
  json('compress', fixtureModel('vit'), '--plan', planFile, '-o', out);
  const s = await ort.InferenceSession.create(out);
  assert.deepEqual(s.inputNames, ['input']);
  assert.deepEqual(s.outputNames, ['logits']);
  const r = await s.run({ input: new ort.Tensor('float32', new Float32Array(3 * 784).fill(0.5), [3, 1, 28, 28]) });
  assert.deepEqual(r.logits!.dims, [3, 10]);
});

test('BAD CALL - an impossible latency budget names the smallest reachable latency', () => {
  const r = strata('plan', fixtureModel('resnet20'), ...common, '--budget-ms', '0.0001', '--latency-batch', '4');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /strata: latency budget .* cannot be met: .*reaches [0-9.]+ ms at best/);
});

test('BAD CALL - a plan made for another model is refused; a non-plan file is refused', () => {
  const planFile = join(dir, 'plan.json');
  const r = strata('compress', fixtureModel('vgg'), '--plan', planFile, '-o', join(dir, 'x.onnx'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /plan was made for another model/);
  const bogus = join(dir, 'bogus.json');
  writeFileSync(bogus, '{"hello": 1}');
  const r2 = strata('compress', fixtureModel('resnet20'), '--plan', bogus, '-o', join(dir, 'y.onnx'));
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, /not a strata plan/);
});
