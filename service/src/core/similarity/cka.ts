/**
 * Linear Centered Kernel Alignment between units, accumulated over minibatches.
 *
 * Two HSIC estimators on n×n Gram matrices (row-major):
 * - hsic1: the unbiased estimator used for minibatch CKA by Nguyen, Raghu & Kornblith (2021),
 *   HSIC₁(K, L) = [tr(K̄L̄) + (1ᵀK̄1)(1ᵀL̄1)/((n−1)(n−2)) − 2/(n−2)·1ᵀK̄L̄1] / (n(n−3)), where K̄ is K with
 *   its diagonal set to zero. Needs n ≥ 4.
 * - hsic0: the biased estimator tr(KHLH)/(n−1)², H = I − 11ᵀ/n.
 *
 * CKA(a, b) = Σ_batches HSIC(K_a, K_b) / sqrt(Σ HSIC(K_a, K_a) · Σ HSIC(K_b, K_b)), so only the L×L sums
 * survive between batches and activations never need to be held for the whole data set.
 *
 * For the L² pairwise step each Gram matrix is first transformed once so that every HSIC becomes a plain
 * inner product of two vectors of n(n−1)/2 (or n(n+1)/2) values; the L×L table of inner products is then
 * itself a Gram matrix, computed with the tuned kernel in gram.ts.
 * - Unbiased: the U-centred matrix (Székely & Rizzo 2014)
 *     Ũ_ij = K̄_ij − r_i/(n−2) − r_j/(n−2) + s/((n−1)(n−2)) for i ≠ j, 0 on the diagonal,
 *   with r = K̄1 and s = 1ᵀK̄1, satisfies HSIC₁(K, L) = ⟨Ũ_K, Ũ_L⟩_F / (n(n−3)). Its rows sum to zero, which
 *   is what makes the cross terms of the formula above vanish. A side benefit: HSIC₁(K, K) is a sum of
 *   squares, never negative by rounding, so the CKA denominator is always well defined.
 * - Biased: HKH (double centring), with tr(KHLH) = ⟨HKH, HLH⟩_F.
 * Both matrices are symmetric, so only the upper triangle is packed.
 */
import { InvalidArgumentError } from '../errors.js';
import { gramMatrix } from './gram.js';

export type HsicEstimator = 'unbiased' | 'biased';

/**
 * A representation whose centred self-similarity is below this fraction of its uncentred size carries
 * no usable variation: relative to its magnitude its spread is under 1e-10, far below float32 resolution
 * of the activations it came from, so what is left is rounding noise (a constant representation
 * leaves ~1e-31 here). Such a unit gets CKA 0 with every other unit and 1 with itself.
 */
const DEGENERATE_RELATIVE_POWER = 1e-20;

/** Unbiased HSIC (Nguyen et al. 2021) of two n×n kernel matrices; neither input is modified. */
export function hsic1(K: Float64Array, L: Float64Array, n: number): number {
  checkSquare(K, n, 'K');
  checkSquare(L, n, 'L');
  if (n < 4) {
    throw new InvalidArgumentError('n', `the unbiased HSIC estimator needs at least 4 examples, got ${n}`);
  }
  // Diagonals are skipped rather than zeroed in a copy. The trace is written for general (not necessarily
  // symmetric) matrices: tr(K̄L̄) = Σ_ij K̄_ij L̄_ji; likewise 1ᵀK̄L̄1 = (column sums of K̄)·(row sums of L̄).
  const colSumK = new Float64Array(n);
  const rowSumL = new Float64Array(n);
  let trace = 0;
  let sumK = 0;
  let sumL = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      if (i === j) continue;
      const k = K[i * n + j]!;
      const l = L[i * n + j]!;
      trace += k * L[j * n + i]!;
      colSumK[j]! += k;
      rowSumL[i]! += l;
      sumK += k;
      sumL += l;
    }
  }
  let cross = 0;
  for (let i = 0; i < n; i++) cross += colSumK[i]! * rowSumL[i]!;
  return (trace + (sumK * sumL) / ((n - 1) * (n - 2)) - (2 / (n - 2)) * cross) / (n * (n - 3));
}

/** Biased HSIC tr(KHLH)/(n−1)² of two n×n kernel matrices; neither input is modified. */
export function hsic0(K: Float64Array, L: Float64Array, n: number): number {
  checkSquare(K, n, 'K');
  checkSquare(L, n, 'L');
  if (n < 2) {
    throw new InvalidArgumentError('n', `the biased HSIC estimator needs at least 2 examples, got ${n}`);
  }
  // tr(KHLH) = tr(HKH·L) because H is idempotent; (HKH)_ij = K_ij − rowMean_i − colMean_j + mean.
  const rowMean = new Float64Array(n);
  const colMean = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const k = K[i * n + j]!;
      rowMean[i]! += k;
      colMean[j]! += k;
      total += k;
    }
  }
  for (let i = 0; i < n; i++) {
    rowMean[i]! /= n;
    colMean[i]! /= n;
  }
  const mean = total / (n * n);
  let trace = 0;
  for (let i = 0; i < n; i++) {
    const ri = rowMean[i]!;
    for (let j = 0; j < n; j++) {
      trace += (K[i * n + j]! - ri - colMean[j]! + mean) * L[j * n + i]!;
    }
  }
  return trace / ((n - 1) * (n - 1));
}

