import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseK, costCurve, optimalSegmentation, type SegmentCost } from '../../service/src/core/segment/fisher.js';
import { InvalidArgumentError } from '../../service/src/core/errors.js';
import { rng, close } from '../helpers/random.js';



/** A symmetric similarity matrix with 1 on the diagonal and entries in [0, 1]. */
function randomSimilarity(l: number, random: () => number): number[][] {
  const m = Array.from({ length: l }, () => new Array<number>(l).fill(1));
  for (let i = 0; i < l; i++) {
    for (let j = i + 1; j < l; j++) {
      const v = random();
      m[i]![j] = v;
      m[j]![i] = v;
    }
  }
  return m;
}

/** Segment cost straight from the definitions: two-pass mean and deviations, or the pair sum. */
function refSegmentCost(matrix: number[][], segment: number[], cost: SegmentCost): number {
  const l = matrix.length;
  if (cost === 'fisher') {
    const mean = new Array<number>(l).fill(0);
    for (const t of segment) for (let c = 0; c < l; c++) mean[c]! += matrix[t]![c]! / segment.length;
    let s = 0;
    for (const t of segment) for (let c = 0; c < l; c++) s += (matrix[t]![c]! - mean[c]!) ** 2;
    return s;
  }
  let s = 0;
  for (let a = 0; a < segment.length; a++) {
    for (let b = a + 1; b < segment.length; b++) s += 1 - matrix[segment[a]!]![segment[b]!]!;
  }
  return s;
}

/** Every way to cut 0..l−1 into k non-empty contiguous runs. */
function* allSegmentations(l: number, k: number): Generator<number[][]> {
  function* cuts(start: number, remaining: number): Generator<number[]> {
    if (remaining === 0) {
      yield [];
      return;
    }
    // Positions where a new segment may start, leaving room for the segments still to place.
    for (let c = start; c <= l - remaining; c++) for (const rest of cuts(c + 1, remaining - 1)) yield [c, ...rest];
  }
  for (const starts of cuts(1, k - 1)) {
    const bounds = [0, ...starts, l];
    const segs: number[][] = [];
    for (let s = 0; s < k; s++) {
      const seg: number[] = [];
      for (let t = bounds[s]!; t < bounds[s + 1]!; t++) seg.push(t);
      segs.push(seg);
    }
    yield segs;
  }
}

function binomial(n: number, r: number): number {
  let v = 1;
  for (let i = 0; i < r; i++) v = (v * (n - i)) / (i + 1);
  return Math.round(v);
}

test('optimalSegmentation equals brute-force enumeration for L ≤ 9, every K, both costs', () => {
  const random = rng(11);
  for (const cost of ['fisher', 'dissimilarity'] as const) {
    for (let l = 1; l <= 9; l++) {
      for (let trial = 0; trial < 3; trial++) {
        const matrix = randomSimilarity(l, random);
        for (let k = 1; k <= l; k++) {
          let best = Number.POSITIVE_INFINITY;
          let count = 0;
          for (const segs of allSegmentations(l, k)) {
            count++;
            best = Math.min(best, segs.reduce((s, seg) => s + refSegmentCost(matrix, seg, cost), 0));
          }
          assert.equal(count, binomial(l - 1, k - 1), 'the enumeration is complete');
          const got = optimalSegmentation(matrix, k, cost);
          assert.ok(Math.abs(got.cost - best) <= 1e-9 * (1 + best), `${cost} L=${l} K=${k}: ${got.cost} vs ${best}`);

          // The returned segments are a contiguous partition into k parts and carry the reported cost.
          assert.equal(got.segments.length, k);
          assert.deepEqual(got.segments.flat(), Array.from({ length: l }, (_, i) => i));
          for (const seg of got.segments) assert.ok(seg.length > 0, 'no empty segment');
          const recomputed = got.segments.reduce((s, seg) => s + refSegmentCost(matrix, seg, cost), 0);
          close(recomputed, got.cost, 1e-9 * (1 + best), 'cost of the returned segments');
        }
      }
    }
  }
});

