/**
 * Fisher optimal segmentation of an ordered sequence of units, driven by their L×L similarity (CKA)
 * matrix: split units 0..L−1 into K contiguous segments minimising the total within-segment cost.
 *
 * Exact dynamic programme (Fisher 1958): with S(j, k) the least cost of the first j units in k segments,
 *   S(j, 1) = D(0, j−1),  S(j, k) = min_{k−1 ≤ m < j} S(m, k−1) + D(m, j−1),
 * then backtrack from S(L, K). The segment costs D are tabulated first (see `segmentCosts`), so the
 * programme itself is O(K·L²).
 */
import { InvalidArgumentError } from '../errors.js';

/**
 * Within-segment cost of units i..j:
 * - 'fisher': each unit is described by its row x_t of the similarity matrix (its similarity to every
 *   unit), and D(i, j) = Σ_t ‖x_t − x̄‖², the classic sum of squared deviations from the segment mean.
 * - 'dissimilarity': D(i, j) = Σ_{i ≤ a < b ≤ j} (1 − CKA(a, b)), the total dissimilarity of the pairs a
 *   segment puts together.
 * SGLP does not say which it uses; 'fisher' is the default as the classic form of the method.
 */
export type SegmentCost = 'fisher' | 'dissimilarity';

export interface Segmentation {
  /** Unit indices of each segment, in order; together they are 0..L−1 exactly once. */
  segments: number[][];
  /** Total within-segment cost S(L, K). */
  cost: number;
}

export function optimalSegmentation(matrix: number[][], k: number, cost: SegmentCost = 'fisher'): Segmentation {
  const l = checkMatrix(matrix);
  checkCost(cost);
  if (!Number.isInteger(k) || k < 1 || k > l) {
    throw new InvalidArgumentError('k', `must be an integer between 1 and the number of units (${l}), got ${k}`);
  }
  const { best, split } = solve(segmentCosts(matrix, cost), l, k);

  // split[k][j] is where the last of k segments over the first j units starts.
  const segments: number[][] = [];
  let end = l;
  for (let kk = k; kk >= 1; kk--) {
    const start = kk === 1 ? 0 : split[kk]![end]!;
    const segment: number[] = [];
    for (let t = start; t < end; t++) segment.push(t);
    segments.push(segment);
    end = start;
  }
  segments.reverse();
  return { segments, cost: best[k]![l]! };
}

/** S(L, K) for K = 1..kMax (default L): the least total cost with each number of segments. */
export function costCurve(matrix: number[][], kMax?: number, cost: SegmentCost = 'fisher'): number[] {
  const l = checkMatrix(matrix);
  checkCost(cost);
  const top = kMax ?? l;
  if (!Number.isInteger(top) || top < 1 || top > l) {
    throw new InvalidArgumentError('kMax', `must be an integer between 1 and the number of units (${l}), got ${top}`);
  }
  const { best } = solve(segmentCosts(matrix, cost), l, top);
  const curve: number[] = [];
  for (let kk = 1; kk <= top; kk++) curve.push(best[kk]![l]!);
  return curve;
}

/**
 * Names of the outcomes of `chooseK`:
 * - 'elbow': the rule below found a bend;
 * - 'single-point': a curve of one value (one unit, or kMax = 1), so K = 1;
 * - 'flat-curve': more segments do not lower the cost (no structure to split on), so K = 1;
 * - 'no-elbow': the curve never dips below its chord (it falls evenly or ever faster, so no number of
 *   segments stands out), so K = 1, leaving the pruning unconstrained by segments.
 */
export type ChooseKRule = 'elbow' | 'single-point' | 'flat-curve' | 'no-elbow';

/** Relative size under which a drop in cost, or a gap below the chord, is taken as rounding. */
const CURVE_TOLERANCE = 1e-9;

/**
 * Picks the number of segments from the optimal cost curve (curve[K−1] = S(L, K), K = 1..kMax), by the
 * elbow rule: normalise K to x = (K−1)/(kMax−1) and the cost to y = (S(K) − S(kMax))/(S(1) − S(kMax)),
 * so the curve runs from (0, 1) to (1, 0); the elbow is the K whose point lies farthest below the chord
 * joining the ends, i.e. the largest 1 − x − y (the "knee" of Satopää et al. 2011). Ties go to the
 * smaller K. The choice depends on kMax, which fixes the ends of the chord.
 */
