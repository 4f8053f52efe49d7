import { InvalidArgumentError, UnreachableCaseError } from '../../core/errors.js';
import { addOutputs, cloneModel } from '../../core/onnx/edit.js';
import { encodeModel } from '../../core/onnx/codec.js';
import type { ModelProto } from '../../core/onnx/proto.js';
import { CosineAccumulator, crossEntropy, gradNormImportance, klDivergence, type ImportanceMeasure } from '../../core/importance/measures.js';
import { removeUnits } from '../../core/compress/remove-units.js';
import type { Unit } from '../../core/structure/unit.js';
import type { Dataset, LabelArray } from '../dataset.js';
import { createSession, type SessionOptions } from '../session.js';
import { batchFeeds } from './feeds.js';

export interface ImportanceOptions {
  measure?: ImportanceMeasure;
  batchSize?: number;
  samples?: number;
  session?: SessionOptions;
  onProgress?(done: number, total: number, message?: string): void;
}

export interface ImportanceResult {
  measure: ImportanceMeasure;
  /** unit id → importance; higher = removing it costs more */
  importance: Record<string, number>;
  /** for ablation: what the score is (task loss increase with labels, KL from the original without) */
  basis: string;
  samples: number;
}

/**
 * Forward-only importance of removable units over calibration data.
 * - ablation: each unit removed alone; with labels, the increase of the mean cross-entropy; without,
 *   the mean KL divergence of the ablated model's softmax from the original's. Exact for one removal.
 * - block-influence: 1 − mean cos(input, output) over samples and positions (ShortGPT).
 * - angular: arccos(mean cos)/π (Gromov et al., with n = 1).
 */
export async function unitImportance(
  model: ModelProto,
  units: Unit[],
  dataset: Dataset,
  options: ImportanceOptions = {},
): Promise<ImportanceResult> {
  const measure = options.measure ?? 'ablation';
  switch (measure) {
    case 'ablation':
      return ablation(model, units, dataset, options);
    case 'block-influence':
    case 'angular':
      return cosine(model, units, dataset, measure, options);
    case 'gradnorm':
      return gradNormImportance();
    default:
      throw new UnreachableCaseError(measure);
  }
}

interface Logits {
  values: Float32Array[];
  labels: LabelArray[];
  classes: number;
  samples: number;
}

async function collectLogits(bytes: Uint8Array, dataset: Dataset, options: ImportanceOptions): Promise<Logits> {
  const session = await createSession(bytes, { optimization: 'all', ...options.session });
  try {
    const binding = dataset.validateAgainst(session.inputs);
    const out = session.outputs[0]!.name;
    const total = Math.min(dataset.samples, options.samples ?? dataset.samples);
    const values: Float32Array[] = [];
    const labels: LabelArray[] = [];
    let classes = 0;
    let samples = 0;
    for await (const batch of dataset.batches(binding.fixedBatch ?? options.batchSize ?? 64, { limit: total, binding })) {
      // a fixed-batch model cannot run a short final batch
      if (binding.fixedBatch !== undefined && batch.count < binding.fixedBatch) break;
      const r = await session.run(batchFeeds(batch, binding), [out]);
      const t = r[out]!;
      classes = t.data.length / batch.count;
      values.push(Float32Array.from(t.data as Float32Array));
      if (batch.labels) labels.push(batch.labels);
      samples += batch.count;
    }
    return { values, labels, classes, samples };
  } finally {
    await session.release();
  }
}

function meanLoss(l: Logits, reference: Logits | undefined): number {
  let total = 0;
  for (let b = 0; b < l.values.length; b++) {
    const v = l.values[b]!;
    const n = v.length / l.classes;
    const labels = l.labels[b];
    const loss = reference ? klDivergence(reference.values[b]!, v, n, l.classes) : crossEntropy(v, toLabelArray(labels!), n, l.classes);
    total += loss * n;
  }
  return total / l.samples;
}

function toLabelArray(labels: LabelArray): Int32Array | BigInt64Array {
  if (labels instanceof BigInt64Array || labels instanceof Int32Array) return labels;
  return Int32Array.from(labels as ArrayLike<number | bigint>, (x) => Number(x));
}

async function ablation(model: ModelProto, units: Unit[], dataset: Dataset, options: ImportanceOptions): Promise<ImportanceResult> {
  const removable = units.filter((u) => u.removable);
  const original = await collectLogits(encodeModel(model), dataset, options);
  const withLabels = original.labels.length === original.values.length && original.labels.length > 0;
  const baseline = withLabels ? meanLoss(original, undefined) : 0;
  const importance: Record<string, number> = {};
  let done = 0;
  for (const u of removable) {
    options.onProgress?.(done, removable.length, `ablating ${u.id}`);
    const ablated = await collectLogits(encodeModel(removeUnits(model, [u]).model), dataset, options);
    importance[u.id] = withLabels ? meanLoss(ablated, undefined) - baseline : meanLoss(ablated, original);
    done++;
  }
  options.onProgress?.(done, removable.length);
  return {
    measure: 'ablation',
    importance,
    basis: withLabels ? 'increase of mean cross-entropy against labels when the unit alone is removed' : "mean KL divergence from the original model's softmax when the unit alone is removed",
    samples: original.samples,
  };
}

function featureAxis(rank: number): number {
  // NCHW maps: channels; [N, T, D] token sequences and [N, D] vectors: the last axis
  return rank === 4 || rank === 5 ? 1 : rank - 1;
}

async function cosine(
  model: ModelProto,
  units: Unit[],
  dataset: Dataset,
  measure: 'block-influence' | 'angular',
  options: ImportanceOptions,
): Promise<ImportanceResult> {
  const targets = units.filter((u) => u.removable);
  if (targets.length === 0) throw new InvalidArgumentError('units', 'no removable units to score');
  const tapped = cloneModel(model);
  const names = [...new Set(targets.flatMap((u) => [u.input, u.output]))];
  addOutputs(tapped, names);
  const session = await createSession(encodeModel(tapped), { optimization: 'all', ...options.session });
  try {
    const binding = dataset.validateAgainst(session.inputs);
    const total = Math.min(dataset.samples, options.samples ?? dataset.samples);
    const acc = new Map(targets.map((u) => [u.id, new CosineAccumulator()]));
    let samples = 0;
    for await (const batch of dataset.batches(binding.fixedBatch ?? options.batchSize ?? 64, { limit: total, binding })) {
      if (binding.fixedBatch !== undefined && batch.count < binding.fixedBatch) break;
      const r = await session.run(batchFeeds(batch, binding), names);
      for (const u of targets) {
        const x = r[u.input]!;
        const y = r[u.output]!;
        acc.get(u.id)!.addBatch(x.data as Float32Array, y.data as Float32Array, [...y.dims], featureAxis(y.dims.length));
      }
      samples += batch.count;
      options.onProgress?.(samples, total);
    }
    const importance: Record<string, number> = {};
    for (const u of targets) {
      const a = acc.get(u.id)!;
      importance[u.id] = measure === 'block-influence' ? a.blockInfluence() : a.angularDistance();
    }
    return {
      measure,
      importance,
      basis: measure === 'block-influence' ? '1 − mean cosine of unit input and output' : 'arccos(mean cosine of unit input and output)/π',
      samples,
    };
  } finally {
    await session.release();
  }
}
