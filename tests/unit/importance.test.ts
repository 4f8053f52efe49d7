import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CosineAccumulator,
  IMPORTANCE_MEASURES,
  ablationImportance,
  crossEntropy,
  gradNormImportance,
  klDivergence,
  top1,
} from '../../service/src/core/importance/measures.js';
import { InvalidArgumentError } from '../../service/src/core/errors.js';
import { rng, close } from '../helpers/random.js';



function randomArray(count: number, random: () => number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = 2 * random() - 1;
  return out;
}

/** Cosines by explicit multi-index: gather each feature vector with a strided walk, one position at a time. */
function refCosines(x: Float32Array, y: Float32Array, dims: number[], axis: number): number[] {
  const strides = dims.map((_, a) => dims.slice(a + 1).reduce((p, d) => p * d, 1));
  const others = dims.map((_, a) => a).filter((a) => a !== axis);
  const out: number[] = [];
  const index = new Array<number>(dims.length).fill(0);
  const visit = (depth: number): void => {
    if (depth === others.length) {
      let d = 0;
      let nx = 0;
      let ny = 0;
      for (let c = 0; c < dims[axis]!; c++) {
        index[axis] = c;
        const at = index.reduce((s, v, a) => s + v * strides[a]!, 0);
        d += x[at]! * y[at]!;
        nx += x[at]! ** 2;
        ny += y[at]! ** 2;
      }
      out.push(d / Math.sqrt(nx * ny));
      return;
    }
    const a = others[depth]!;
    for (let v = 0; v < dims[a]!; v++) {
      index[a] = v;
      visit(depth + 1);
    }
  };
  visit(0);
  return out;
}

test('CosineAccumulator matches explicit per-position cosines for NCHW (axis 1) and [N, T, D] (axis 2)', () => {
  const random = rng(21);
  for (const [dims, axis] of [
    [[2, 3, 4, 5], 1],
    [[3, 7, 6], 2],
    [[3, 7, 6], -1],
    [[5, 4], 0],
    [[2, 8, 1, 1], 1],
  ] as [number[], number][]) {
    const acc = new CosineAccumulator();
    const all: number[] = [];
    for (let batch = 0; batch < 3; batch++) {
      const size = dims.reduce((p, d) => p * d, 1);
      const x = randomArray(size, random);
      // Output = input plus a perturbation, so the cosines sit well inside (−1, 1) and vary.
      const y = x.map((v) => v + 0.8 * (2 * random() - 1));
      acc.addBatch(x, y, dims, axis);
      all.push(...refCosines(x, y, dims, axis < 0 ? axis + dims.length : axis));
    }
    const mean = all.reduce((s, v) => s + v, 0) / all.length;
    assert.equal(acc.positions, all.length);
    assert.ok(Math.abs(acc.meanCosine() - mean) <= 1e-12, `dims ${dims} axis ${axis}`);
    close(acc.blockInfluence(), 1 - mean, 1e-12, 'block influence');
    close(acc.angularDistance(), Math.acos(mean) / Math.PI, 1e-12, 'angular distance');
  }
});

test('CosineAccumulator: identity gives 0 influence, negation gives angle 1, scaling does not matter', () => {
  const random = rng(22);
  const dims = [2, 4, 3, 3];
  const x = randomArray(72, random);
  const same = new CosineAccumulator();
  same.addBatch(x, x.map((v) => 3 * v), dims, 1);
  close(same.blockInfluence(), 0, 1e-12, 'identity: block influence');
  close(same.angularDistance(), 0, 1e-6, 'identity: angle');
  const flipped = new CosineAccumulator();
  flipped.addBatch(x, x.map((v) => -v), dims, 1);
  close(flipped.blockInfluence(), 2, 1e-12, 'negation: block influence');
  close(flipped.angularDistance(), 1, 1e-6, 'negation: angle');
});

test('CosineAccumulator: zero vectors count as 1 when both are zero and 0 when one is', () => {
  // Two positions (axis 1 of [1, 2, 2]): position 0 has x = y = 0; position 1 has x ≠ 0, y = 0.
  const x = Float32Array.from([0, 1, 0, 2]);
  const y = Float32Array.from([0, 0, 0, 0]);
  const acc = new CosineAccumulator();
  acc.addBatch(x, y, [1, 2, 2], 1);
  assert.equal(acc.meanCosine(), 0.5);
  assert.ok(Number.isFinite(acc.angularDistance()), 'angle is finite');
});

