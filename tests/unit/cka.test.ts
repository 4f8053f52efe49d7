import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gramMatrix } from '../../service/src/core/similarity/gram.js';
import { CkaAccumulator, hsic0, hsic1 } from '../../service/src/core/similarity/cka.js';
import { InvalidArgumentError } from '../../service/src/core/errors.js';
import { rng, close } from '../helpers/random.js';

// ---- deterministic random data -------------------------------------------------------------------



function normals(count: number, random: () => number): Float64Array {
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const u = Math.max(random(), 1e-300);
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  }
  return out;
}

// ---- independent float64 references (plain loops, explicit matrices) ------------------------------

function naiveGram(X: ArrayLike<number>, n: number, p: number): Float64Array {
  const G = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < p; k++) s += X[i * p + k]! * X[j * p + k]!;
      G[i * n + j] = s;
    }
  }
  return G;
}

function matmul(A: Float64Array, B: Float64Array, n: number): Float64Array {
  const C = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += A[i * n + k]! * B[k * n + j]!;
      C[i * n + j] = s;
    }
  }
  return C;
}

function trace(A: Float64Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += A[i * n + i]!;
  return s;
}

/** tr(K H L H)/(n−1)² with the centring matrix H = I − 11ᵀ/n built explicitly. */
function refHsic0(K: Float64Array, L: Float64Array, n: number): number {
  const H = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) H[i * n + j] = (i === j ? 1 : 0) - 1 / n;
  const KHLH = matmul(matmul(matmul(K, H, n), L, n), H, n);
  return trace(KHLH, n) / ((n - 1) * (n - 1));
}

/** The formula of Nguyen et al. (2021) with zero-diagonal copies and an explicit K̄L̄ product. */
function refHsic1(K: Float64Array, L: Float64Array, n: number): number {
  const Kb = Float64Array.from(K);
  const Lb = Float64Array.from(L);
  for (let i = 0; i < n; i++) {
    Kb[i * n + i] = 0;
    Lb[i * n + i] = 0;
  }
  const KL = matmul(Kb, Lb, n);
  let sumK = 0;
  let sumL = 0;
  let sumKL = 0;
  for (let i = 0; i < n * n; i++) {
    sumK += Kb[i]!;
    sumL += Lb[i]!;
    sumKL += KL[i]!;
  }
  return (trace(KL, n) + (sumK * sumL) / ((n - 1) * (n - 2)) - (2 / (n - 2)) * sumKL) / (n * (n - 3));
}

/** CKA by the per-batch sum definition, from the reference HSIC. */
function refCka(
  batches: Float64Array[][],
  n: number[],
  estimator: 'unbiased' | 'biased',
): number[][] {
  const h = estimator === 'unbiased' ? refHsic1 : refHsic0;
  const l = batches[0]!.length;
  const S: number[][] = Array.from({ length: l }, () => new Array<number>(l).fill(0));
  batches.forEach((grams, b) => {
    for (let i = 0; i < l; i++) for (let j = 0; j < l; j++) S[i]![j]! += h(grams[i]!, grams[j]!, n[b]!);
  });
  return S.map((row, i) => row.map((v, j) => v / Math.sqrt(S[i]![i]! * S[j]![j]!)));
}

function maxAbsDiff(a: number[][], b: number[][]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i]!.length; j++) m = Math.max(m, Math.abs(a[i]![j]! - b[i]![j]!));
  return m;
}

/** Random orthogonal p×p matrix: modified Gram–Schmidt on the columns of a Gaussian matrix. */
function randomOrthogonal(p: number, random: () => number): Float64Array {
  const A = normals(p * p, random);
  for (let c = 0; c < p; c++) {
    for (let prev = 0; prev < c; prev++) {
      let d = 0;
      for (let r = 0; r < p; r++) d += A[r * p + c]! * A[r * p + prev]!;
      for (let r = 0; r < p; r++) A[r * p + c]! -= d * A[r * p + prev]!;
    }
    let norm = 0;
    for (let r = 0; r < p; r++) norm += A[r * p + c]! ** 2;
    norm = Math.sqrt(norm);
    for (let r = 0; r < p; r++) A[r * p + c]! /= norm;
  }
  return A;
}