export interface CkaMatrix {
  units: string[];
  /** matrix[a][b] = CKA between units[a] and units[b]; symmetric, 1 on the diagonal. */
  matrix: number[][];
}

export interface CkaAccumulatorOptions {
  estimator: HsicEstimator;
}

/**
 * Streams batches of per-unit Gram matrices into the L×L CKA matrix.
 *
 * Memory between batches: the L×L HSIC sums plus one scale per unit; during `addBatch`, one transient
 * buffer of L·n(n±1)/2 float64 values (the packed centred matrices). Batches may differ in size (a short
 * last batch is fine); each needs n ≥ 4 for the unbiased estimator and n ≥ 2 for the biased one.
 *
 * Gram matrices are taken as symmetric (as X·Xᵀ is): only the upper triangle and the diagonal are read,
 * as LAPACK does for symmetric matrices, so the lower triangle may hold anything.
 *
 * A unit whose representation does not vary over the examples seen (constant activations, all-zero
 * output) has zero centred self-similarity, and CKA with it is 0/0. It is defined here as 0 against every
 * other unit and 1 against itself: a constant carries no information another representation could share,
 * while a unit is trivially identical to itself. `degenerateUnits()` lists such units.
 */
export class CkaAccumulator {
  private readonly unitIds: string[];
  private readonly estimator: HsicEstimator;
  /** Row-major L×L sums of per-batch HSIC between units. */
  private readonly sums: Float64Array;
  /** Per unit, Σ over batches of ‖K‖²_F with the same normalisation as the HSIC of that batch. */
  private readonly scales: Float64Array;
  private batchCount = 0;

  constructor(unitIds: string[], options: CkaAccumulatorOptions) {
    if (unitIds.length === 0) {
      throw new InvalidArgumentError('unitIds', 'at least one unit is needed');
    }
    const seen = new Set<string>();
    for (const id of unitIds) {
      if (seen.has(id)) throw new InvalidArgumentError('unitIds', `duplicate unit id '${id}'`);
      seen.add(id);
    }
    if (options.estimator !== 'unbiased' && options.estimator !== 'biased') {
      throw new InvalidArgumentError(
        'estimator',
        `must be 'unbiased' or 'biased', got ${JSON.stringify(options.estimator)}`,
      );
    }
    this.unitIds = [...unitIds];
    this.estimator = options.estimator;
    const l = unitIds.length;
    this.sums = new Float64Array(l * l);
    this.scales = new Float64Array(l);
  }

  get batches(): number {
    return this.batchCount;
  }

  /** One n×n Gram matrix per unit, in the order of the unit ids given to the constructor. */
  addBatch(grams: Float64Array[], n: number): void {
    const l = this.unitIds.length;
    if (grams.length !== l) {
      throw new InvalidArgumentError('grams', `expected ${l} Gram matrices (one per unit), got ${grams.length}`);
    }
    const minimum = this.estimator === 'unbiased' ? 4 : 2;
    if (!Number.isInteger(n) || n < minimum) {
      throw new InvalidArgumentError(
        'n',
        `the ${this.estimator} estimator needs batches of at least ${minimum} examples, got ${n}`,
      );
    }
    for (let a = 0; a < l; a++) {
      const g = grams[a]!;
      if (g.length !== n * n) {
        throw new InvalidArgumentError(
          'grams',
          `Gram matrix of unit '${this.unitIds[a]}' has ${g.length} values, expected n² = ${n * n}`,
        );
      }
    }

    const unbiased = this.estimator === 'unbiased';
    const width = unbiased ? (n * (n - 1)) / 2 : (n * (n + 1)) / 2;
    const packed = new Float64Array(l * width);
    const normaliser = unbiased ? 2 / (n * (n - 3)) : 1 / ((n - 1) * (n - 1));
    const batchScales = new Float64Array(l);
    for (let a = 0; a < l; a++) {
      const target = packed.subarray(a * width, (a + 1) * width);
      const power = unbiased ? packUCentred(grams[a]!, n, target) : packDoubleCentred(grams[a]!, n, target);
      if (!Number.isFinite(power)) {
        throw new InvalidArgumentError(
          'grams',
          `Gram matrix of unit '${this.unitIds[a]}' has non-finite values (or values too large to square in float64)`,
        );
      }
      batchScales[a] = power;
    }

    const products = gramMatrix(packed, l, width);
    // The unbiased packing holds each off-diagonal pair once, hence the 2 in its normaliser; the biased
    // packing already weights off-diagonal entries by √2 so its inner products are the full Frobenius ones.
    for (let i = 0; i < l * l; i++) this.sums[i]! += products[i]! * normaliser;
    const scaleNormaliser = unbiased ? 1 / (n * (n - 3)) : normaliser;
    for (let a = 0; a < l; a++) this.scales[a]! += batchScales[a]! * scaleNormaliser;
    this.batchCount++;
  }

