/**
 * Least-squares refit of a merged convolution. A block whose inner activations are removed is no
 * longer the original function, but it is still one linear conv, so its weights can be fitted in
 * closed form to what the original block produced (its pre-activation output) on calibration data.
 *
 * Per group of the merged conv, with x the im2col patch of the block input (D = cin/group·kh·kw values)
 * and y an output channel, over all rows (samples × output positions):
 *
 *   minimise Σ (wᵀx + b − y)² + λ‖w − w₀‖²,
 *
 * w₀ being the exact merge of the kept convs. Shrinking toward w₀ rather than toward zero keeps the
 * fit a correction of the merge: with few rows per unknown (a 64-channel 7×7 conv has 3,136 unknowns
 * per output channel) the plain least-squares solution would follow the calibration set's noise. The
 * bias is not shrunk. Centring removes it from the system:
 *
 *   (G − s sᵀ/n + λI) w = (Xᵀy − s·Σy/n) + λ w₀,   b = (Σy − sᵀw)/n,
 *
 * with G = XᵀX and s = Σx. λ = ridge · mean diagonal of the centred G, so `ridge` is scale-free.
 * Everything here is float64; the per-batch sums come from float32 GEMMs (onnxruntime) and are
 * accumulated here. Solved by Cholesky up to CHOLESKY_MAX unknowns, by conjugate gradients started at
 * w₀ above that (the factorization's D³ time and second D² copy are what grow too large), for as many
 * iterations as a work bound allows: every iteration from w₀ lowers the objective, so a bounded run
 * still returns an improvement.
 */
import { InvalidArgumentError } from '../errors.js';
import type { ConvSpec } from './conv.js';

export const CHOLESKY_MAX = 2500;

/** Sums over the calibration rows for one merged conv, kept in float64. */
export class NormalEquations {
  readonly groups: number;
  /** unknowns per output channel (cin/group·kh·kw) */
  readonly d: number;
  readonly coutG: number;
  /** G per group: groups × d × d */
  readonly gram: Float64Array;
  /** Xᵀy per group: groups × d × coutG */
  readonly xy: Float64Array;
  /** Σx per group: groups × d */
  readonly sx: Float64Array;
  /** Σy and Σy² per output channel */
  readonly sy: Float64Array;
  readonly yy: Float64Array;
  rows = 0;

  constructor(groups: number, d: number, coutG: number) {
    for (const [name, v] of [
      ['groups', groups],
      ['d', d],
      ['coutG', coutG],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(name, `must be a positive integer, got ${v}`);
    }
    this.groups = groups;
    this.d = d;
    this.coutG = coutG;
    this.gram = new Float64Array(groups * d * d);
    this.xy = new Float64Array(groups * d * coutG);
    this.sx = new Float64Array(groups * d);
    this.sy = new Float64Array(groups * coutG);
    this.yy = new Float64Array(groups * coutG);
  }

  /** Adds one batch's sums (float32 from onnxruntime, or anything array-like). */
  add(part: { gram: ArrayLike<number>; xy: ArrayLike<number>; sx: ArrayLike<number>; sy: ArrayLike<number>; yy: ArrayLike<number>; rows: number }): void {
    const check = (name: string, a: ArrayLike<number>, n: number): void => {
      if (a.length !== n) throw new InvalidArgumentError(name, `has ${a.length} values, expected ${n}`);
    };
    check('gram', part.gram, this.gram.length);
    check('xy', part.xy, this.xy.length);
    check('sx', part.sx, this.sx.length);
    check('sy', part.sy, this.sy.length);
    check('yy', part.yy, this.yy.length);
    for (let k = 0; k < this.gram.length; k++) this.gram[k]! += part.gram[k]!;
    for (let k = 0; k < this.xy.length; k++) this.xy[k]! += part.xy[k]!;
    for (let k = 0; k < this.sx.length; k++) this.sx[k]! += part.sx[k]!;
    for (let k = 0; k < this.sy.length; k++) this.sy[k]! += part.sy[k]!;
    for (let k = 0; k < this.yy.length; k++) this.yy[k]! += part.yy[k]!;
    this.rows += part.rows;
  }

  /** Bytes held, for budgeting how many refits run at once. */
  static bytes(groups: number, d: number, coutG: number): number {
    return 8 * groups * (d * d + d * coutG + d + 2 * coutG);
  }
}

export interface RefitOptions {
  /** λ relative to the mean diagonal of the centred Gram matrix; default 1e-3 */
  ridge?: number;
  /** CG iterations when the system is too large to factor; default 60 */
  maxIterations?: number;
  /** multiply-adds CG may spend (each iteration costs d²·cout); default 4e9 */
  cgWork?: number;
}

export interface RefitResult {
  spec: ConvSpec;
  solver: 'cholesky' | 'cg';
  /** relative error √(SSE/Σy²) of the block output over the calibration rows, before and after */
  fidelityBefore: number;
  fidelityAfter: number;
  iterations?: number;
}

/** In-place Cholesky of a symmetric positive definite n×n matrix (lower triangle, row-major); false if not SPD. */
export function cholesky(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let s = a[rj + j]!;
    for (let k = 0; k < j; k++) s -= a[rj + k]! * a[rj + k]!;
    if (!(s > 0)) return false;
    const ljj = Math.sqrt(s);
    a[rj + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let t = a[ri + j]!;
      for (let k = 0; k < j; k++) t -= a[ri + k]! * a[rj + k]!;
      a[ri + j] = t / ljj;
    }
  }
  return true;
}

