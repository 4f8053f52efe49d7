import { InvalidArgumentError, StrataError, UnreachableCaseError } from '../core/errors.js';
import { IMPORTANCE_MEASURES, type ImportanceMeasure } from '../core/importance/measures.js';
import type { LayerMergeVariant } from '../core/layermerge/dp.js';
import type { LayerMergeBudget } from '../core/layermerge/tables.js';
import { validatePlan, type PlanDocument } from '../core/plan/plan.js';
import type { SegmentCost } from '../core/segment/fisher.js';
import type { SglpBudget } from '../core/sglp/plan.js';
import type { HsicEstimator } from '../core/similarity/cka.js';
import type { Registry } from '../store/registry.js';
import type {
  JobRecord,
  LayerMergeAnalysisInput,
  LayerMergeTablesInput,
  PlanInput,
  PlanMethod,
  RuntimeChoice,
  SegmentsInput,
  SglpAnalysisInput,
  SimilarityInput,
  TradeoffInput,
} from './job.js';
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

/** LayerMerge's analysis options: what its tables depend on. */
export interface LayerMergeTablesOptions {
  maxKernel?: number | null;
  refit?: boolean | null;
  ridge?: number | null;
}

export interface LayerMergeTablesRequest extends LayerMergeTablesOptions {
  model: string;
  dataset: string;
  samples?: number | null;
  batchSize?: number | null;
  latencyBatch?: number | null;
}

/** LayerMerge's options in a plan: the analysis's, and how the DP is run over the tables. */
export interface LayerMergeOptionsRequest extends LayerMergeTablesOptions {
  variant?: LayerMergeVariant | null;
  quantumMs?: number | null;
}

/** A plan's analysis: SGLP's options at the top level (they predate LayerMerge), LayerMerge's in `layerMerge`. */
export interface PlanOptionsRequest extends SegmentsRequest {
  method?: PlanMethod | null;
  importance?: ImportanceMeasure | null;
  keepPerSegment?: number | null;
  latencyBatch?: number | null;
  layerMerge?: LayerMergeOptionsRequest | null;
}

export interface PlanRequest extends PlanOptionsRequest {
  budget: BudgetRequest;
}

export interface TradeoffRequest extends PlanOptionsRequest {
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
  /** as `strata plan --method layermerge` and `strata tables` default them */
  layerMerge: {
    variant: 'layermerge' as LayerMergeVariant,
    quantumMs: 0.1,
    // without refit, LayerMerge plans lose far more accuracy at the same budget (bench/results/layermerge.md)
    refit: true,
    maxKernel: 7,
    ridge: 1e-3,
  },
};

/** The methods the service plans with and applies; the API's PlanMethod enum lists the same. */
export const PLAN_METHODS: readonly PlanMethod[] = ['sglp', 'layermerge'];

