/**
 * Forward-only importance of units, from streamed batches of activations and logits.
 *
 * - Block influence (ShortGPT) and angular distance (Gromov et al.) compare what goes into a unit with
 *   what comes out: a unit that barely turns its input is cheap to remove.
 * - Ablation compares the task loss with and without the unit; the helpers below compute losses and
 *   agreement from logits so the caller only runs the two models.
 * - GradNorm, SGLP's own measure, needs a backward pass, which strata does not run.
 *
 * Every measure is "higher = more important".
 */
import { InvalidArgumentError } from '../errors.js';

export type ImportanceMeasure = 'ablation' | 'block-influence' | 'angular' | 'gradnorm';

export const IMPORTANCE_MEASURES: readonly ImportanceMeasure[] = ['ablation', 'block-influence', 'angular', 'gradnorm'];

type Numbers = Float32Array | Float64Array | readonly number[];

/**
 * Mean cosine similarity between a unit's input and output, over every example and every position.
 *
 * The cosine is taken along the feature axis: for NCHW convolution maps that is axis 1 (channels, one
 * cosine per example and spatial position); for transformer activations [N, T, D] it is axis 2 (one per
 * token). One accumulator serves one unit; batches may differ in size.
 *
 * Zero vectors have no direction. When input and output are both zero at a position the unit changed
 * nothing there, so that position counts as cosine 1; when only one of them is zero it counts as 0.
 */
export class CosineAccumulator {
  private sum = 0;
  private count = 0;

  /** Number of (example, position) pairs seen so far. */
  get positions(): number {
    return this.count;
  }

  addBatch(
    input: Float32Array | Float64Array,
    output: Float32Array | Float64Array,
    dims: number[],
    featureAxis: number,
  ): void {
    if (dims.length === 0) throw new InvalidArgumentError('dims', 'needs at least one axis');
    let size = 1;
    for (const d of dims) {
      if (!Number.isInteger(d) || d < 0) {
        throw new InvalidArgumentError('dims', `must be non-negative integers, got [${dims.join(', ')}]`);
      }
      size *= d;
    }
    if (!Number.isInteger(featureAxis) || featureAxis < -dims.length || featureAxis >= dims.length) {
      throw new InvalidArgumentError(
        'featureAxis',
        `must be an axis of a rank-${dims.length} tensor (between ${-dims.length} and ${dims.length - 1}), got ${featureAxis}`,
      );
    }
    if (input.length !== size || output.length !== size) {
      throw new InvalidArgumentError(
        'input',
        `input and output must both hold ${size} values for shape [${dims.join(', ')}], ` +
          `got ${input.length} and ${output.length}`,
      );
    }
    const axis = featureAxis < 0 ? featureAxis + dims.length : featureAxis;
    let outer = 1;
    for (let a = 0; a < axis; a++) outer *= dims[a]!;
    const features = dims[axis]!;
    let inner = 1;
    for (let a = axis + 1; a < dims.length; a++) inner *= dims[a]!;
    if (features === 0 || outer * inner === 0) return;

    // Walk features in the outer loop and positions in the inner one so both tensors are read in memory
    // order; the three running sums per position live in small float64 scratch arrays.
    const dot = new Float64Array(inner);
    const inNorm = new Float64Array(inner);
    const outNorm = new Float64Array(inner);
    let sum = 0;
    for (let o = 0; o < outer; o++) {
      dot.fill(0);
      inNorm.fill(0);
      outNorm.fill(0);
      for (let c = 0; c < features; c++) {
        const base = (o * features + c) * inner;
        for (let s = 0; s < inner; s++) {
          const x = input[base + s]!;
          const y = output[base + s]!;
          dot[s]! += x * y;
          inNorm[s]! += x * x;
          outNorm[s]! += y * y;
        }
      }
      for (let s = 0; s < inner; s++) sum += cosine(dot[s]!, inNorm[s]!, outNorm[s]!);
    }
    if (!Number.isFinite(sum)) {
      throw new InvalidArgumentError('input', 'activations hold non-finite values');
    }
    this.sum += sum;
    this.count += outer * inner;
  }

  meanCosine(): number {
    if (this.count === 0) {
      throw new InvalidArgumentError('batches', 'no positions were added; the mean cosine needs at least one');
    }
    return this.sum / this.count;
  }

  /** ShortGPT's block influence, 1 − mean cos(h_in, h_out): 0 when the unit leaves its input's direction alone. */
  blockInfluence(): number {
    return 1 - this.meanCosine();
  }

  /**
   * arccos(mean cos)/π, in [0, 1]. Gromov et al. take the cosine between the inputs of layer ℓ and of
   * layer ℓ+n to score removing n layers at once; here it is per unit, n = 1, whose input and output are
   * exactly the inputs of ℓ and ℓ+1.
   */
  angularDistance(): number {
    return Math.acos(Math.max(-1, Math.min(1, this.meanCosine()))) / Math.PI;
  }
}