function multiply(X: Float64Array, n: number, p: number, Q: Float64Array, q: number): Float64Array {
  const out = new Float64Array(n * q);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < q; j++) {
      let s = 0;
      for (let k = 0; k < p; k++) s += X[i * p + k]! * Q[k * q + j]!;
      out[i * q + j] = s;
    }
  }
  return out;
}

/** Features of L layers on the same n examples, with some shared structure so CKA values are varied. */
function layerFeatures(n: number, widths: number[], random: () => number): Float64Array[] {
  const base = normals(n * 6, random);
  return widths.map((p, layer) => {
    const mix = normals(6 * p, random);
    const X = multiply(base, n, 6, mix, p);
    const noise = normals(n * p, random);
    for (let i = 0; i < X.length; i++) X[i] = X[i]! + (0.3 + layer * 0.4) * noise[i]! + 0.5;
    return X;
  });
}

// ---- gramMatrix ------------------------------------------------------------------------------------

test('gramMatrix equals naive loops for odd sizes, both input types, across column blocks', () => {
  const random = rng(1);
  for (const [n, p] of [
    [1, 1],
    [2, 3],
    [3, 7],
    [4, 1],
    [5, 513],
    [7, 1100],
    [8, 512],
    [13, 1025],
    [16, 40],
    [33, 300],
  ] as const) {
    const X64 = normals(n * p, random);
    const X32 = Float32Array.from(X64);
    for (const X of [X64, X32]) {
      const G = gramMatrix(X, n, p);
      const R = naiveGram(X, n, p);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          // Bound the summation-order difference by the sum of |products|, not by the result.
          let magnitude = 0;
          for (let k = 0; k < p; k++) magnitude += Math.abs(X[i * p + k]! * X[j * p + k]!);
          const tol = 1e-13 * magnitude + 1e-300;
          assert.ok(Math.abs(G[i * n + j]! - R[i * n + j]!) <= tol, `n=${n} p=${p} (${i},${j})`);
          assert.equal(G[i * n + j], G[j * n + i], 'exactly symmetric');
        }
      }
    }
  }
});

test('gramMatrix: p = 0 gives zeros; wrong lengths and sizes are rejected', () => {
  assert.deepEqual(Array.from(gramMatrix(new Float32Array(0), 3, 0)), new Array(9).fill(0));
  assert.throws(() => gramMatrix(new Float32Array(10), 3, 4), InvalidArgumentError);
  assert.throws(() => gramMatrix(new Float32Array(0), 0, 4), InvalidArgumentError);
  assert.throws(() => gramMatrix(new Float32Array(6), 2, 2.5), InvalidArgumentError);
});

// ---- HSIC estimators -------------------------------------------------------------------------------

test('hsic1 and hsic0 match the explicit-matrix references on Gram and on general matrices', () => {
  const random = rng(2);
  for (const n of [4, 5, 9, 16]) {
    const X = normals(n * 7, random);
    const Y = normals(n * 3, random);
    const K = naiveGram(X, n, 7);
    const L = naiveGram(Y, n, 3);
    const A = normals(n * n, random); // not symmetric: the formulas must not rely on symmetry
    const B = normals(n * n, random);
    for (const [P, Q] of [
      [K, L],
      [K, K],
      [A, B],
      [A, K],
    ] as const) {
      const before = [Float64Array.from(P), Float64Array.from(Q)];
      const r1 = refHsic1(P, Q, n);
      const r0 = refHsic0(P, Q, n);
      const scale = Math.sqrt(refFrob(P) * refFrob(Q));
      assert.ok(Math.abs(hsic1(P, Q, n) - r1) <= 1e-12 * scale, `hsic1 n=${n}`);
      assert.ok(Math.abs(hsic0(P, Q, n) - r0) <= 1e-12 * scale, `hsic0 n=${n}`);
      assert.deepEqual(P, before[0], 'inputs are not mutated');
      assert.deepEqual(Q, before[1], 'inputs are not mutated');
    }
  }
});

function refFrob(M: Float64Array): number {
  let s = 0;
  for (const v of M) s += v * v;
  return s;
}

test('hsic1 needs n ≥ 4 and matching sizes', () => {
  const K = new Float64Array(9);
  assert.throws(() => hsic1(K, K, 3), InvalidArgumentError);
  assert.throws(() => hsic1(new Float64Array(16), new Float64Array(9), 4), InvalidArgumentError);
  assert.throws(() => hsic0(new Float64Array(16), new Float64Array(15), 4), InvalidArgumentError);
});

