/**
 * Quality of a model on a data set: top-1 accuracy against labels and, given the original model as
 * reference, how closely a compressed model reproduces it (top-1 agreement, KL of the softmaxes,
 * relative output error). All sums are kept in float64 whatever the model's output type.
 */
import * as ort from 'onnxruntime-node';
import { InvalidArgumentError, UnsupportedModelError } from '../core/errors.js';
import type { NpyTypedArray } from '../core/data/npy.js';
import type { Batch, BatchInput, Dataset, DatasetBinding } from './dataset.js';
import type { Feeds, Session } from './session.js';

export interface EvaluateOptions {
  /** Ignored when a model's leading input dimension is a fixed number: that size is used, the last batch zero-padded. */
  batchSize?: number;
  /** The model to compare against (usually the uncompressed original). */
  reference?: Session;
  /** Evaluate only the first `limit` samples. */
  limit?: number;
  /** Output to score; the model's first output when absent. The reference always uses its first output. */
  outputName?: string;
  onProgress?(done: number, total: number): void;
}

export interface EvaluationResult {
  samples: number;
  /** Top-1 accuracy against `labels`, when the data set has them. */
  accuracy?: number;
  /** Fraction of samples where model and reference pick the same top-1 class. */
  agreement?: number;
  /** Mean over samples of KL(softmax(reference) ‖ softmax(model)), in nats. */
  meanKl?: number;
  /** Mean over samples of ‖y − y_ref‖ / ‖y_ref‖ on the raw outputs. */
  relativeError?: number;
  outputName: string;
}

/** Value of IEEE binary16 bits. */
function fromFloat16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Output values as float64, whatever float type the model produces. */
function outputValues(tensor: ort.Tensor, what: string): Float64Array {
  switch (tensor.type) {
    case 'float32':
    case 'float64':
      return Float64Array.from(tensor.data as Float32Array | Float64Array);
    case 'float16':
      return Float64Array.from(tensor.data as Uint16Array, fromFloat16Bits);
    default:
      throw new UnsupportedModelError(`${what} is ${tensor.type}; scoring needs floating-point scores per class`);
  }
}

/** Index of the largest value (first on ties, as numpy.argmax); -1 when every value is NaN, so it never matches. */
function argmax(values: Float64Array, start: number, length: number): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < length; i++) {
    const v = values[start + i] as number;
    if (v > bestValue || (best < 0 && v === -Infinity)) {
      best = i;
      bestValue = v;
    }
  }
  return best;
}

/** log-softmax over one sample, shifted by the maximum so exp() cannot overflow. */
function logSoftmax(values: Float64Array, start: number, length: number, out: Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < length; i++) max = Math.max(max, values[start + i] as number);
  let sum = 0;
  for (let i = 0; i < length; i++) sum += Math.exp((values[start + i] as number) - max);
  const logZ = max + Math.log(sum);
  for (let i = 0; i < length; i++) out[i] = (values[start + i] as number) - logZ;
}

function zeroPadded(input: BatchInput, rows: number): BatchInput {
  const perRow = input.data.length / (input.dims[0] as number);
  const Ctor = input.data.constructor as new (n: number) => NpyTypedArray;
  const data = new Ctor(rows * perRow);
  (data as unknown as { set(src: ArrayLike<unknown>): void }).set(input.data);
  return { data, dims: [rows, ...input.dims.slice(1)], dtype: input.dtype };
}

/** Feeds for one model from a batch keyed by array name; padded to the model's fixed batch size if it has one. */
function feedsFor(batch: Batch, binding: DatasetBinding): Feeds {
  const feeds: Feeds = {};
  for (const [inputName, arrayName] of Object.entries(binding.inputs)) {
    let input = batch.inputs[arrayName] as BatchInput;
    if (binding.fixedBatch !== undefined && batch.count < binding.fixedBatch) input = zeroPadded(input, binding.fixedBatch);
    feeds[inputName] = new ort.Tensor(input.dtype, input.data as ort.Tensor.DataType, input.dims);
  }
  return feeds;
}

async function scores(session: Session, binding: DatasetBinding, batch: Batch, outputName: string, what: string): Promise<Float64Array> {
  const result = await session.run(feedsFor(batch, binding), [outputName]);
  const tensor = result[outputName];
  if (!tensor) throw new UnsupportedModelError(`${what} returned no '${outputName}'`);
  const rows = tensor.dims[0];
  const expectedRows = binding.fixedBatch ?? batch.count;
  if (rows !== expectedRows || tensor.dims.length < 2) {
    throw new UnsupportedModelError(
      `${what} '${outputName}' has shape [${tensor.dims.join(', ')}]; scoring needs one row of class scores per sample ` +
        `([${expectedRows}, classes])`,
    );
  }
  const values = outputValues(tensor, `${what} '${outputName}'`);
  // Padding rows were only there to satisfy a fixed batch size.
  return values.subarray(0, (values.length / rows) * batch.count);
}