/** Solves L Lᵀ x = b in place (b has n rows and m columns, row-major). */
export function choleskySolve(l: Float64Array, n: number, b: Float64Array, m: number): void {
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < i; k++) {
      const f = l[i * n + k]!;
      if (f === 0) continue;
      for (let c = 0; c < m; c++) b[i * m + c]! -= f * b[k * m + c]!;
    }
    const d = l[i * n + i]!;
    for (let c = 0; c < m; c++) b[i * m + c]! /= d;
  }
  for (let i = n - 1; i >= 0; i--) {
    for (let k = i + 1; k < n; k++) {
      const f = l[k * n + i]!;
      if (f === 0) continue;
      for (let c = 0; c < m; c++) b[i * m + c]! -= f * b[k * m + c]!;
    }
    const d = l[i * n + i]!;
    for (let c = 0; c < m; c++) b[i * m + c]! /= d;
  }
}

/** y = A x for a symmetric n×n A and x with m columns. */
function multiply(a: Float64Array, n: number, x: Float64Array, m: number, y: Float64Array): void {
  y.fill(0);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    const yi = i * m;
    for (let k = 0; k < n; k++) {
      const f = a[ri + k]!;
      if (f === 0) continue;
      const xk = k * m;
      for (let c = 0; c < m; c++) y[yi + c]! += f * x[xk + c]!;
    }
  }
}

/**
 * Jacobi-preconditioned conjugate gradients on A X = B, every column independently, started at X
 * (updated in place). Stops when every column's residual is below tol·‖b‖ or after maxIterations.
 */
export function conjugateGradient(a: Float64Array, n: number, b: Float64Array, m: number, x: Float64Array, maxIterations: number, tol = 1e-8): number {
  const r = new Float64Array(n * m);
  const z = new Float64Array(n * m);
  const p = new Float64Array(n * m);
  const q = new Float64Array(n * m);
  const inv = new Float64Array(n);
  for (let i = 0; i < n; i++) inv[i] = a[i * n + i]! > 0 ? 1 / a[i * n + i]! : 1;
  multiply(a, n, x, m, q);
  for (let k = 0; k < n * m; k++) r[k] = b[k]! - q[k]!;
  const rz = new Float64Array(m);
  const bnorm = new Float64Array(m);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < m; c++) {
      const k = i * m + c;
      z[k] = inv[i]! * r[k]!;
      p[k] = z[k]!;
      rz[c]! += r[k]! * z[k]!;
      bnorm[c]! += b[k]! * b[k]!;
    }
  }
  let it = 0;
  for (; it < maxIterations; it++) {
    let done = true;
    for (let c = 0; c < m; c++) {
      let rr = 0;
      for (let i = 0; i < n; i++) rr += r[i * m + c]! ** 2;
      if (rr > tol * tol * Math.max(bnorm[c]!, 1e-300)) done = false;
    }
    if (done) break;
    multiply(a, n, p, m, q);
    const alpha = new Float64Array(m);
    for (let c = 0; c < m; c++) {
      let pq = 0;
      for (let i = 0; i < n; i++) pq += p[i * m + c]! * q[i * m + c]!;
      alpha[c] = pq > 0 ? rz[c]! / pq : 0;
    }
    const rzNew = new Float64Array(m);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < m; c++) {
        const k = i * m + c;
        x[k]! += alpha[c]! * p[k]!;
        r[k]! -= alpha[c]! * q[k]!;
        z[k] = inv[i]! * r[k]!;
        rzNew[c]! += r[k]! * z[k]!;
      }
    }
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < m; c++) {
        const k = i * m + c;
        p[k] = z[k]! + (rz[c]! > 0 ? rzNew[c]! / rz[c]! : 0) * p[k]!;
      }
    }
    rz.set(rzNew);
  }
  return it;
}

/** Σ over rows of (wᵀx + b − y)² for every output channel, from the sums alone. */
function sse(eq: NormalEquations, w: Float64Array, b: Float64Array): number {
  const { groups, d, coutG } = eq;
  let total = 0;
  for (let g = 0; g < groups; g++) {
    const G = g * d * d;
    for (let oc = 0; oc < coutG; oc++) {
      const o = g * coutG + oc;
      const wo = o * d;
      let wGw = 0;
      for (let i = 0; i < d; i++) {
        let row = 0;
        for (let k = 0; k < d; k++) row += eq.gram[G + i * d + k]! * w[wo + k]!;
        wGw += w[wo + i]! * row;
      }
      let wxy = 0;
      let wsx = 0;
      for (let i = 0; i < d; i++) {
        wxy += w[wo + i]! * eq.xy[(g * d + i) * coutG + oc]!;
        wsx += w[wo + i]! * eq.sx[g * d + i]!;
      }
      const bo = b[o]!;
      total += eq.yy[o]! - 2 * (wxy + bo * eq.sy[o]!) + wGw + 2 * bo * wsx + eq.rows * bo * bo;
    }
  }
  return Math.max(0, total);
}

