/**
 * The job model: what a job is asked to do (its spec, one input type per kind), what it produced
 * (one result type per kind) and where it stands (a state per status). Everything here is plain
 * data: it crosses the IPC channel to the worker and is stored as JSON.
 */
import type { ErrorCode } from '../core/errors.js';
import type { ImportanceMeasure } from '../core/importance/measures.js';
import type { LayerMergeVariant } from '../core/layermerge/dp.js';
import type { LayerMergeBudget, TablesDoc } from '../core/layermerge/tables.js';
import type { PlanDocument } from '../core/plan/plan.js';
import type { SegmentCost } from '../core/segment/fisher.js';
import type { SglpBudget } from '../core/sglp/plan.js';
import type { HsicEstimator } from '../core/similarity/cka.js';
import type { Unit } from '../core/structure/unit.js';
import type { Provider } from '../runtime/session.js';

export type JobKind = 'structure' | 'similarity' | 'segments' | 'tables' | 'plan' | 'tradeoff' | 'compress';
export const JOB_KINDS: readonly JobKind[] = ['structure', 'similarity', 'segments', 'tables', 'plan', 'tradeoff', 'compress'];

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

/** How onnxruntime runs a job's models; part of every cache key, since figures depend on it. */
export interface RuntimeChoice {
  provider: Provider;
  threads: number | null;
}

export interface InputShape {
  input: string;
  dims: number[];
}

export interface StructureInput {
  modelSha256: string;
  /** shapes the inputs are bound to: from a data set when given, else from `shapes` (batch 1) */
  datasetSha256: string | null;
  shapes: InputShape[];
}

export interface SimilarityInput {
  modelSha256: string;
  datasetSha256: string;
  samples: number | null;
  batchSize: number;
  estimator: HsicEstimator;
}

export interface SegmentsInput extends SimilarityInput {
  k: number | null;
  cost: SegmentCost;
}

export type PlanMethod = 'sglp' | 'layermerge';

/** What an SGLP analysis depends on: a plan for any budget is instant once this is computed. */
export interface SglpAnalysisInput extends SegmentsInput {
  method: 'sglp';
  importance: ImportanceMeasure;
  keepPerSegment: number;
  latencyBatch: number;
}

/**
 * What LayerMerge's latency and importance tables depend on: plans for any budget and variant are
 * instant once they exist.
 */
export interface LayerMergeTablesInput {
  modelSha256: string;
  datasetSha256: string;
  samples: number | null;
  /** batch size of the importance passes */
  batchSize: number;
  latencyBatch: number;
  maxKernel: number;
  /** also refit merged convolutions and score the refits (and, in a plan, emit refit weights) */
  refit: boolean;
  /** null without refit: the ridge shapes nothing else, so it must not split the cache */
  ridge: number | null;
}

export interface LayerMergeAnalysisInput extends LayerMergeTablesInput {
  method: 'layermerge';
  variant: LayerMergeVariant;
  quantumMs: number;
}

/** LayerMerge plans only under latency budgets: its DP trades latency, it does not count units. */
export type PlanInput = (SglpAnalysisInput & { budget: SglpBudget }) | (LayerMergeAnalysisInput & { budget: LayerMergeBudget });

export type TradeoffInput = ((SglpAnalysisInput & { budgets: SglpBudget[] }) | (LayerMergeAnalysisInput & { budgets: LayerMergeBudget[] })) & {
  /** labelled data each compressed model is evaluated on; none: latency only */
  evalDatasetSha256: string | null;
};

export interface CompressInput {
  modelSha256: string;
  plan: PlanDocument;
  evalDatasetSha256: string | null;
}

export type JobSpec = RuntimeChoice &
  (
    | { kind: 'structure'; input: StructureInput }
    | { kind: 'similarity'; input: SimilarityInput }
    | { kind: 'segments'; input: SegmentsInput }
    | { kind: 'tables'; input: LayerMergeTablesInput }
    | { kind: 'plan'; input: PlanInput }
    | { kind: 'tradeoff'; input: TradeoffInput }
    | { kind: 'compress'; input: CompressInput }
  );