export function chooseK(curve: number[]): { k: number; rule: ChooseKRule } {
  if (curve.length === 0) {
    throw new InvalidArgumentError('curve', 'needs at least one value');
  }
  for (const value of curve) {
    if (!Number.isFinite(value)) throw new InvalidArgumentError('curve', `has a non-finite value (${value})`);
  }
  const kMax = curve.length;
  if (kMax === 1) return { k: 1, rule: 'single-point' };
  const first = curve[0]!;
  const last = curve[kMax - 1]!;
  const drop = first - last;
  const magnitude = Math.max(...curve.map(Math.abs));
  if (!(drop > CURVE_TOLERANCE * magnitude)) return { k: 1, rule: 'flat-curve' };

  let bestK = 1;
  let bestGap = 0;
  for (let kk = 1; kk <= kMax; kk++) {
    const x = (kk - 1) / (kMax - 1);
    const y = (curve[kk - 1]! - last) / drop;
    const gap = 1 - x - y;
    if (gap > bestGap) {
      bestGap = gap;
      bestK = kk;
    }
  }
  if (bestGap <= CURVE_TOLERANCE) return { k: 1, rule: 'no-elbow' };
  return { k: bestK, rule: 'elbow' };
}

/**
 * Table D[i·L + j] (i ≤ j) of the cost of segment i..j.
 * - 'fisher': for each start i the segment grows one unit at a time with Welford's update,
 *   D(i, j) = D(i, j−1) + (m−1)/m·‖x_j − x̄_{i..j−1}‖² with m = j − i + 1. Each step is O(L) (rows have L
 *   entries), O(L³) in all; it avoids the cancellation of the Σ‖x‖² − ‖Σx‖²/m form.
 * - 'dissimilarity': D(i, j) = D(i, j−1) + Σ_{a=i..j−1} (1 − s(a, j)), with the inner sum grown as i
 *   moves down, O(L²). s(a, b) is the mean of the two entries, so a slightly asymmetric matrix counts as
 *   its symmetric part.
 */
function segmentCosts(matrix: number[][], cost: SegmentCost): Float64Array {
  const l = matrix.length;
  const D = new Float64Array(l * l);
  if (cost === 'fisher') {
    const mean = new Float64Array(l);
    for (let i = 0; i < l; i++) {
      mean.set(matrix[i]!);
      let total = 0;
      for (let j = i + 1; j < l; j++) {
        const row = matrix[j]!;
        const m = j - i + 1;
        let sq = 0;
        for (let c = 0; c < l; c++) {
          const delta = row[c]! - mean[c]!;
          sq += delta * delta;
          mean[c]! += delta / m;
        }
        total += ((m - 1) / m) * sq;
        D[i * l + j] = total;
      }
    }
  } else {
    for (let j = 1; j < l; j++) {
      let column = 0;
      for (let i = j - 1; i >= 0; i--) {
        column += 1 - 0.5 * (matrix[i]![j]! + matrix[j]![i]!);
        D[i * l + j] = D[i * l + j - 1]! + column;
      }
    }
  }
  return D;
}

/**
 * best[k][j]: least cost of the first j units in k segments (k = 1..kMax); split[k][j]: the start of the
 * last segment in that optimum (first minimum on ties, so results are deterministic).
 */
function solve(D: Float64Array, l: number, kMax: number): { best: Float64Array[]; split: Int32Array[] } {
  const best: Float64Array[] = [new Float64Array(0)];
  const split: Int32Array[] = [new Int32Array(0)];
  const first = new Float64Array(l + 1).fill(Number.POSITIVE_INFINITY);
  for (let j = 1; j <= l; j++) first[j] = D[j - 1]!;
  best.push(first);
  split.push(new Int32Array(l + 1));
  for (let k = 2; k <= kMax; k++) {
    const previous = best[k - 1]!;
    const current = new Float64Array(l + 1).fill(Number.POSITIVE_INFINITY);
    const where = new Int32Array(l + 1).fill(-1);
    for (let j = k; j <= l; j++) {
      let value = Number.POSITIVE_INFINITY;
      let at = -1;
      for (let m = k - 1; m < j; m++) {
        const candidate = previous[m]! + D[m * l + j - 1]!;
        if (candidate < value) {
          value = candidate;
          at = m;
        }
      }
      current[j] = value;
      where[j] = at;
    }
    best.push(current);
    split.push(where);
  }
  return { best, split };
}

function checkMatrix(matrix: number[][]): number {
  const l = matrix.length;
  if (l === 0) throw new InvalidArgumentError('matrix', 'needs at least one unit');
  for (let i = 0; i < l; i++) {
    const row = matrix[i]!;
    if (row.length !== l) {
      throw new InvalidArgumentError('matrix', `must be square: row ${i} has ${row.length} entries, expected ${l}`);
    }
    for (let j = 0; j < l; j++) {
      if (!Number.isFinite(row[j]!)) {
        throw new InvalidArgumentError('matrix', `entry (${i}, ${j}) is not a finite number`);
      }
    }
  }
  return l;
}

function checkCost(cost: SegmentCost): void {
  if (cost !== 'fisher' && cost !== 'dissimilarity') {
    throw new InvalidArgumentError('cost', `must be 'fisher' or 'dissimilarity', got ${JSON.stringify(cost)}`);
  }
}