test('CosineAccumulator rejects bad shapes, axes and values', () => {
  const acc = new CosineAccumulator();
  assert.throws(() => acc.meanCosine(), /no positions/);
  assert.throws(() => acc.addBatch(new Float32Array(6), new Float32Array(6), [2, 4], 1), /must both hold 8 values/);
  assert.throws(() => acc.addBatch(new Float32Array(8), new Float32Array(6), [2, 4], 1), InvalidArgumentError);
  assert.throws(() => acc.addBatch(new Float32Array(8), new Float32Array(8), [2, 4], 2), /featureAxis/);
  assert.throws(() => acc.addBatch(new Float32Array(8), new Float32Array(8), [2, 4], -3), /featureAxis/);
  assert.throws(() => acc.addBatch(new Float32Array(0), new Float32Array(0), [], 0), /dims/);
  assert.throws(() => acc.addBatch(Float32Array.from([Number.NaN, 1]), Float32Array.from([1, 1]), [1, 2], 1), /non-finite/);
  assert.equal(acc.positions, 0);
});

// ---- losses from logits ----------------------------------------------------------------------------

function refSoftmax(row: number[]): number[] {
  // Plain definition in float64; fine for the moderate logits used with it.
  const e = row.map((v) => Math.exp(v));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function rows(values: ArrayLike<number>, n: number, classes: number): number[][] {
  return Array.from({ length: n }, (_, i) => Array.from({ length: classes }, (_, c) => values[i * classes + c]!));
}

test('klDivergence and crossEntropy match the plain softmax definitions', () => {
  const random = rng(23);
  const n = 7;
  const classes = 5;
  const p = Float32Array.from({ length: n * classes }, () => 6 * random() - 3);
  const q = Float64Array.from({ length: n * classes }, () => 6 * random() - 3);
  const labels = Int32Array.from({ length: n }, () => Math.floor(random() * classes));

  let kl = 0;
  let ce = 0;
  rows(p, n, classes).forEach((row, i) => {
    const ps = refSoftmax(row);
    const qs = refSoftmax(rows(q, n, classes)[i]!);
    for (let c = 0; c < classes; c++) kl += ps[c]! * Math.log(ps[c]! / qs[c]!);
    ce -= Math.log(ps[labels[i]!]!);
  });
  close(klDivergence(p, q, n, classes), kl / n, 1e-12, 'KL');
  close(crossEntropy(p, labels, n, classes), ce / n, 1e-12, 'cross-entropy');
  const int64Labels = BigInt64Array.from(labels, (v) => BigInt(v));
  close(crossEntropy(p, int64Labels, n, classes), ce / n, 1e-12, 'cross-entropy, int64 labels');
  assert.equal(klDivergence(p, p, n, classes), 0);
});

test('klDivergence and crossEntropy are stable for huge logits, where the plain formulas overflow', () => {
  // Shifting every logit of a row by a constant leaves softmax unchanged.
  const base = [2, -1, 0.5];
  const shifted = base.map((v) => v + 1000);
  assert.ok(!Number.isFinite(refSoftmax(shifted)[0]!), 'the naive route does overflow here');
  const q = [0, 1, -2];
  close(klDivergence(shifted, q, 1, 3), klDivergence(base, q, 1, 3), 1e-12, 'KL, shifted logits');
  close(crossEntropy(shifted, [2], 1, 3), crossEntropy(base, [2], 1, 3), 1e-12, 'cross-entropy, shifted logits');
  // A near-certain p against a q that disagrees: a large, finite KL.
  const big = klDivergence([800, 0], [0, 800], 1, 2);
  close(big, 800, 1e-9, 'KL of near-certain opposites');
});

test('top1 picks the first largest logit per row', () => {
  const random = rng(24);
  const n = 9;
  const classes = 6;
  const logits = Float32Array.from({ length: n * classes }, () => Math.round(random() * 4));
  const got = top1(logits, n, classes);
  rows(logits, n, classes).forEach((row, i) => {
    assert.equal(got[i], row.indexOf(Math.max(...row)));
  });
  assert.deepEqual(Array.from(top1([1, 3, 3, 0], 1, 4)), [1]);
});

test('ablationImportance, gradnorm placeholder and argument checks', () => {
  assert.equal(ablationImportance(0.5, 0.75), 0.25);
  assert.equal(ablationImportance(0.5, 0.25), -0.25);
  assert.throws(() => ablationImportance(Number.NaN, 1), /baselineLoss/);
  assert.ok(IMPORTANCE_MEASURES.includes('gradnorm'), 'IMPORTANCE_MEASURES.includes(\'gradnorm\')');
  assert.throws(
    () => gradNormImportance(),
    (e: unknown) =>
      e instanceof InvalidArgumentError &&
      e.message === 'importance: gradnorm needs gradients, which strata does not compute yet; use ablation, block-influence or angular',
  );
  assert.throws(() => klDivergence([1, 2], [1], 1, 2), /qLogits/);
  assert.throws(() => crossEntropy([1, 2], [2], 1, 2), /not a class/);
  assert.throws(() => crossEntropy([1, 2], [0, 1], 1, 2), /expected 1 labels/);
  assert.throws(() => top1([1, Number.POSITIVE_INFINITY], 1, 2), /not finite/);
  assert.throws(() => top1([], 0, 2), /n: must be a positive integer/);
});
