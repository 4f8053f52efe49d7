/**
 * Linear-kernel Gram matrix K = X·Xᵀ of a batch of flattened activations (n examples × p features).
 *
 * This is the hot path of the similarity analysis: every analysed unit produces one Gram matrix per
 * batch, with p up to tens of thousands (wide conv maps) and n a batch of 64–256. The cost is n²·p/2
 * multiply-adds, so the kernel below is shaped for V8's optimizing compiler rather than for brevity:
 *
 * - Columns are processed in blocks copied into one float64 scratch buffer. The copy converts float32
 *   once per element instead of once per use, keeps the inner loops monomorphic (always Float64Array
 *   whatever the caller passes), and keeps the rows being multiplied hot in cache.
 * - Only the lower triangle is computed (K is symmetric), then mirrored.
 * - Each inner loop produces a 4×2 tile of K: 8 accumulators plus 6 loaded values fit in the 16 scalar
 *   floating-point registers of x86-64, so nothing spills, and each loaded value is used 2–4 times.
 *   Wider tiles (4×4) measured slower because they spill; 2×2 tiles re-load too much.
 *
 * Accumulation is in float64 throughout; the summation order differs from a plain loop, so results
 * agree with one to rounding (relative ~1e-15 for float64 sums of this length), not bit for bit.
 */
import { InvalidArgumentError } from '../errors.js';

/**
 * Columns per block. 512 float64 values per row keeps the four rows of a tile (16 KiB) in L1 and the
 * whole block (n × 4 KiB, 1 MiB at n = 256) in L2; measured flat between 256 and 1024.
 */
const COLUMN_BLOCK = 512;

/** Tile height and width; the driver loops below depend on these exact values. */
const TILE_ROWS = 4;

export function gramMatrix(features: Float32Array | Float64Array, n: number, p: number): Float64Array {
  if (!Number.isInteger(n) || n < 1) {
    throw new InvalidArgumentError('n', `must be a positive integer, got ${n}`);
  }
  if (!Number.isInteger(p) || p < 0) {
    throw new InvalidArgumentError('p', `must be a non-negative integer, got ${p}`);
  }
  if (features.length !== n * p) {
    throw new InvalidArgumentError(
      'features',
      `expected n·p = ${n}·${p} = ${n * p} values, got ${features.length}`,
      { expected: n * p, actual: features.length },
    );
  }

  const gram = new Float64Array(n * n);
  if (p === 0) return gram;

  const blockWidth = Math.min(COLUMN_BLOCK, p);
  const block = new Float64Array(n * blockWidth);
  // Rows covered by full 4-row tiles; the few rows past them go through the one-row path.
  const tiledRows = n - (n % TILE_ROWS);

  for (let k0 = 0; k0 < p; k0 += blockWidth) {
    const width = Math.min(blockWidth, p - k0);
    for (let i = 0; i < n; i++) {
      const src = i * p + k0;
      const dst = i * width;
      for (let k = 0; k < width; k++) block[dst + k] = features[src + k]!;
    }

    for (let i = 0; i < tiledRows; i += TILE_ROWS) {
      // Columns 0..i+3 inclusive: the tiles left of the diagonal plus the two that straddle it.
      // The straddling tiles also compute a few entries above the diagonal, which the mirror step
      // overwrites with identical values.
      const rowOffset = i * width;
      for (let j = 0; j < i + TILE_ROWS; j += 2) {
        tile4x2(block, rowOffset, j * width, width, gram, i * n + j, n);
      }
    }
    for (let i = tiledRows; i < n; i++) {
      const rowOffset = i * width;
      for (let j = 0; j <= i; j++) {
        gram[i * n + j]! += dot(block, rowOffset, j * width, width);
      }
    }
  }

  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) gram[j * n + i] = gram[i * n + j]!;
  }
  return gram;
}

/**
 * Adds to gram[g..] the 4×2 block of products between rows starting at offset a (four consecutive rows
 * of `width` values) and rows starting at offset b (two consecutive rows).
 */
function tile4x2(
  block: Float64Array,
  a: number,
  b: number,
  width: number,
  gram: Float64Array,
  g: number,
  n: number,
): void {
  const a1 = a + width;
  const a2 = a1 + width;
  const a3 = a2 + width;
  const b1 = b + width;
  let s00 = 0;
  let s01 = 0;
  let s10 = 0;
  let s11 = 0;
  let s20 = 0;
  let s21 = 0;
  let s30 = 0;
  let s31 = 0;
  for (let k = 0; k < width; k++) {
    const x0 = block[a + k]!;
    const x1 = block[a1 + k]!;
    const x2 = block[a2 + k]!;
    const x3 = block[a3 + k]!;
    const y0 = block[b + k]!;
    const y1 = block[b1 + k]!;
    s00 += x0 * y0;
    s01 += x0 * y1;
    s10 += x1 * y0;
    s11 += x1 * y1;
    s20 += x2 * y0;
    s21 += x2 * y1;
    s30 += x3 * y0;
    s31 += x3 * y1;
  }
  gram[g]! += s00;
  gram[g + 1]! += s01;
  g += n;
  gram[g]! += s10;
  gram[g + 1]! += s11;
  g += n;
  gram[g]! += s20;
  gram[g + 1]! += s21;
  g += n;
  gram[g]! += s30;
  gram[g + 1]! += s31;
}

/** Dot product of two runs of `width` values; four partial sums break the add dependency chain. */
function dot(block: Float64Array, a: number, b: number, width: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let k = 0;
  for (; k + 4 <= width; k += 4) {
    s0 += block[a + k]! * block[b + k]!;
    s1 += block[a + k + 1]! * block[b + k + 1]!;
    s2 += block[a + k + 2]! * block[b + k + 2]!;
    s3 += block[a + k + 3]! * block[b + k + 3]!;
  }
  for (; k < width; k++) s0 += block[a + k]! * block[b + k]!;
  return s0 + s1 + s2 + s3;
}
