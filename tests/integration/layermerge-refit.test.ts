import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { type ConvShape, type ConvSpec, conv2dReference, convOutputShape } from '../../service/src/core/layermerge/conv.js';
import { NormalEquations, solveRefit } from '../../service/src/core/layermerge/refit.js';
import { gramModel } from '../../service/src/core/layermerge/standalone.js';
import { encodeModel } from '../../service/src/core/onnx/codec.js';
import { createSession } from '../../service/src/runtime/session.js';
import { rng as uniform } from '../helpers/random.js';

/** Seeded uniform values on [−0.5, 0.5). */
function rng(seed: number): () => number {
  const u = uniform(seed);
  return () => u() - 0.5;
}

/** The least-squares sums written out with a plain im2col in float64: the reference for the ORT model. */
function referenceSums(x: Float32Array, n: number, h: number, w: number, y: Float32Array, s: ConvShape) {
  const { cin, cout, kh, kw, group } = s;
  const o = convOutputShape(s, h, w);
  const cinG = cin / group;
  const coutG = cout / group;
  const d = cinG * kh * kw;
  const gram = new Float64Array(group * d * d);
  const xy = new Float64Array(group * d * coutG);
  const sx = new Float64Array(group * d);
  const sy = new Float64Array(cout);
  const yy = new Float64Array(cout);
  const patch = new Float64Array(d);
  for (let b = 0; b < n; b++) {
    for (let oy = 0; oy < o.h; oy++) {
      for (let ox = 0; ox < o.w; ox++) {
        for (let g = 0; g < group; g++) {
          for (let ic = 0; ic < cinG; ic++) {
            for (let ky = 0; ky < kh; ky++) {
              for (let kx = 0; kx < kw; kx++) {
                const iy = oy * s.stride[0] - s.pads[0] + ky * s.dilation[0];
                const ix = ox * s.stride[1] - s.pads[1] + kx * s.dilation[1];
                const inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                patch[(ic * kh + ky) * kw + kx] = inside ? x[((b * cin + g * cinG + ic) * h + iy) * w + ix]! : 0;
              }
            }
          }
          for (let i = 0; i < d; i++) {
            sx[g * d + i]! += patch[i]!;
            for (let k = 0; k < d; k++) gram[(g * d + i) * d + k]! += patch[i]! * patch[k]!;
          }
          for (let oc = 0; oc < coutG; oc++) {
            const yo = y[((b * cout + g * coutG + oc) * o.h + oy) * o.w + ox]!;
            for (let i = 0; i < d; i++) xy[(g * d + i) * coutG + oc]! += patch[i]! * yo;
          }
        }
        for (let c = 0; c < cout; c++) {
          const yo = y[((b * cout + c) * o.h + oy) * o.w + ox]!;
          sy[c]! += yo;
          yy[c]! += yo * yo;
        }
      }
    }
  }
  return { gram, xy, sx, sy, yy, rows: n * o.h * o.w };
}

async function ortSums(x: Float32Array, n: number, h: number, w: number, y: Float32Array, s: ConvShape) {
  const session = await createSession(encodeModel(gramModel(s, { c: s.cin, h, w }, 'N')));
  try {
    const o = convOutputShape(s, h, w);
    const r = await session.run(
      { x: new ort.Tensor('float32', x, [n, s.cin, h, w]), y: new ort.Tensor('float32', y, [n, s.cout, o.h, o.w]) },
      ['gram', 'xy', 'sx', 'sy', 'yy'],
    );
    const f = (k: string) => r[k]!.data as Float32Array;
    return { gram: f('gram'), xy: f('xy'), sx: f('sx'), sy: f('sy'), yy: f('yy'), rows: n * o.h * o.w };
  } finally {
    await session.release();
  }
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let k = 0; k < expected.length; k++) {
    const e = expected[k]!;
    assert.ok(Math.abs(actual[k]! - e) <= atol + rtol * Math.abs(e), `${what}[${k}]: ${actual[k]} vs ${e}`);
  }
}

const geometries: Array<[string, ConvShape]> = [
  ['3×3, pad 1, two groups', { cin: 4, cout: 6, kh: 3, kw: 3, stride: [1, 1], pads: [1, 1, 1, 1], dilation: [1, 1], group: 2 }],
  ['5×3 strided, asymmetric pads', { cin: 3, cout: 2, kh: 5, kw: 3, stride: [2, 1], pads: [2, 0, 1, 1], dilation: [1, 1], group: 1 }],
  ['3×3 dilated 2, depthwise', { cin: 5, cout: 5, kh: 3, kw: 3, stride: [1, 1], pads: [2, 2, 2, 2], dilation: [2, 2], group: 5 }],
];

for (const [what, s] of geometries) {
  test(`refit sums from onnxruntime's unfold + MatMul match a float64 im2col (${what})`, async () => {
    const r = rng(11);
    const n = 3;
    const h = 7;
    const w = 6;
    const o = convOutputShape(s, h, w);
    const x = Float32Array.from({ length: n * s.cin * h * w }, r);
    const y = Float32Array.from({ length: n * s.cout * o.h * o.w }, r);
    const ref = referenceSums(x, n, h, w, y, s);
    const got = await ortSums(x, n, h, w, y, s);
    for (const k of ['gram', 'xy', 'sx', 'sy', 'yy'] as const) assertClose(got[k], ref[k], 1e-5, 1e-5, k);
  });
}

test('sums from onnxruntime and the solver recover a conv from its own outputs (layouts agree)', async () => {
  const r = rng(12);
  const s: ConvShape = { cin: 4, cout: 4, kh: 3, kw: 3, stride: [1, 1], pads: [1, 1, 1, 1], dilation: [1, 1], group: 2 };
  const truth: ConvSpec = {
    ...s,
    weight: Float32Array.from({ length: 4 * 2 * 9 }, r),
    bias: Float32Array.from({ length: 4 }, r),
  };
  const n = 6;
  const h = 8;
  const w = 8;
  const x = Float32Array.from({ length: n * 4 * h * w }, r);
  const y = Float32Array.from(conv2dReference(x, n, 4, h, w, truth).data);
  const eq = new NormalEquations(2, 18, 2);
  eq.add(await ortSums(x, n, h, w, y, s));
  const start: ConvSpec = { ...s, weight: new Float32Array(truth.weight.length), bias: new Float32Array(4) };
  const fit = solveRefit(eq, start, { ridge: 1e-9 });
  assertClose(fit.spec.weight, truth.weight, 2e-3, 1e-3, 'weight');
  assertClose(fit.spec.bias, truth.bias, 2e-3, 1e-3, 'bias');
  assert.ok(fit.fidelityAfter < 1e-3, `relative error after refit ${fit.fidelityAfter}`);
});