/**
 * The refit of `merged` (its geometry and the exact weights w₀) from accumulated sums. The weight
 * layout per output channel is ONNX's [cin/group, kh, kw], which is the order of the im2col rows.
 */
export function solveRefit(eq: NormalEquations, merged: ConvSpec, options: RefitOptions = {}): RefitResult {
  const ridge = options.ridge ?? 1e-3;
  if (!(ridge >= 0) || !Number.isFinite(ridge)) throw new InvalidArgumentError('ridge', `must be a finite number ≥ 0, got ${ridge}`);
  const { groups, d, coutG } = eq;
  if (merged.group !== groups || merged.cout !== groups * coutG || (merged.cin / merged.group) * merged.kh * merged.kw !== d) {
    throw new InvalidArgumentError('merged', 'does not match the geometry the sums were accumulated for');
  }
  if (eq.rows === 0) throw new InvalidArgumentError('eq', 'no calibration rows were accumulated');
  const n = eq.rows;
  const w0 = Float64Array.from(merged.weight);
  const b0 = Float64Array.from(merged.bias);
  let yyTotal = 0;
  for (let o = 0; o < eq.yy.length; o++) yyTotal += eq.yy[o]!;
  const scale = yyTotal > 0 ? yyTotal : 1;
  const fidelityBefore = Math.sqrt(sse(eq, w0, b0) / scale);

  const w = new Float64Array(w0.length);
  const b = new Float64Array(merged.cout);
  let solver: 'cholesky' | 'cg' = d <= CHOLESKY_MAX ? 'cholesky' : 'cg';
  let iterations: number | undefined;
  const a = new Float64Array(d * d);
  const rhs = new Float64Array(d * coutG);
  for (let g = 0; g < groups; g++) {
    const G = g * d * d;
    let trace = 0;
    for (let i = 0; i < d; i++) {
      const si = eq.sx[g * d + i]!;
      for (let k = 0; k < d; k++) a[i * d + k] = eq.gram[G + i * d + k]! - (si * eq.sx[g * d + k]!) / n;
      trace += a[i * d + i]!;
    }
    const lambda = Math.max(ridge * (trace / d), 1e-12);
    for (let i = 0; i < d; i++) a[i * d + i]! += lambda;
    for (let i = 0; i < d; i++) {
      const si = eq.sx[g * d + i]!;
      for (let oc = 0; oc < coutG; oc++) {
        const o = g * coutG + oc;
        rhs[i * coutG + oc] = eq.xy[(g * d + i) * coutG + oc]! - (si * eq.sy[o]!) / n + lambda * w0[o * d + i]!;
      }
    }
    const x = new Float64Array(d * coutG);
    for (let i = 0; i < d; i++) for (let oc = 0; oc < coutG; oc++) x[i * coutG + oc] = w0[(g * coutG + oc) * d + i]!;
    let solved = false;
    if (solver === 'cholesky') {
      const l = Float64Array.from(a);
      if (cholesky(l, d)) {
        x.set(rhs);
        choleskySolve(l, d, x, coutG);
        solved = true;
      } else {
        solver = 'cg';
      }
    }
    if (!solved) {
      const affordable = Math.max(1, Math.floor((options.cgWork ?? 4e9) / (d * d * coutG * groups)));
      iterations = Math.max(iterations ?? 0, conjugateGradient(a, d, rhs, coutG, x, Math.min(options.maxIterations ?? 60, affordable)));
    }
    for (let oc = 0; oc < coutG; oc++) {
      const o = g * coutG + oc;
      let sw = 0;
      for (let i = 0; i < d; i++) {
        w[o * d + i] = x[i * coutG + oc]!;
        sw += eq.sx[g * d + i]! * x[i * coutG + oc]!;
      }
      b[o] = (eq.sy[o]! - sw) / n;
    }
  }
  const fidelityAfter = Math.sqrt(sse(eq, w, b) / scale);
  // A refit that fits the calibration rows worse than the exact merge (a failed solve) is not used.
  const useRefit = Number.isFinite(fidelityAfter) && fidelityAfter <= fidelityBefore;
  const spec: ConvSpec = {
    ...merged,
    weight: useRefit ? Float32Array.from(w) : Float32Array.from(merged.weight),
    bias: useRefit ? Float32Array.from(b) : Float32Array.from(merged.bias),
  };
  return {
    spec,
    solver,
    fidelityBefore,
    fidelityAfter: useRefit ? fidelityAfter : fidelityBefore,
    ...(iterations !== undefined ? { iterations } : {}),
  };
}
