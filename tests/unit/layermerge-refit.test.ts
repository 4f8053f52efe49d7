import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../service/src/core/errors.js';
import type { ConvSpec } from '../../service/src/core/layermerge/conv.js';
import { NormalEquations, cholesky, choleskySolve, conjugateGradient, solveRefit } from '../../service/src/core/layermerge/refit.js';
import { rng as uniform } from '../helpers/random.js';

/** Seeded uniform values on [−0.5, 0.5). */
function rng(seed: number): () => number {
  const u = uniform(seed);
  return () => u() - 0.5;
}

/** A random SPD matrix MᵀM + n·I, row-major. */
function spd(n: number, r: () => number): Float64Array {
  const m = Float64Array.from({ length: n * n }, r);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += m[k * n + i]! * m[k * n + j]!;
      a[i * n + j] = s + (i === j ? 0.5 : 0);
    }
  }
  return a;
}

function residual(a: Float64Array, n: number, x: Float64Array, b: Float64Array, m: number): number {
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < m; c++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += a[i * n + k]! * x[k * m + c]!;
      worst = Math.max(worst, Math.abs(s - b[i * m + c]!));
    }
  }
  return worst;
}

test('Cholesky solves A X = B for several right-hand sides to rounding error', () => {
  const r = rng(1);
  const n = 23;
  const m = 4;
  const a = spd(n, r);
  const b = Float64Array.from({ length: n * m }, r);
  const l = Float64Array.from(a);
  assert.equal(cholesky(l, n), true);
  const x = Float64Array.from(b);
  choleskySolve(l, n, x, m);
  assert.ok(residual(a, n, x, b, m) < 1e-10);
});

test('Cholesky reports a matrix that is not positive definite', () => {
  const a = Float64Array.from([1, 2, 2, 1]);
  assert.equal(cholesky(a, 2), false);
});

test('conjugate gradients reach the Cholesky solution', () => {
  const r = rng(2);
  const n = 30;
  const m = 3;
  const a = spd(n, r);
  const b = Float64Array.from({ length: n * m }, r);
  const x = new Float64Array(n * m);
  const iterations = conjugateGradient(a, n, b, m, x, 500, 1e-12);
  assert.ok(iterations <= 500);
  assert.ok(residual(a, n, x, b, m) < 1e-8, `residual ${residual(a, n, x, b, m)}`);
});

/** Sums of a planted linear map y = W x + b (+ noise) over random rows, per group, written out plainly. */
function planted(groups: number, d: number, coutG: number, rows: number, noise: number, seed: number) {
  const r = rng(seed);
  const w = Float64Array.from({ length: groups * coutG * d }, r);
  const b = Float64Array.from({ length: groups * coutG }, r);
  const eq = new NormalEquations(groups, d, coutG);
  const gram = new Float64Array(groups * d * d);
  const xy = new Float64Array(groups * d * coutG);
  const sx = new Float64Array(groups * d);
  const sy = new Float64Array(groups * coutG);
  const yy = new Float64Array(groups * coutG);
  for (let row = 0; row < rows; row++) {
    for (let g = 0; g < groups; g++) {
      const x = Float64Array.from({ length: d }, () => r() + 0.3);
      for (let i = 0; i < d; i++) {
        sx[g * d + i]! += x[i]!;
        for (let k = 0; k < d; k++) gram[(g * d + i) * d + k]! += x[i]! * x[k]!;
      }
      for (let oc = 0; oc < coutG; oc++) {
        const o = g * coutG + oc;
        let y = b[o]! + noise * r();
        for (let i = 0; i < d; i++) y += w[o * d + i]! * x[i]!;
        sy[o]! += y;
        yy[o]! += y * y;
        for (let i = 0; i < d; i++) xy[(g * d + i) * coutG + oc]! += x[i]! * y;
      }
    }
  }
  eq.add({ gram, xy, sx, sy, yy, rows });
  return { eq, w, b };
}

function spec(groups: number, cinG: number, coutG: number, k: number, weight: Float32Array, bias: Float32Array): ConvSpec {
  return { cin: groups * cinG, cout: groups * coutG, kh: k, kw: k, stride: [1, 1], pads: [0, 0, 0, 0], dilation: [1, 1], group: groups, weight, bias };
}

test('the refit recovers a planted linear map from its sums (grouped), and says it fits better', () => {
  const groups = 2;
  const cinG = 3;
  const k = 2;
  const d = cinG * k * k;
  const coutG = 2;
  const { eq, w, b } = planted(groups, d, coutG, 400, 0, 3);
  const start = spec(groups, cinG, coutG, k, new Float32Array(w.length), new Float32Array(b.length));
  const r = solveRefit(eq, start, { ridge: 1e-10 });
  assert.equal(r.solver, 'cholesky');
  for (let n = 0; n < w.length; n++) assert.ok(Math.abs(r.spec.weight[n]! - w[n]!) < 1e-4, `w[${n}] ${r.spec.weight[n]} vs ${w[n]}`);
  for (let n = 0; n < b.length; n++) assert.ok(Math.abs(r.spec.bias[n]! - b[n]!) < 1e-4, `b[${n}]`);
  assert.ok(r.fidelityBefore > 0.5);
  assert.ok(r.fidelityAfter < 1e-5, `fit ${r.fidelityAfter}`);
});

test('a large ridge keeps the weights at the exact merge they start from', () => {
  const { eq, w, b } = planted(1, 4, 2, 200, 0.1, 4);
  const w0 = Float32Array.from(w, (v) => v + 0.5);
  const start = spec(1, 1, 2, 2, w0, Float32Array.from(b));
  const r = solveRefit(eq, start, { ridge: 1e9 });
  for (let n = 0; n < w0.length; n++) assert.ok(Math.abs(r.spec.weight[n]! - w0[n]!) < 1e-4);
});

test('the refit refuses sums accumulated for another geometry, naming the argument', () => {
  const { eq } = planted(1, 4, 2, 10, 0, 5);
  const wrong = spec(1, 2, 2, 2, new Float32Array(16), new Float32Array(2));
  assert.throws(
    () => solveRefit(eq, wrong),
    (e: unknown) => e instanceof InvalidArgumentError && /^merged: does not match/.test(e.message),
  );
  assert.throws(
    () => new NormalEquations(1, 0, 1),
    (e: unknown) => e instanceof InvalidArgumentError && /^d: must be a positive integer/.test(e.message),
  );
});
