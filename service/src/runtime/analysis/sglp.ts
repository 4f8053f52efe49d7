import { InvalidArgumentError } from '../../core/errors.js';
import type { ImportanceMeasure } from '../../core/importance/measures.js';
import type { PlanDocument } from '../../core/plan/plan.js';
import { chooseK, costCurve, optimalSegmentation, type SegmentCost } from '../../core/segment/fisher.js';
import { planSglp, type SglpBudget } from '../../core/sglp/plan.js';
import type { HsicEstimator } from '../../core/similarity/cka.js';
import type { Unit } from '../../core/structure/unit.js';
import type { Dataset } from '../dataset.js';
import type { LoadedModel } from '../model-file.js';
import type { SessionOptions } from '../session.js';
import { unitImportance } from './importance.js';
import { datasetInputShapes, layerUnits, modelContext } from './model-context.js';
import { similarityAnalysis, type GramBackend, type SimilarityResult } from './similarity.js';
import { unitLatencies } from './unit-latency.js';

export type ProgressFn = (phase: string, fraction?: number, message?: string) => void;

export interface SimilarityStepOptions {
  batchSize?: number;
  samples?: number;
  estimator?: HsicEstimator;
  gram?: GramBackend;
  session?: SessionOptions;
  onProgress?: ProgressFn;
}

export interface SegmentsStepOptions extends SimilarityStepOptions {
  k?: number;
  cost?: SegmentCost;
}

export interface SegmentsResult {
  similarity: SimilarityResult;
  units: Unit[];
  segments: string[][];
  k: number;
  kRule: string;
  costCurve: number[];
  cost: SegmentCost;
}

export async function similarityOfLayers(loaded: LoadedModel, dataset: Dataset, o: SimilarityStepOptions = {}) {
  o.onProgress?.('structure');
  const ctx = await modelContext(loaded.model, dataset);
  const units = layerUnits(ctx.structure);
  const similarity = await similarityAnalysis(
    loaded.model,
    units.map((u) => ({ id: u.id, tensor: u.output })),
    dataset,
    { ...pick(o), onProgress: (d, t) => o.onProgress?.('similarity', d / t, `${d}/${t} samples`) },
  );
  return { units, similarity, ctx };
}

function pick(o: SimilarityStepOptions) {
  return {
    ...(o.batchSize === undefined ? {} : { batchSize: o.batchSize }),
    ...(o.samples === undefined ? {} : { samples: o.samples }),
    ...(o.estimator === undefined ? {} : { estimator: o.estimator }),
    ...(o.gram === undefined ? {} : { gram: o.gram }),
    ...(o.session === undefined ? {} : { session: o.session }),
  };
}

export async function segmentLayers(loaded: LoadedModel, dataset: Dataset, o: SegmentsStepOptions = {}): Promise<SegmentsResult> {
  const { units, similarity } = await similarityOfLayers(loaded, dataset, o);
  const cost = o.cost ?? 'fisher';
  const curve = costCurve(similarity.matrix, undefined, cost);
  if (o.k !== undefined && (!Number.isInteger(o.k) || o.k < 1 || o.k > units.length)) {
    throw new InvalidArgumentError('--k', `must be a whole number between 1 and the number of layers (${units.length}), got ${o.k}`);
  }
  const chosen = o.k === undefined ? chooseK(curve) : { k: o.k, rule: 'given' };
  const seg = optimalSegmentation(similarity.matrix, chosen.k, cost);
  return {
    similarity,
    units,
    segments: seg.segments.map((s) => s.map((i) => units[i]!.id)),
    k: chosen.k,
    kRule: chosen.rule,
    costCurve: curve,
    cost,
  };
}

export interface SglpPlanOptions extends SegmentsStepOptions {
  budget: SglpBudget;
  importance?: ImportanceMeasure;
  keepPerSegment?: number;
  latencyBatch?: number;
}

/** Everything an SGLP plan is computed from; one analysis serves any number of budgets. */
export interface SglpAnalysis {
  segments: SegmentsResult;
  importance: Awaited<ReturnType<typeof unitImportance>>;
  measure: ImportanceMeasure;
  latency: Awaited<ReturnType<typeof unitLatencies>>;
  latencyBatch: number;
  modelSha256: string;
  dataSha256: string;
  options: Omit<SglpPlanOptions, 'budget' | 'onProgress' | 'session'> & { provider: string; threads: number | null };
}

export async function analyzeSglp(loaded: LoadedModel, dataset: Dataset, o: Omit<SglpPlanOptions, 'budget'>): Promise<SglpAnalysis> {
  const seg = await segmentLayers(loaded, dataset, o);
  const measure = o.importance ?? 'ablation';
  const importance = await unitImportance(loaded.model, seg.units, dataset, {
    measure,
    ...pick(o),
    onProgress: (d, t, m) => o.onProgress?.('importance', t > 0 ? d / t : 1, m),
  });
  o.onProgress?.('latency');
  const latencyBatch = o.latencyBatch ?? 32;
  const latency = await unitLatencies(loaded.bytes, seg.units, datasetInputShapes(loaded.model, dataset, latencyBatch), {
    ...(o.session ? { session: o.session } : {}),
  });
  return {
    segments: seg,
    importance,
    measure,
    latency,
    latencyBatch,
    modelSha256: loaded.sha256,
    dataSha256: dataset.sha256,
    options: {
      estimator: seg.similarity.estimator,
      samples: seg.similarity.samples,
      batchSize: o.batchSize ?? 64,
      k: seg.k,
      cost: seg.cost,
      importance: measure,
      keepPerSegment: o.keepPerSegment ?? 1,
      latencyBatch,
      provider: o.session?.provider ?? 'cpu',
      threads: o.session?.threads ?? null,
    },
  };
}

/** The SGLP plan for one budget from a finished analysis (pure and instant). */
export function sglpPlanFromAnalysis(a: SglpAnalysis, budget: SglpBudget): PlanDocument {
  const seg = a.segments;
  const index = new Map(seg.units.map((u, i) => [u.id, i]));
  const plan = planSglp({
    units: seg.units.map((u) => ({
      id: u.id,
      removable: u.removable,
      latencyMs: a.latency.unitMs[u.id] ?? 0,
      importance: a.importance.importance[u.id] ?? 0,
    })),
    segments: seg.segments.map((s) => s.map((id) => index.get(id)!)),
    baselineLatencyMs: a.latency.baseline.medianMs,
    budget,
    keepPerSegment: a.options.keepPerSegment ?? 1,
  });
  return {
    format: 'strata-plan',
    version: 1,
    method: 'sglp',
    budget,
    remove: plan.remove,
    predictedLatencyMs: plan.predictedLatencyMs,
    baselineLatencyMs: a.latency.baseline.medianMs,
    latencyBatch: a.latencyBatch,
    importanceLost: plan.importanceLost,
    segments: seg.segments,
    importance: a.importance.importance,
    importanceMeasure: `${a.measure}: ${a.importance.basis}`,
    unitLatencyMs: a.latency.unitMs,
    inputs: { modelSha256: a.modelSha256, dataSha256: a.dataSha256, options: { ...a.options, kRule: seg.kRule } },
  };
}

export async function planSglpForModel(loaded: LoadedModel, dataset: Dataset, o: SglpPlanOptions): Promise<PlanDocument> {
  const analysis = await analyzeSglp(loaded, dataset, o);
  const doc = sglpPlanFromAnalysis(analysis, o.budget);
  o.onProgress?.('done', 1);
  return doc;
}
