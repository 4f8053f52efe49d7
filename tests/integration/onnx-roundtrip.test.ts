import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { decodeModel, encodeModel } from '../../service/src/core/onnx/codec.js';
import { MODELS, fixtureModel } from '../helpers/paths.js';

function seededInput(n: number, seed: number): Float32Array {
  // xorshift32: deterministic inputs without a dependency
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 2 ** 32) * 4 - 2;
  }
  return out;
}

for (const name of MODELS) {
  test(`decode → encode of ${name} gives bit-identical outputs in onnxruntime`, async () => {
    const original = new Uint8Array(readFileSync(fixtureModel(name)));
    const reencoded = encodeModel(decodeModel(original));
    // a second trip must be a fixed point: nothing drifts on repeated edits
    assert.deepEqual(encodeModel(decodeModel(reencoded)), reencoded);
    const a = await ort.InferenceSession.create(original);
    const b = await ort.InferenceSession.create(reencoded);
    const dims = [4, 1, 28, 28];
    const feeds = { [a.inputNames[0]!]: new ort.Tensor('float32', seededInput(4 * 28 * 28, 7), dims) };
    const ra = await a.run(feeds);
    const rb = await b.run(feeds);
    for (const out of a.outputNames) {
      const x = ra[out]!.data as Float32Array;
      const y = rb[out]!.data as Float32Array;
      assert.equal(x.length, y.length);
      assert.deepEqual(new Uint8Array(x.buffer, x.byteOffset, x.byteLength), new Uint8Array(y.buffer, y.byteOffset, y.byteLength));
    }
    await a.release();
    await b.release();
  });
}