const LAYERMERGE_VARIANTS: readonly LayerMergeVariant[] = ['layermerge', 'layer-only', 'merge-only'];

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

  /** LayerMerge's latency and importance tables: what its plans are made from. */
  layerMergeTables(r: LayerMergeTablesRequest): JobRecord {
    return this.jobs.submit({ ...this.runtime, kind: 'tables', input: this.tablesInput(r, r, 'input') });
  }

  plan(r: PlanRequest): JobRecord {
    const options = this.planOptions(r);
    const input: PlanInput =
      options.method === 'sglp'
        ? { ...options, budget: budget(r.budget, 'input.budget') }
        : { ...options, budget: layerMergeBudget(r.budget, 'input.budget') };
    return this.jobs.submit({ ...this.runtime, kind: 'plan', input });
  }

  tradeoff(r: TradeoffRequest): JobRecord {
    if (r.budgets.length === 0 || r.budgets.length > MAX_BUDGETS) {
      throw new InvalidArgumentError('input.budgets', `give 1 to ${MAX_BUDGETS} budgets, got ${r.budgets.length}`);
    }
    const options = this.planOptions(r);
    const evalDatasetSha256 = r.evalDataset ? this.registry.dataset(r.evalDataset).sha256 : null;
    const input: TradeoffInput =
      options.method === 'sglp'
        ? { ...options, budgets: r.budgets.map((b, i) => budget(b, `input.budgets[${i}]`)), evalDatasetSha256 }
        : { ...options, budgets: r.budgets.map((b, i) => layerMergeBudget(b, `input.budgets[${i}]`)), evalDatasetSha256 };
    return this.jobs.submit({ ...this.runtime, kind: 'tradeoff', input });
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

  private planOptions(r: PlanOptionsRequest): SglpAnalysisInput | LayerMergeAnalysisInput {
    const method = r.method ?? DEFAULTS.method;
    switch (method) {
      case 'sglp':
        if (r.layerMerge !== undefined && r.layerMerge !== null) {
          throw new InvalidArgumentError('input.layerMerge', 'these options are for method LAYERMERGE; leave them out with method SGLP');
        }
        return this.sglpInput(r);
      case 'layermerge':
        return this.layerMergeInput(r);
      default:
        throw new UnreachableCaseError(method);
    }
  }

  private sglpInput(r: PlanOptionsRequest): SglpAnalysisInput {
    const keepPerSegment = r.keepPerSegment ?? DEFAULTS.keepPerSegment;
    if (!Number.isSafeInteger(keepPerSegment) || keepPerSegment < 0) {
      throw new InvalidArgumentError('input.keepPerSegment', `must be a whole number ≥ 0, got ${keepPerSegment}`);
    }
    const latencyBatch = latencyBatchOf(r.latencyBatch);
    const importance = r.importance ?? DEFAULTS.importance;
    if (!IMPORTANCE_MEASURES.includes(importance)) throw new InvalidArgumentError('input.importance', `must be one of ${IMPORTANCE_MEASURES.join(', ')}`);
    return { ...this.segmentsInput(r), method: 'sglp', importance, keepPerSegment, latencyBatch };
  }

  private layerMergeInput(r: PlanOptionsRequest): LayerMergeAnalysisInput {
    // SGLP's options would change nothing in a LayerMerge plan: one set to something other than its
    // default is a request that misunderstood the method, better said than silently ignored
    const sglpOnly: [string, unknown, unknown][] = [
      ['estimator', r.estimator, DEFAULTS.estimator],
      ['k', r.k, undefined],
      ['cost', r.cost, DEFAULTS.cost],
      ['importance', r.importance, DEFAULTS.importance],
      ['keepPerSegment', r.keepPerSegment, DEFAULTS.keepPerSegment],
    ];
    for (const [name, value, fallback] of sglpOnly) {
      if (value !== undefined && value !== null && value !== fallback) {
        throw new InvalidArgumentError(`input.${name}`, `is an SGLP option; method LAYERMERGE does not use it (its options are in input.layerMerge)`);
      }
    }
    const o = r.layerMerge ?? {};
    const variant = o.variant ?? DEFAULTS.layerMerge.variant;
    if (!LAYERMERGE_VARIANTS.includes(variant)) throw new InvalidArgumentError('input.layerMerge.variant', `must be one of ${LAYERMERGE_VARIANTS.join(', ')}`);
    const quantumMs = o.quantumMs ?? DEFAULTS.layerMerge.quantumMs;
    if (!(quantumMs > 0) || !Number.isFinite(quantumMs)) {
      throw new InvalidArgumentError('input.layerMerge.quantumMs', `must be a positive number of milliseconds, got ${quantumMs}`);
    }
    return { ...this.tablesInput(r, o, 'input.layerMerge'), method: 'layermerge', variant, quantumMs };
  }

  /** `where` names the object the LayerMerge options sit in, so messages point at the field sent. */
  private tablesInput(
    r: { model: string; dataset: string; samples?: number | null; batchSize?: number | null; latencyBatch?: number | null },
    o: LayerMergeTablesOptions,
    where: string,
  ): LayerMergeTablesInput {
    const model = this.registry.model(r.model);
    const dataset = this.registry.dataset(r.dataset);
    const batchSize = r.batchSize ?? DEFAULTS.batchSize;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 4096) {
      throw new InvalidArgumentError('input.batchSize', `must be a whole number from 1 to 4096, got ${batchSize}`);
    }
    const samples = r.samples ?? null;
    if (samples !== null && (!Number.isSafeInteger(samples) || samples < 1)) {
      throw new InvalidArgumentError('input.samples', `must be a positive whole number, got ${samples}`);
    }
    const maxKernel = o.maxKernel ?? DEFAULTS.layerMerge.maxKernel;
    if (!Number.isSafeInteger(maxKernel) || maxKernel < 1) throw new InvalidArgumentError(`${where}.maxKernel`, `must be a positive whole number, got ${maxKernel}`);
    const refit = o.refit ?? DEFAULTS.layerMerge.refit;
    const ridge = o.ridge ?? DEFAULTS.layerMerge.ridge;
    if (!(ridge >= 0) || !Number.isFinite(ridge)) throw new InvalidArgumentError(`${where}.ridge`, `must be a number ≥ 0, got ${ridge}`);
    return {
      modelSha256: model.sha256,
      datasetSha256: dataset.sha256,
      // "all samples" and the data set's sample count are the same request
      samples: samples === null || samples >= dataset.samples ? null : samples,
      batchSize,
      latencyBatch: latencyBatchOf(r.latencyBatch),
      maxKernel,
      refit,
      ridge: refit ? ridge : null,
    };
  }
}

function latencyBatchOf(value: number | null | undefined): number {
  const latencyBatch = value ?? DEFAULTS.latencyBatch;
  if (!Number.isSafeInteger(latencyBatch) || latencyBatch < 1 || latencyBatch > MAX_LATENCY_BATCH) {
    throw new InvalidArgumentError('input.latencyBatch', `must be a whole number from 1 to ${MAX_LATENCY_BATCH}, got ${latencyBatch}`);
  }
  return latencyBatch;
}

/** LayerMerge's DP trades latency: a count of units is not a budget it can plan under. */
function layerMergeBudget(b: BudgetRequest, name: string): LayerMergeBudget {
  const parsed = budget(b, name);
  switch (parsed.kind) {
    case 'latency-fraction':
    case 'latency-ms':
      return parsed;
    case 'remove':
    case 'fraction':
      throw new InvalidArgumentError(
        `${name}.${parsed.kind === 'remove' ? 'remove' : 'fraction'}`,
        'method LAYERMERGE plans under a latency budget: give latencyFraction or latencyMs (remove and fraction count the units SGLP removes)',
      );
    default:
      throw new UnreachableCaseError(parsed);
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