test('costCurve is non-increasing, ends at 0 for K = L, and matches optimalSegmentation', () => {
  const random = rng(12);
  for (const cost of ['fisher', 'dissimilarity'] as const) {
    for (const l of [2, 5, 10, 17]) {
      const matrix = randomSimilarity(l, random);
      const curve = costCurve(matrix, undefined, cost);
      assert.equal(curve.length, l);
      for (let k = 1; k < l; k++) assert.ok(curve[k]! <= curve[k - 1]! + 1e-12, `${cost} L=${l} K=${k + 1}`);
      close(curve[l - 1]!, 0, 1e-12, 'S(L, L)');
      assert.ok(curve[0]! > 0, 'S(L, 1) > 0');
      for (let k = 1; k <= l; k++) assert.equal(curve[k - 1], optimalSegmentation(matrix, k, cost).cost);
      const top = Math.min(3, l);
      assert.deepEqual(costCurve(matrix, top, cost), curve.slice(0, top));
    }
  }
});

/** Blocks of mutually similar units, weakly similar across blocks, with noise. */
function plantedBlocks(sizes: number[], random: () => number): number[][] {
  const block: number[] = [];
  sizes.forEach((size, b) => {
    for (let i = 0; i < size; i++) block.push(b);
  });
  const l = block.length;
  const m = Array.from({ length: l }, () => new Array<number>(l).fill(1));
  for (let i = 0; i < l; i++) {
    for (let j = i + 1; j < l; j++) {
      const v = (block[i] === block[j] ? 0.85 : 0.2) + 0.1 * (random() - 0.5);
      m[i]![j] = v;
      m[j]![i] = v;
    }
  }
  return m;
}

test('planted 3-block structure: chooseK picks 3 and the segmentation recovers the blocks', () => {
  const random = rng(13);
  for (const sizes of [
    [4, 4, 4],
    [3, 5, 4],
    [6, 2, 8],
  ]) {
    const matrix = plantedBlocks(sizes, random);
    for (const cost of ['fisher', 'dissimilarity'] as const) {
      const choice = chooseK(costCurve(matrix, undefined, cost));
      assert.deepEqual(choice, { k: 3, rule: 'elbow' }, `${cost} ${sizes.join('/')}`);
      const { segments } = optimalSegmentation(matrix, 3, cost);
      assert.deepEqual(
        segments.map((s) => s.length),
        sizes,
      );
    }
  }
  // And a planted 5-block matrix gives 5, so the answer above is not a constant.
  const five = plantedBlocks([3, 3, 4, 2, 4], random);
  assert.equal(chooseK(costCurve(five)).k, 5);
});

test('chooseK: worked example and degenerate curves', () => {
  // x = 0, .25, .5, .75, 1; y = 1, .4, .1, .05, 0; gaps 1−x−y = 0, .35, .4, .2, 0 → K = 3.
  assert.deepEqual(chooseK([10, 4, 1, 0.5, 0]), { k: 3, rule: 'elbow' });
  assert.deepEqual(chooseK([7]), { k: 1, rule: 'single-point' });
  assert.deepEqual(chooseK([2, 2, 2, 2]), { k: 1, rule: 'flat-curve' });
  assert.deepEqual(chooseK([0, 0, 0]), { k: 1, rule: 'flat-curve' });
  // Evenly falling (an identity similarity matrix: nothing groups) and concave curves have no elbow.
  assert.deepEqual(chooseK(costCurve([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])), { k: 1, rule: 'no-elbow' });
  assert.deepEqual(chooseK([10, 9, 7, 0]), { k: 1, rule: 'no-elbow' });
  // Ties go to the smaller K: x = 0, .25, .5, .75, 1 and y = 1, .25, 0, 0, 0 give gaps 0, .5, .5, .25, 0,
  // all exact in binary.
  assert.deepEqual(chooseK([1, 0.25, 0, 0, 0]), { k: 2, rule: 'elbow' });
  assert.throws(() => chooseK([]), InvalidArgumentError);
  assert.throws(() => chooseK([1, Number.NaN]), InvalidArgumentError);
});

test('segmentation rejects bad input', () => {
  assert.throws(() => optimalSegmentation([], 1), InvalidArgumentError);
  assert.throws(() => optimalSegmentation([[1, 0], [0]], 1), /square/);
  assert.throws(() => optimalSegmentation([[1, 0], [0, 1]], 3), /between 1 and the number of units \(2\)/);
  assert.throws(() => optimalSegmentation([[1, 0], [0, 1]], 0), InvalidArgumentError);
  assert.throws(() => optimalSegmentation([[1, Number.NaN], [0, 1]], 1), /not a finite number/);
  assert.throws(() => costCurve([[1, 0], [0, 1]], 5), /kMax/);
  assert.throws(() => optimalSegmentation([[1]], 1, 'euclid' as SegmentCost), /cost/);
});
