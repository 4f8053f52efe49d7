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

export async function planSglpForModel(loaded: LoadedModel, dataset: Dataset, o: SglpPlanOptions): Promise<PlanDocument> {
  const seg = await segmentLayers(loaded, dataset, o);
  const measure = o.importance ?? 'ablation';
  const imp = await unitImportance(loaded.model, seg.units, dataset, {
    measure,
    ...pick(o),
    onProgress: (d, t, m) => o.onProgress?.('importance', t > 0 ? d / t : 1, m),
  });
  o.onProgress?.('latency');
  const latencyBatch = o.latencyBatch ?? 32;
  const lat = await unitLatencies(loaded.bytes, seg.units, datasetInputShapes(loaded.model, dataset, latencyBatch), {
    ...(o.session ? { session: o.session } : {}),
  });
  const index = new Map(seg.units.map((u, i) => [u.id, i]));
  const plan = planSglp({
    units: seg.units.map((u) => ({
      id: u.id,
      removable: u.removable,
      latencyMs: lat.unitMs[u.id] ?? 0,
      importance: imp.importance[u.id] ?? 0,
    })),
    segments: seg.segments.map((s) => s.map((id) => index.get(id)!)),
    baselineLatencyMs: lat.baseline.medianMs,
    budget: o.budget,
    ...(o.keepPerSegment === undefined ? {} : { keepPerSegment: o.keepPerSegment }),
  });
  o.onProgress?.('done', 1);
  return {
    format: 'strata-plan',
    version: 1,
    method: 'sglp',
    budget: o.budget,
    remove: plan.remove,
    predictedLatencyMs: plan.predictedLatencyMs,
    baselineLatencyMs: lat.baseline.medianMs,
    latencyBatch,
    importanceLost: plan.importanceLost,
    segments: seg.segments,
    importance: imp.importance,
    importanceMeasure: `${measure}: ${imp.basis}`,
    unitLatencyMs: lat.unitMs,
    inputs: {
      modelSha256: loaded.sha256,
      dataSha256: dataset.sha256,
      options: {
        estimator: seg.similarity.estimator,
        samples: seg.similarity.samples,
        batchSize: o.batchSize ?? 64,
        k: seg.k,
        kRule: seg.kRule,
        cost: seg.cost,
        keepPerSegment: o.keepPerSegment ?? 1,
        provider: o.session?.provider ?? 'cpu',
        threads: o.session?.threads ?? null,
      },
    },
  };
}