// ---- CkaAccumulator --------------------------------------------------------------------------------

function gramsOf(features: Float64Array[], n: number, widths: number[]): Float64Array[] {
  return features.map((X, a) => gramMatrix(X, n, widths[a]!));
}

test('CkaAccumulator equals the reference per-batch-sum CKA (both estimators), to 1e-9', () => {
  const random = rng(3);
  const widths = [5, 12, 3, 20, 8];
  const units = widths.map((_, i) => `u${i}`);
  const sizes = [8, 11, 6];
  for (const estimator of ['unbiased', 'biased'] as const) {
    const acc = new CkaAccumulator(units, { estimator });
    const batches: Float64Array[][] = [];
    for (const n of sizes) {
      const grams = gramsOf(layerFeatures(n, widths, random), n, widths);
      batches.push(grams);
      acc.addBatch(grams, n);
    }
    assert.equal(acc.batches, sizes.length);
    const got = acc.matrix();
    assert.deepEqual(got.units, units);
    const want = refCka(batches, sizes, estimator);
    assert.ok(maxAbsDiff(got.matrix, want) <= 1e-9, `${estimator}: ${maxAbsDiff(got.matrix, want)}`);
    // The values must be informative for this comparison to mean something.
    const offDiagonal = got.matrix.flatMap((row, i) => row.filter((_, j) => j !== i));
    assert.ok(Math.max(...offDiagonal) - Math.min(...offDiagonal) > 0.2, 'varied CKA values');
  }
});

test('biased CKA equals the feature-space formula ‖YᵀX‖²/(‖XᵀX‖‖YᵀY‖) on centred features', () => {
  const random = rng(4);
  const n = 12;
  const widths = [4, 9];
  const [X, Y] = layerFeatures(n, widths, random) as [Float64Array, Float64Array];
  const centre = (M: Float64Array, p: number): Float64Array => {
    const out = Float64Array.from(M);
    for (let k = 0; k < p; k++) {
      let mean = 0;
      for (let i = 0; i < n; i++) mean += M[i * p + k]!;
      mean /= n;
      for (let i = 0; i < n; i++) out[i * p + k]! -= mean;
    }
    return out;
  };
  const cross = (A: Float64Array, p: number, B: Float64Array, q: number): number => {
    let s = 0;
    for (let a = 0; a < p; a++) {
      for (let b = 0; b < q; b++) {
        let d = 0;
        for (let i = 0; i < n; i++) d += A[i * p + a]! * B[i * q + b]!;
        s += d * d;
      }
    }
    return s;
  };
  const Xc = centre(X, 4);
  const Yc = centre(Y, 9);
  const want = cross(Yc, 9, Xc, 4) / Math.sqrt(cross(Xc, 4, Xc, 4) * cross(Yc, 9, Yc, 9));
  const acc = new CkaAccumulator(['x', 'y'], { estimator: 'biased' });
  acc.addBatch([gramMatrix(X, n, 4), gramMatrix(Y, n, 9)], n);
  close(acc.matrix().matrix[0]![1]!, want, 1e-12, 'CKA(x, y)');
});

test('CKA: 1 on the diagonal, exactly symmetric, within [-1, 1]', () => {
  const random = rng(5);
  const widths = [6, 6, 10, 2];
  for (const estimator of ['unbiased', 'biased'] as const) {
    const acc = new CkaAccumulator(['a', 'b', 'c', 'd'], { estimator });
    for (const n of [10, 10, 7]) acc.addBatch(gramsOf(layerFeatures(n, widths, random), n, widths), n);
    const { matrix } = acc.matrix();
    for (let i = 0; i < 4; i++) {
      assert.equal(matrix[i]![i], 1);
      for (let j = 0; j < 4; j++) {
        assert.equal(matrix[i]![j], matrix[j]![i]);
        assert.ok(Math.abs(matrix[i]![j]!) <= 1, `|CKA(${i}, ${j})| ≤ 1`);
      }
    }
  }
});