function cosine(dot: number, inNorm: number, outNorm: number): number {
  if (inNorm === 0 && outNorm === 0) return 1;
  if (inNorm === 0 || outNorm === 0) return 0;
  // Rounding can push |cos| a hair past 1 for (anti)parallel vectors.
  return Math.max(-1, Math.min(1, dot / Math.sqrt(inNorm * outNorm)));
}

/** Loss increase when the unit is removed: positive = the model needs the unit. */
export function ablationImportance(baselineLoss: number, ablatedLoss: number): number {
  if (!Number.isFinite(baselineLoss)) {
    throw new InvalidArgumentError('baselineLoss', `must be a finite number, got ${baselineLoss}`);
  }
  if (!Number.isFinite(ablatedLoss)) {
    throw new InvalidArgumentError('ablatedLoss', `must be a finite number, got ${ablatedLoss}`);
  }
  return ablatedLoss - baselineLoss;
}

/**
 * Mean over n rows of KL(softmax(p) ‖ softmax(q)), in nats: how far the ablated model's predictive
 * distribution q moves from the original p. Computed in float64 from log-softmax (log-sum-exp with the
 * row maximum subtracted), so large logits neither overflow nor lose the small probabilities.
 */
export function klDivergence(pLogits: Numbers, qLogits: Numbers, n: number, classes: number): number {
  checkLogits(pLogits, n, classes, 'pLogits');
  checkLogits(qLogits, n, classes, 'qLogits');
  let total = 0;
  for (let i = 0; i < n; i++) {
    const base = i * classes;
    const lseP = logSumExp(pLogits, base, classes);
    const lseQ = logSumExp(qLogits, base, classes);
    let kl = 0;
    for (let c = 0; c < classes; c++) {
      const logP = pLogits[base + c]! - lseP;
      const logQ = qLogits[base + c]! - lseQ;
      // exp(logP) underflowing to 0 is the p = 0 limit, whose term is 0.
      kl += Math.exp(logP) * (logP - logQ);
    }
    // KL ≥ 0; a tiny negative value is rounding.
    total += Math.max(0, kl);
  }
  return total / n;
}

/** Mean cross-entropy −log softmax(logits)[label] over n rows, in nats. */
export function crossEntropy(
  logits: Numbers,
  labels: Int32Array | BigInt64Array | readonly number[],
  n: number,
  classes: number,
): number {
  checkLogits(logits, n, classes, 'logits');
  if (labels.length !== n) {
    throw new InvalidArgumentError('labels', `expected ${n} labels, got ${labels.length}`);
  }
  let total = 0;
  for (let i = 0; i < n; i++) {
    const label = Number(labels[i]!);
    if (!Number.isInteger(label) || label < 0 || label >= classes) {
      throw new InvalidArgumentError('labels', `label ${String(labels[i])} at row ${i} is not a class in 0..${classes - 1}`);
    }
    const base = i * classes;
    total += logSumExp(logits, base, classes) - logits[base + label]!;
  }
  return total / n;
}

/** Index of the largest logit of each row (the first one on ties). */
export function top1(logits: Numbers, n: number, classes: number): Int32Array {
  checkLogits(logits, n, classes, 'logits');
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const base = i * classes;
    let best = 0;
    let value = logits[base]!;
    for (let c = 1; c < classes; c++) {
      const v = logits[base + c]!;
      if (v > value) {
        value = v;
        best = c;
      }
    }
    out[i] = best;
  }
  return out;
}

/**
 * The place for SGLP's GradNorm. It needs the gradient of the loss with respect to each unit, i.e. a
 * backward pass, and strata only runs models forward; callers get a clear error naming the measures
 * that work.
 */
export function gradNormImportance(): never {
  throw new InvalidArgumentError(
    'importance',
    'gradnorm needs gradients, which strata does not compute yet; use ablation, block-influence or angular',
  );
}

function logSumExp(logits: Numbers, base: number, classes: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let c = 0; c < classes; c++) max = Math.max(max, logits[base + c]!);
  let sum = 0;
  for (let c = 0; c < classes; c++) sum += Math.exp(logits[base + c]! - max);
  return max + Math.log(sum);
}

function checkLogits(logits: Numbers, n: number, classes: number, name: string): void {
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('n', `must be a positive integer, got ${n}`);
  if (!Number.isInteger(classes) || classes < 1) {
    throw new InvalidArgumentError('classes', `must be a positive integer, got ${classes}`);
  }
  if (logits.length !== n * classes) {
    throw new InvalidArgumentError(name, `expected n·classes = ${n * classes} values, got ${logits.length}`);
  }
  for (let i = 0; i < logits.length; i++) {
    if (!Number.isFinite(logits[i]!)) {
      throw new InvalidArgumentError(name, `value ${i} is not finite (${logits[i]})`);
    }
  }
}
