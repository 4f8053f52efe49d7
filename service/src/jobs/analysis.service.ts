import { InvalidArgumentError, StrataError } from '../core/errors.js';
import { IMPORTANCE_MEASURES, type ImportanceMeasure } from '../core/importance/measures.js';
import { validatePlan, type PlanDocument } from '../core/plan/plan.js';
import type { SegmentCost } from '../core/segment/fisher.js';
import type { SglpBudget } from '../core/sglp/plan.js';
import type { HsicEstimator } from '../core/similarity/cka.js';
import type { Registry } from '../store/registry.js';
import type { JobRecord, PlanMethod, RuntimeChoice, SegmentsInput, SglpAnalysisInput, SimilarityInput } from './job.js';
import type { JobService } from './job.service.js';

/** Requests as clients send them: ids of registered models and data sets, options that may be left out. */
export interface StructureRequest {
  model: string;
  dataset?: string | null;
  shapes?: readonly { input: string; dims: readonly number[] }[] | null;
}

export interface AnalysisRequest {
  model: string;
  dataset: string;
  samples?: number | null;
  batchSize?: number | null;
  estimator?: HsicEstimator | null;
}

export interface SegmentsRequest extends AnalysisRequest {
  k?: number | null;
  cost?: SegmentCost | null;
}

/** Exactly one field set. */
export interface BudgetRequest {
  latencyFraction?: number | null;
  latencyMs?: number | null;
  remove?: number | null;
  fraction?: number | null;
}

export interface SglpRequest extends SegmentsRequest {
  method?: PlanMethod | null;
  importance?: ImportanceMeasure | null;
  keepPerSegment?: number | null;
  latencyBatch?: number | null;
}

export interface PlanRequest extends SglpRequest {
  budget: BudgetRequest;
}

export interface TradeoffRequest extends SglpRequest {
  budgets: readonly BudgetRequest[];
  evalDataset?: string | null;
}

/** `plan` (a succeeded plan job) or `planDocument` (a plan.json from `strata plan -o`), not both. */
export interface CompressRequest {
  model: string;
  plan?: string | null;
  planDocument?: unknown;
  evalDataset?: string | null;
}

export const DEFAULTS = {
  batchSize: 64,
  estimator: 'unbiased' as HsicEstimator,
  cost: 'fisher' as SegmentCost,
  method: 'sglp' as PlanMethod,
  importance: 'ablation' as ImportanceMeasure,
  keepPerSegment: 1,
  latencyBatch: 32,
};

/** The methods the service plans with and applies; the API's PlanMethod enum lists the same. */
export const PLAN_METHODS: readonly PlanMethod[] = ['sglp'];

const MAX_BUDGETS = 32;
const MAX_LATENCY_BATCH = 4096;

/**
 * Turns requests into job specs: ids resolved to content hashes, defaults filled in and ranges
 * checked before anything is queued, so the cache key of a spec is the same however the request
 * spelled it, and a bad argument fails at once with the argument named.
 */
export class AnalysisService {
  constructor(
    private readonly registry: Registry,
    private readonly jobs: JobService,
    private readonly runtime: RuntimeChoice,
  ) {}

  structure(r: StructureRequest): JobRecord {
    const model = this.registry.model(r.model);
    const dataset = r.dataset ? this.registry.dataset(r.dataset) : null;
    const shapes = (r.shapes ?? []).map((s, i) => {
      if (s.dims.length === 0 || s.dims.some((d) => !Number.isSafeInteger(d) || d < 1)) {
        throw new InvalidArgumentError(`input.shapes[${i}].dims`, `must be positive whole numbers, got [${s.dims.join(', ')}]`);
      }
      return { input: s.input, dims: [...s.dims] };
    });
    if (dataset && shapes.length > 0) throw new InvalidArgumentError('input.shapes', 'give a data set or shapes, not both');
    return this.jobs.submit({ ...this.runtime, kind: 'structure', input: { modelSha256: model.sha256, datasetSha256: dataset?.sha256 ?? null, shapes } });
  }

  similarity(r: AnalysisRequest): JobRecord {
    return this.jobs.submit({ ...this.runtime, kind: 'similarity', input: this.similarityInput(r) });
  }

  segments(r: SegmentsRequest): JobRecord {
    return this.jobs.submit({ ...this.runtime, kind: 'segments', input: this.segmentsInput(r) });
  }

  plan(r: PlanRequest): JobRecord {
    const input = { ...this.sglpInput(r), budget: budget(r.budget, 'input.budget') };
    return this.jobs.submit({ ...this.runtime, kind: 'plan', input });
  }

  tradeoff(r: TradeoffRequest): JobRecord {
    if (r.budgets.length === 0 || r.budgets.length > MAX_BUDGETS) {
      throw new InvalidArgumentError('input.budgets', `give 1 to ${MAX_BUDGETS} budgets, got ${r.budgets.length}`);
    }
    const budgets = r.budgets.map((b, i) => budget(b, `input.budgets[${i}]`));
    const evalDatasetSha256 = r.evalDataset ? this.registry.dataset(r.evalDataset).sha256 : null;
    return this.jobs.submit({ ...this.runtime, kind: 'tradeoff', input: { ...this.sglpInput(r), budgets, evalDatasetSha256 } });
  }