  /** Ids of the units whose representation showed no variation over the batches seen so far. */
  degenerateUnits(): string[] {
    const l = this.unitIds.length;
    const out: string[] = [];
    for (let a = 0; a < l; a++) if (this.isDegenerate(a)) out.push(this.unitIds[a]!);
    return out;
  }

  matrix(): CkaMatrix {
    if (this.batchCount === 0) {
      throw new InvalidArgumentError('batches', 'no batch was added; CKA needs at least one');
    }
    const l = this.unitIds.length;
    const degenerate: boolean[] = [];
    for (let a = 0; a < l; a++) degenerate.push(this.isDegenerate(a));
    const matrix: number[][] = [];
    for (let a = 0; a < l; a++) {
      const row: number[] = new Array<number>(l).fill(0);
      for (let b = 0; b < l; b++) {
        if (a === b) {
          row[b] = 1;
        } else if (degenerate[a] || degenerate[b]) {
          row[b] = 0;
        } else {
          // gramMatrix mirrors its result, so the sums are exactly symmetric and so is this.
          const value = this.sums[a * l + b]! / Math.sqrt(this.sums[a * l + a]! * this.sums[b * l + b]!);
          // |CKA| ≤ 1 by Cauchy–Schwarz on the packed vectors; clamp the last-bit overshoot.
          row[b] = Math.max(-1, Math.min(1, value));
        }
      }
      matrix.push(row);
    }
    return { units: [...this.unitIds], matrix };
  }

  private isDegenerate(a: number): boolean {
    const l = this.unitIds.length;
    return this.sums[a * l + a]! <= DEGENERATE_RELATIVE_POWER * this.scales[a]!;
  }
}

/**
 * Writes the strict upper triangle of the U-centred matrix of K into `out`, row by row, reading only the
 * strict upper triangle of K. Returns Σ_{i≠j} K_ij² (NaN or infinite if K holds a non-finite value).
 */
function packUCentred(K: Float64Array, n: number, out: Float64Array): number {
  // First pass: copy the triangle and gather row sums; rows are read contiguously, the lower triangle
  // never (strided reads of it cost more than all the arithmetic here).
  const rowSum = new Float64Array(n);
  let power = 0;
  let o = 0;
  for (let i = 0; i < n; i++) {
    // The estimator ignores the diagonal, but a non-finite value there still means a broken Gram matrix.
    if (!Number.isFinite(K[i * n + i]!)) return Number.NaN;
    let r = rowSum[i]!;
    for (let j = i + 1, at = i * n + i + 1; j < n; j++, at++) {
      const v = K[at]!;
      out[o++] = v;
      r += v;
      rowSum[j]! += v;
      power += v * v;
    }
    rowSum[i] = r;
  }
  let total = 0;
  for (let i = 0; i < n; i++) total += rowSum[i]!;
  const inv = 1 / (n - 2);
  const shift = total / ((n - 1) * (n - 2));
  for (let i = 0; i < n; i++) rowSum[i]! *= inv;
  o = 0;
  for (let i = 0; i < n; i++) {
    const ri = rowSum[i]! - shift;
    for (let j = i + 1; j < n; j++) out[o++]! -= ri + rowSum[j]!;
  }
  return 2 * power;
}

/**
 * Writes the upper triangle (diagonal included) of HKH into `out`, row by row, with the off-diagonal
 * entries scaled by √2 so that a plain inner product of two packings equals the Frobenius inner product
 * of the full matrices. Reads only the upper triangle of K. Returns ‖K‖²_F (NaN or infinite if K holds
 * a non-finite value).
 */
function packDoubleCentred(K: Float64Array, n: number, out: Float64Array): number {
  const rowMean = new Float64Array(n);
  let power = 0;
  let o = 0;
  for (let i = 0; i < n; i++) {
    const d = K[i * n + i]!;
    out[o++] = d;
    power += d * d;
    let r = rowMean[i]! + d;
    let offPower = 0;
    for (let j = i + 1, at = i * n + i + 1; j < n; j++, at++) {
      const v = K[at]!;
      out[o++] = v;
      r += v;
      rowMean[j]! += v;
      offPower += v * v;
    }
    rowMean[i] = r;
    power += 2 * offPower;
  }
  let mean = 0;
  for (let i = 0; i < n; i++) {
    rowMean[i]! /= n;
    mean += rowMean[i]!;
  }
  mean /= n;
  o = 0;
  for (let i = 0; i < n; i++) {
    const ri = rowMean[i]! - mean;
    out[o] = out[o]! - 2 * ri - mean;
    o++;
    for (let j = i + 1; j < n; j++) {
      out[o] = Math.SQRT2 * (out[o]! - ri - rowMean[j]!);
      o++;
    }
  }
  return power;
}

function checkSquare(M: Float64Array, n: number, name: string): void {
  if (!Number.isInteger(n) || n < 1) {
    throw new InvalidArgumentError('n', `must be a positive integer, got ${n}`);
  }
  if (M.length !== n * n) {
    throw new InvalidArgumentError(name, `expected an n×n matrix of ${n * n} values, got ${M.length}`);
  }
}