export interface StructureResult {
  kind: 'structure';
  units: Unit[];
  warnings: string[];
  inputShapes: InputShape[];
}

export interface SimilarityResult {
  kind: 'similarity';
  units: { id: string; kind: string }[];
  matrix: number[][];
  estimator: HsicEstimator;
  samples: number;
  batches: number;
  degenerate: string[];
}

export interface SegmentsResult {
  kind: 'segments';
  units: { id: string; kind: string; removable: boolean }[];
  matrix: number[][];
  segments: string[][];
  k: number;
  kRule: string;
  cost: SegmentCost;
  costCurve: number[];
}

export interface TablesResult {
  kind: 'tables';
  /** as `strata tables -o` writes them: `strata plan --method layermerge --tables` reads this */
  tables: TablesDoc;
}

export interface PlanResult {
  kind: 'plan';
  plan: PlanDocument;
}

/** A convolution a LayerMerge plan emits in place of a changed block. */
export interface MergedConv {
  /** the block (i, j] over chain positions */
  i: number;
  j: number;
  /** the original convs merged into it, in order */
  from: string[];
  kh: number;
  kw: number;
  /** residual Adds folded into its kernel */
  foldedSkips: string[];
  refit: boolean;
}

/** A compressed model measured against its original. */
export interface CompressionReport {
  removed: string[];
  /** LayerMerge: the convolutions its changed blocks became; empty for SGLP, absent from reports stored before LayerMerge */
  merged?: MergedConv[];
  removedNodes: number;
  parametersBefore: number;
  parametersAfter: number;
  latencyBatch: number;
  originalMs: number;
  compressedMs: number;
  /** compressed ÷ original, median of interleaved pairs */
  latencyRatio: number;
  latencyRatioP10: number;
  latencyRatioP90: number;
  speedup: number;
  predictedRatio: number;
  accuracyBefore: number | null;
  accuracyAfter: number | null;
  agreement: number | null;
  meanKl: number | null;
  samples: number | null;
}

export interface ArtifactRef {
  sha256: string;
  size: number;
}

export interface CompressResult {
  kind: 'compress';
  artifact: ArtifactRef;
  report: CompressionReport;
}

export type TradeoffPoint =
  | { budget: SglpBudget; feasible: true; plan: PlanDocument; artifact: ArtifactRef; report: CompressionReport }
  | { budget: SglpBudget; feasible: false; reason: string };

export interface TradeoffResult {
  kind: 'tradeoff';
  baselineLatencyMs: number;
  latencyBatch: number;
  points: TradeoffPoint[];
}

export type JobResult = StructureResult | SimilarityResult | SegmentsResult | TablesResult | PlanResult | TradeoffResult | CompressResult;

/** Failures a job can end with: the domain's codes, and what can happen to the process running it. */
export type JobErrorCode = ErrorCode | 'JOB_TIMEOUT' | 'WORKER_CRASHED' | 'INTERRUPTED' | 'INTERNAL_SERVER_ERROR';

export interface JobError {
  code: JobErrorCode;
  message: string;
}

export interface JobProgress {
  phase: string;
  /** 0..1 within the phase, when the phase can tell */
  fraction: number | null;
  message: string | null;
}

export type JobState =
  | { status: 'queued' }
  | { status: 'running'; startedAt: string }
  | { status: 'succeeded'; startedAt: string; finishedAt: string; result: JobResult }
  | { status: 'failed'; startedAt: string | null; finishedAt: string; error: JobError }
  | { status: 'cancelled'; startedAt: string | null; finishedAt: string };

export interface JobRecord {
  id: string;
  /** hash of the spec: equal specs share one job and its result */
  cacheKey: string;
  createdAt: string;
  spec: JobSpec;
  state: JobState;
  progress: JobProgress | null;
}

export function isTerminal(state: JobState): boolean {
  return state.status === 'succeeded' || state.status === 'failed' || state.status === 'cancelled';
}