  compress(r: CompressRequest): JobRecord {
    const model = this.registry.model(r.model);
    const given = (r.plan ? 1 : 0) + (r.planDocument !== undefined && r.planDocument !== null ? 1 : 0);
    if (given !== 1) throw new InvalidArgumentError('input.plan', 'give exactly one of plan (the id of a finished plan job) or planDocument (a plan.json)');
    const plan = r.plan ? this.planOfJob(r.plan) : planDocument(r.planDocument);
    if (!(PLAN_METHODS as readonly string[]).includes(plan.method)) {
      throw new InvalidArgumentError('input.planDocument', `"${plan.method}" plans are not applied by this service; it applies: ${PLAN_METHODS.join(', ')}`);
    }
    if (plan.inputs.modelSha256 !== model.sha256) {
      throw new InvalidArgumentError(
        'input.plan',
        `the plan was made for another model (sha256 ${plan.inputs.modelSha256.slice(0, 12)}…; model "${model.name}" is ${model.sha256.slice(0, 12)}…)`,
      );
    }
    const evalDatasetSha256 = r.evalDataset ? this.registry.dataset(r.evalDataset).sha256 : null;
    return this.jobs.submit({ ...this.runtime, kind: 'compress', input: { modelSha256: model.sha256, plan, evalDatasetSha256 } });
  }

  private planOfJob(id: string): PlanDocument {
    const job = this.jobs.get(id);
    if (job.state.status !== 'succeeded') {
      throw new InvalidArgumentError('input.plan', `job ${id} is ${job.state.status}; a plan can be applied once its job has succeeded`);
    }
    if (job.state.result.kind !== 'plan') throw new InvalidArgumentError('input.plan', `job ${id} is a ${job.spec.kind} job, not a plan`);
    return job.state.result.plan;
  }

  private similarityInput(r: AnalysisRequest): SimilarityInput {
    const model = this.registry.model(r.model);
    const dataset = this.registry.dataset(r.dataset);
    const estimator = r.estimator ?? DEFAULTS.estimator;
    const batchSize = r.batchSize ?? DEFAULTS.batchSize;
    const minimum = estimator === 'unbiased' ? 4 : 2;
    if (!Number.isSafeInteger(batchSize) || batchSize < minimum || batchSize > 4096) {
      throw new InvalidArgumentError('input.batchSize', `must be a whole number from ${minimum} (the ${estimator} estimator's minimum) to 4096, got ${batchSize}`);
    }
    const samples = r.samples ?? null;
    if (samples !== null && (!Number.isSafeInteger(samples) || samples < minimum)) {
      throw new InvalidArgumentError('input.samples', `must be a whole number of at least ${minimum}, got ${samples}`);
    }
    // "all samples" and the data set's sample count are the same request
    const effective = samples === null || samples >= dataset.samples ? null : samples;
    return { modelSha256: model.sha256, datasetSha256: dataset.sha256, samples: effective, batchSize, estimator };
  }

  private segmentsInput(r: SegmentsRequest): SegmentsInput {
    const k = r.k ?? null;
    if (k !== null && (!Number.isSafeInteger(k) || k < 1)) throw new InvalidArgumentError('input.k', `must be a positive whole number, got ${k}`);
    return { ...this.similarityInput(r), k, cost: r.cost ?? DEFAULTS.cost };
  }

  private sglpInput(r: SglpRequest): SglpAnalysisInput {
    const keepPerSegment = r.keepPerSegment ?? DEFAULTS.keepPerSegment;
    if (!Number.isSafeInteger(keepPerSegment) || keepPerSegment < 0) {
      throw new InvalidArgumentError('input.keepPerSegment', `must be a whole number ≥ 0, got ${keepPerSegment}`);
    }
    const latencyBatch = r.latencyBatch ?? DEFAULTS.latencyBatch;
    if (!Number.isSafeInteger(latencyBatch) || latencyBatch < 1 || latencyBatch > MAX_LATENCY_BATCH) {
      throw new InvalidArgumentError('input.latencyBatch', `must be a whole number from 1 to ${MAX_LATENCY_BATCH}, got ${latencyBatch}`);
    }
    const importance = r.importance ?? DEFAULTS.importance;
    if (!IMPORTANCE_MEASURES.includes(importance)) throw new InvalidArgumentError('input.importance', `must be one of ${IMPORTANCE_MEASURES.join(', ')}`);
    return { ...this.segmentsInput(r), method: r.method ?? DEFAULTS.method, importance, keepPerSegment, latencyBatch };
  }
}

function budget(b: BudgetRequest, name: string): SglpBudget {
  const set = (['latencyFraction', 'latencyMs', 'remove', 'fraction'] as const).filter((k) => b[k] !== undefined && b[k] !== null);
  if (set.length !== 1) {
    throw new InvalidArgumentError(
      name,
      'set exactly one of latencyFraction (of the measured latency, 0–1], latencyMs, remove (a count) or fraction (of the removable units); ' +
        `got ${set.length === 0 ? 'none' : set.join(', ')}`,
    );
  }
  const field = set[0]!;
  const v = b[field]!;
  switch (field) {
    case 'latencyFraction':
      if (!(v > 0 && v <= 1)) throw new InvalidArgumentError(`${name}.latencyFraction`, `must be in (0, 1], got ${v}`);
      return { kind: 'latency-fraction', value: v };
    case 'latencyMs':
      if (!(v > 0) || !Number.isFinite(v)) throw new InvalidArgumentError(`${name}.latencyMs`, `must be a positive number of milliseconds, got ${v}`);
      return { kind: 'latency-ms', value: v };
    case 'remove':
      if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError(`${name}.remove`, `must be a whole number ≥ 0, got ${v}`);
      return { kind: 'remove', count: v };
    case 'fraction':
      if (!(v >= 0 && v <= 1)) throw new InvalidArgumentError(`${name}.fraction`, `must be in [0, 1], got ${v}`);
      return { kind: 'fraction', value: v };
  }
}

function planDocument(raw: unknown): PlanDocument {
  try {
    return validatePlan(raw);
  } catch (e) {
    if (e instanceof StrataError && e.code === 'BAD_USER_INPUT') throw new InvalidArgumentError('input.planDocument', e.message.replace(/^--plan: /, ''));
    throw e;
  }
}