test('CKA is invariant to an orthogonal transform and to isotropic scaling of a representation', () => {
  const random = rng(6);
  const widths = [7, 5, 9];
  const p = 7;
  const Q = randomOrthogonal(p, random);
  // Q really is orthogonal, otherwise the test would prove nothing.
  const QtQ = multiply(transpose(Q, p), p, p, Q, p);
  for (let i = 0; i < p; i++) for (let j = 0; j < p; j++) close(QtQ[i * p + j]!, i === j ? 1 : 0, 1e-12, 'QᵀQ = I');

  for (const estimator of ['unbiased', 'biased'] as const) {
    const plain = new CkaAccumulator(['x', 'y', 'z'], { estimator });
    const rotated = new CkaAccumulator(['x', 'y', 'z'], { estimator });
    const scaled = new CkaAccumulator(['x', 'y', 'z'], { estimator });
    for (const n of [9, 12]) {
      const feats = layerFeatures(n, widths, random);
      plain.addBatch(gramsOf(feats, n, widths), n);
      const xr = multiply(feats[0]!, n, p, Q, p);
      rotated.addBatch(gramsOf([xr, feats[1]!, feats[2]!], n, widths), n);
      const xs = feats[0]!.map((v) => 3.7 * v);
      const zs = feats[2]!.map((v) => 1e-3 * v);
      scaled.addBatch(gramsOf([xs, feats[1]!, zs], n, widths), n);
    }
    const base = plain.matrix().matrix;
    assert.ok(maxAbsDiff(rotated.matrix().matrix, base) <= 1e-10, `${estimator} rotation`);
    assert.ok(maxAbsDiff(scaled.matrix().matrix, base) <= 1e-10, `${estimator} scaling`);
    // A sanity counter-check: a non-orthogonal (anisotropic) map does change CKA.
    const skew = new CkaAccumulator(['x', 'y', 'z'], { estimator });
    for (const n of [9, 12]) {
      const feats = layerFeatures(n, widths, random);
      const xk = feats[0]!.map((v, i) => (i % p === 0 ? 25 * v : v));
      skew.addBatch(gramsOf([xk, feats[1]!, feats[2]!], n, widths), n);
    }
    assert.ok(maxAbsDiff(skew.matrix().matrix, base) > 1e-3, `${estimator} anisotropic scaling is noticed`);
  }
});

function transpose(A: Float64Array, p: number): Float64Array {
  const out = new Float64Array(p * p);
  for (let i = 0; i < p; i++) for (let j = 0; j < p; j++) out[j * p + i] = A[i * p + j]!;
  return out;
}

test('minibatch accumulation is the per-batch sum: order-independent and not the pooled CKA', () => {
  const random = rng(7);
  const widths = [4, 8, 6];
  const n = 8;
  const feats = [0, 1, 2].map(() => layerFeatures(n, widths, random));
  const grams = feats.map((f) => gramsOf(f, n, widths));
  const forward = new CkaAccumulator(['a', 'b', 'c'], { estimator: 'unbiased' });
  const backward = new CkaAccumulator(['a', 'b', 'c'], { estimator: 'unbiased' });
  for (const g of grams) forward.addBatch(g, n);
  for (const g of [...grams].reverse()) backward.addBatch(g, n);
  close(maxAbsDiff(forward.matrix().matrix, backward.matrix().matrix), 0, 1e-14, 'batch order');
  close(maxAbsDiff(forward.matrix().matrix, refCka(grams, [n, n, n], 'unbiased')), 0, 1e-9, 'per-batch sum');

  // One batch of all 24 examples is a different estimate; equality would mean the batches were pooled.
  const pooled = new CkaAccumulator(['a', 'b', 'c'], { estimator: 'unbiased' });
  const all = widths.map((p, a) => {
    const out = new Float64Array(3 * n * p);
    feats.forEach((f, b) => out.set(f[a]!, b * n * p));
    return gramMatrix(out, 3 * n, p);
  });
  pooled.addBatch(all, 3 * n);
  assert.ok(maxAbsDiff(pooled.matrix().matrix, forward.matrix().matrix) > 1e-6, 'pooled differs from per-batch');
});