export async function evaluate(session: Session, dataset: Dataset, options: EvaluateOptions = {}): Promise<EvaluationResult> {
  const { reference, limit, onProgress } = options;
  const outputName = options.outputName ?? session.outputs[0]?.name;
  if (outputName === undefined) throw new UnsupportedModelError('the model has no outputs');
  if (!session.outputs.some((o) => o.name === outputName)) {
    throw new InvalidArgumentError('outputName', `the model has no output '${outputName}'; its outputs are ${session.outputs.map((o) => o.name).join(', ')}`);
  }
  const referenceOutput = reference?.outputs[0]?.name;
  if (reference && referenceOutput === undefined) throw new UnsupportedModelError('the reference model has no outputs');

  const binding = dataset.validateAgainst(session.inputs);
  const referenceBinding = reference ? dataset.validateAgainst(reference.inputs) : undefined;
  const fixed = [binding.fixedBatch, referenceBinding?.fixedBatch].filter((b): b is number => b !== undefined);
  if (fixed.length === 2 && fixed[0] !== fixed[1]) {
    throw new InvalidArgumentError('reference', `the model fixes batch size ${fixed[0]} but the reference fixes ${fixed[1]}`);
  }
  const batchSize = fixed[0] ?? options.batchSize ?? 64;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
    throw new InvalidArgumentError('batchSize', `must be a positive integer, got ${batchSize}`);
  }

  // Read each array that either model needs once, keyed by its own name; each model maps it to its inputs.
  const arrays = new Set([...Object.values(binding.inputs), ...Object.values(referenceBinding?.inputs ?? {})]);
  const union: DatasetBinding = { ...binding, inputs: Object.fromEntries([...arrays].map((a) => [a, a])) };
  const first = dataset.arrays.find((a) => arrays.has(a.name));
  const available = first?.shape[0] ?? 0;
  const total = Math.min(available, limit ?? available);

  let samples = 0;
  let correct = 0;
  let agree = 0;
  let klSum = 0;
  let relSum = 0;
  let classes = -1;
  let modelLog = new Float64Array(0);
  let refLog = new Float64Array(0);
  for await (const batch of dataset.batches(batchSize, { ...(limit === undefined ? {} : { limit }), binding: union })) {
    const y = await scores(session, binding, batch, outputName, 'the model');
    const width = y.length / batch.count;
    if (classes < 0) {
      classes = width;
      modelLog = new Float64Array(width);
      refLog = new Float64Array(width);
    }
    let yRef: Float64Array | undefined;
    if (reference && referenceBinding && referenceOutput) {
      yRef = await scores(reference, referenceBinding, batch, referenceOutput, 'the reference model');
      if (yRef.length !== y.length) {
        throw new InvalidArgumentError(
          'reference',
          `the reference gives ${yRef.length / batch.count} values per sample, the model ${width}; they cannot be compared`,
        );
      }
    }
    for (let s = 0; s < batch.count; s++) {
      const at = s * width;
      const predicted = argmax(y, at, width);
      if (batch.labels && predicted >= 0 && predicted === Number(batch.labels[s])) correct++;
      if (yRef) {
        const expected = argmax(yRef, at, width);
        if (predicted >= 0 && predicted === expected) agree++;
        logSoftmax(y, at, width, modelLog);
        logSoftmax(yRef, at, width, refLog);
        let kl = 0;
        let diff = 0;
        let norm = 0;
        for (let i = 0; i < width; i++) {
          const lr = refLog[i] as number;
          const p = Math.exp(lr);
          // 0·log 0 = 0: a class the reference rules out contributes nothing.
          if (p > 0) kl += p * (lr - (modelLog[i] as number));
          const r = yRef[at + i] as number;
          const d = (y[at + i] as number) - r;
          diff += d * d;
          norm += r * r;
        }
        klSum += kl;
        relSum += norm > 0 ? Math.sqrt(diff / norm) : diff > 0 ? Infinity : 0;
      }
    }
    samples += batch.count;
    onProgress?.(samples, total);
  }

  const result: EvaluationResult = { samples, outputName };
  if (dataset.hasLabels) result.accuracy = samples > 0 ? correct / samples : NaN;
  if (reference) {
    result.agreement = samples > 0 ? agree / samples : NaN;
    result.meanKl = samples > 0 ? klSum / samples : NaN;
    result.relativeError = samples > 0 ? relSum / samples : NaN;
  }
  return result;
}