test('CkaAccumulator reads only the upper triangle of each Gram matrix', () => {
  const random = rng(9);
  const widths = [3, 6, 4];
  const n = 9;
  const grams = gramsOf(layerFeatures(n, widths, random), n, widths);
  const scrambled = grams.map((g) => {
    const out = Float64Array.from(g);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) out[i * n + j] = 1e6 * (random() - 0.5);
    return out;
  });
  for (const estimator of ['unbiased', 'biased'] as const) {
    const a = new CkaAccumulator(['a', 'b', 'c'], { estimator });
    const b = new CkaAccumulator(['a', 'b', 'c'], { estimator });
    a.addBatch(grams, n);
    b.addBatch(scrambled, n);
    assert.deepEqual(b.matrix(), a.matrix());
  }
});

test('a constant representation gives CKA 0 off the diagonal and 1 on it, never NaN', () => {
  const random = rng(8);
  const n = 10;
  for (const estimator of ['unbiased', 'biased'] as const) {
    const acc = new CkaAccumulator(['live', 'constant', 'zero', 'other'], { estimator });
    for (let b = 0; b < 2; b++) {
      const live = normals(n * 5, random);
      const constant = new Float64Array(n * 5);
      for (let i = 0; i < n; i++) constant.set([1.5, -2, 0.25, 7, 3], i * 5);
      const zero = new Float64Array(n * 5);
      const other = normals(n * 3, random);
      acc.addBatch(
        [gramMatrix(live, n, 5), gramMatrix(constant, n, 5), gramMatrix(zero, n, 5), gramMatrix(other, n, 3)],
        n,
      );
    }
    const { matrix } = acc.matrix();
    assert.deepEqual(acc.degenerateUnits(), ['constant', 'zero']);
    for (let i = 0; i < 4; i++) {
      for (let j = 0; j < 4; j++) {
        assert.ok(Number.isFinite(matrix[i]![j]!), `CKA(${i}, ${j}) is finite`);
        if (i === j) assert.equal(matrix[i]![j], 1);
        else if (i === 1 || i === 2 || j === 1 || j === 2) assert.equal(matrix[i]![j], 0);
      }
    }
    assert.ok(Math.abs(matrix[0]![3]!) > 0, 'live units keep their value');
  }
});

test('variation at rounding level counts as constant; small real variation does not', () => {
  const random = rng(10);
  const n = 12;
  // c·11ᵀ plus a symmetric perturbation of relative size `relative`.
  const nearlyConstant = (relative: number): Float64Array => {
    const g = new Float64Array(n * n).fill(250);
    for (let i = 0; i < n; i++) {
      for (let j = i; j < n; j++) {
        const v = 250 * (1 + relative * (random() - 0.5));
        g[i * n + j] = v;
        g[j * n + i] = v;
      }
    }
    return g;
  };
  const live = gramMatrix(normals(n * 4, random), n, 4);
  for (const estimator of ['unbiased', 'biased'] as const) {
    const acc = new CkaAccumulator(['live', 'rounding', 'small'], { estimator });
    acc.addBatch([live, nearlyConstant(1e-13), nearlyConstant(1e-6)], n);
    assert.deepEqual(acc.degenerateUnits(), ['rounding'], estimator);
    assert.equal(acc.matrix().matrix[0]![1], 0);
  }
});

test('CkaAccumulator rejects bad input with clear errors', () => {
  assert.throws(() => new CkaAccumulator([], { estimator: 'unbiased' }), InvalidArgumentError);
  assert.throws(() => new CkaAccumulator(['a', 'a'], { estimator: 'unbiased' }), /duplicate unit id 'a'/);
  const acc = new CkaAccumulator(['a', 'b'], { estimator: 'unbiased' });
  assert.throws(() => acc.matrix(), /no batch/);
  assert.throws(() => acc.addBatch([new Float64Array(9), new Float64Array(9)], 3), /at least 4 examples, got 3/);
  assert.throws(() => acc.addBatch([new Float64Array(16)], 4), /expected 2 Gram matrices/);
  assert.throws(() => acc.addBatch([new Float64Array(16), new Float64Array(15)], 4), /unit 'b' has 15 values/);
  const bad = new Float64Array(16);
  bad[5] = Number.NaN;
  assert.throws(() => acc.addBatch([new Float64Array(16), bad], 4), /non-finite/);
  assert.equal(acc.batches, 0, 'a rejected batch leaves the sums untouched');
  const biased = new CkaAccumulator(['a'], { estimator: 'biased' });
  assert.throws(() => biased.addBatch([new Float64Array(1)], 1), /at least 2 examples/);
});
