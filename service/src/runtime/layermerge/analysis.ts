/**
 * LayerMerge end to end: structure → chain → candidates → latency and importance tables (measured, or
 * imported from `strata tables`) → the DP for a budget → a plan document. The tables are the expensive
 * part and do not depend on the budget, so one analysis serves any number of budgets and variants.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import { type Candidate, enumerateCandidates } from '../../core/layermerge/chain.js';
import type { LayerMergeVariant } from '../../core/layermerge/dp.js';
import { blockIsNoop } from '../../core/layermerge/emit.js';
import { type ExtractedChain, extractChain } from '../../core/layermerge/extract.js';
import type { PlanBlock } from '../../core/layermerge/plan-section.js';
import {
  type ImportanceTableDoc,
  type LatencyTableDoc,
  type LayerMergeBudget,
  type TablesDoc,
  candidateKey,
  dominatedCandidates,
  planLayerMerge,
  summarizeCandidate,
} from '../../core/layermerge/tables.js';
import type { ModelProto } from '../../core/onnx/proto.js';
import type { PlanDocument } from '../../core/plan/plan.js';
import type { Dataset } from '../dataset.js';
import type { LoadedModel } from '../model-file.js';
import { type ModelContext, datasetInputShapes, modelContext } from '../analysis/model-context.js';
import type { ProgressFn } from '../analysis/sglp.js';
import type { SessionOptions } from '../session.js';
import { measureImportanceTable } from './importance-table.js';
import { refitSequentially } from './refit-plan.js';
import type { RefitResult } from '../../core/layermerge/refit.js';
import { LatencyCache, measureLatencyTable } from './latency-table.js';

export interface LayerMergeAnalysisOptions {
  samples?: number;
  batchSize?: number;
  latencyBatch?: number;
  /** largest merged kernel offered; default 7 */
  maxKernel?: number;
  /**
   * also compute refit weights and their importance; off when left out here, while the CLI and the
   * service default it on and always pass it
   */
  refit?: boolean;
  ridge?: number;
  session?: SessionOptions;
  latencyCache?: LatencyCache;
  /** tables from `strata tables` for this model and data: nothing is measured again */
  tables?: TablesDoc;
  onProgress?: ProgressFn;
}

export interface LayerMergeAnalysis {
  model: ModelProto;
  modelSha256: string;
  dataSha256: string;
  ctx: ModelContext;
  extracted: ExtractedChain;
  candidates: Candidate[];
  latency: LatencyTableDoc;
  importance: ImportanceTableDoc;
  options: {
    samples: number;
    batchSize: number;
    latencyBatch: number;
    maxKernel: number;
    refit: boolean;
    ridge: number | null;
    provider: string;
    threads: number | null;
  };
  /** seconds per phase (zero for imported tables) */
  seconds: { structure: number; latency: number; importance: number; refitSums: number; refitSolve: number };
}

function now(): number {
  return performance.now() / 1000;
}

/** Checks imported tables were made for this model, data and candidate set. */
function checkTables(t: TablesDoc, loaded: LoadedModel, dataset: Dataset, x: ExtractedChain, candidates: Candidate[]): void {
  if (!t || t.format !== 'strata-layermerge-tables' || t.version !== 1) {
    throw new InvalidArgumentError('--tables', 'not strata LayerMerge tables (format "strata-layermerge-tables", version 1, as `strata tables -o` writes)');
  }
  if (t.modelSha256 !== loaded.sha256) throw new InvalidArgumentError('--tables', `the tables were made for another model (sha256 ${t.modelSha256.slice(0, 12)}…)`);
  if (t.dataSha256 !== dataset.sha256) throw new InvalidArgumentError('--tables', `the tables were made with other calibration data (sha256 ${t.dataSha256.slice(0, 12)}…)`);
  const ids = x.chain.layers.map((l) => l.id);
  if (t.chain.layers.join(',') !== ids.join(',')) throw new InvalidArgumentError('--tables', 'the tables describe another conv chain');
  for (const c of candidates) {
    const key = candidateKey(c);
    if (!(key in t.latency.entries) || (!t.importance.entries[key] && !t.importance.dominated.includes(key))) {
      throw new InvalidArgumentError('--tables', `candidate ${key} is missing (were the tables made with another --max-kernel?)`);
    }
  }
}

export async function analyzeLayerMerge(loaded: LoadedModel, dataset: Dataset, o: LayerMergeAnalysisOptions = {}): Promise<LayerMergeAnalysis> {
  const seconds = { structure: 0, latency: 0, importance: 0, refitSums: 0, refitSolve: 0 };
  let t = now();
  o.onProgress?.('structure');
  const ctx = await modelContext(loaded.model, dataset);
  const extracted = extractChain(loaded.model, ctx.structure.units, ctx.shapes);
  const maxKernel = o.maxKernel ?? 7;
  if (!Number.isInteger(maxKernel) || maxKernel < 1) throw new InvalidArgumentError('--max-kernel', `must be a positive integer, got ${maxKernel}`);
  const candidates = enumerateCandidates(extracted.chain, { maxKernel });
  seconds.structure = now() - t;
  const latencyBatch = o.latencyBatch ?? 32;
  const batchSize = o.batchSize ?? 64;
  const options = {
    samples: Math.min(dataset.samples, o.samples ?? dataset.samples),
    batchSize,
    latencyBatch,
    maxKernel,
    refit: o.refit === true,
    ridge: o.refit ? (o.ridge ?? 1e-3) : null,
    provider: o.session?.provider ?? 'cpu',
    threads: o.session?.threads ?? null,
  };
  if (o.tables) {
    checkTables(o.tables, loaded, dataset, extracted, candidates);
    return {
      model: loaded.model,
      modelSha256: loaded.sha256,
      dataSha256: dataset.sha256,
      ctx,
      extracted,
      candidates,
      latency: o.tables.latency,
      importance: o.tables.importance,
      options: { ...options, latencyBatch: o.tables.latency.batch, samples: o.tables.importance.samples, ridge: o.tables.importance.ridge, refit: o.tables.importance.ridge !== null },
      seconds,
    };
  }
  t = now();
  const latency = await measureLatencyTable(loaded.bytes, loaded.model, extracted, candidates, datasetInputShapes(loaded.model, dataset, latencyBatch), {
    batch: latencyBatch,
    ...(o.session ? { session: o.session } : {}),
    ...(o.latencyCache ? { cache: o.latencyCache } : {}),
    onProgress: (d, n) => o.onProgress?.('latency table', n > 0 ? d / n : 1, `${d}/${n} signatures`),
  });
  seconds.latency = now() - t;
  t = now();
  const imp = await measureImportanceTable(loaded.model, extracted, candidates, ctx.shapes, dataset, {
    skip: dominatedCandidates(candidates, latency, extracted.chain.layers.length),
    samples: options.samples,
    batchSize,
    refit: options.refit,
    ...(o.ridge !== undefined ? { ridge: o.ridge } : {}),
    ...(o.session ? { session: o.session } : {}),
    onProgress: (d, n, m) => o.onProgress?.('importance table', n > 0 ? d / n : 1, m),
  });
  seconds.importance = now() - t;
  seconds.refitSums = imp.seconds.refitSums;
  seconds.refitSolve = imp.seconds.refitSolve;
  return {
    model: loaded.model,
    modelSha256: loaded.sha256,
    dataSha256: dataset.sha256,
    ctx,
    extracted,
    candidates,
    latency,
    importance: imp.table,
    options,
    seconds,
  };
}

/** The tables of an analysis as one exportable document. */
export function tablesDocument(a: LayerMergeAnalysis): TablesDoc {
  return {
    format: 'strata-layermerge-tables',
    version: 1,
    modelSha256: a.modelSha256,
    dataSha256: a.dataSha256,
    chain: {
      layers: a.extracted.chain.layers.map((l) => l.id),
      residuals: a.extracted.chain.residuals.map((r) => `(${r.start}, ${r.end}] ${r.skip}`),
    },
    candidates: a.candidates.map(summarizeCandidate),
    latency: a.latency,
    importance: a.importance,
  };
}

function base64(values: Float32Array): string {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64');
}

export interface LayerMergePlanOptions {
  variant?: LayerMergeVariant;
  quantumMs?: number;
  /**
   * plan with the refit importances where they are better, and emit every changed merged block with
   * weights refit in sequence on the compressed network (see refit-plan.ts)
   */
  refit?: boolean;
  onProgress?: ProgressFn;
}

/** The plan for one budget; with `refit` the plan carries the refit weights of its merged blocks. */
export async function layerMergePlanFromAnalysis(
  a: LayerMergeAnalysis,
  budget: LayerMergeBudget,
  o: LayerMergePlanOptions & { dataset?: Dataset; session?: SessionOptions } = {},
): Promise<PlanDocument> {
  const quantumMs = o.quantumMs ?? 0.1;
  const variant = o.variant ?? 'layermerge';
  const sol = planLayerMerge({
    candidates: a.candidates,
    L: a.extracted.chain.layers.length,
    latency: a.latency,
    importance: a.importance,
    budget,
    quantumMs,
    variant,
    refit: o.refit === true,
  });
  const x = a.extracted;
  let fitted = new Map<string, RefitResult>();
  if (o.refit) {
    if (!o.dataset) throw new InvalidArgumentError('--refit', 'refitting the chosen blocks needs the calibration data');
    fitted = await refitSequentially(
      a.model,
      x,
      sol.blocks.map((b) => ({ i: b.candidate.i, j: b.candidate.j, kept: b.candidate.kept })),
      o.dataset,
      {
        samples: a.options.samples,
        batchSize: a.options.batchSize,
        ...(a.options.ridge !== null ? { ridge: a.options.ridge } : {}),
        ...(o.session ? { session: o.session } : {}),
        ...(o.onProgress ? { onProgress: (d: number, n: number) => o.onProgress!('refit', n > 0 ? d / n : 1, `${d}/${n} blocks`) } : {}),
      },
    );
  }
  const ids = x.chain.layers.map((l) => l.id);
  const blocks: PlanBlock[] = sol.blocks.map((b) => {
    const c = b.candidate;
    const imp = a.importance.entries[b.key]!;
    const unchanged = blockIsNoop(x, { i: c.i, j: c.j, kept: c.kept });
    const fit = fitted.get(`${c.i}-${c.j}`);
    const weights = fit?.spec;
    return {
      i: c.i,
      j: c.j,
      k: c.k,
      kh: c.kh,
      kw: c.kw,
      kept: c.kept,
      keptIds: c.kept.map((m) => ids[m]!),
      removedIds: c.removed.map((m) => ids[m]!),
      removedActivations: c.removedActivations.map((p) => x.activations[p]?.id).filter((v): v is string => v !== undefined),
      foldedSkips: c.foldedResiduals.map((n) => x.residuals[n]!.addNode),
      unchanged,
      latencyMs: b.latencyMs,
      importance: b.importance,
      fidelity: b.refit && imp.refit ? imp.refit.fidelity : imp.fidelity,
      ...(fit ? { fit: { before: fit.fidelityBefore, after: fit.fidelityAfter, solver: fit.solver } } : {}),
      refit: weights !== undefined,
      ...(weights ? { weights: { weight: base64(weights.weight), bias: base64(weights.bias) } } : {}),
    };
  });
  const remove = blocks.flatMap((b) => [...b.removedIds, ...b.removedActivations]);
  const importance: Record<string, number> = {};
  const unitLatencyMs: Record<string, number> = {};
  for (const b of sol.blocks) {
    importance[b.key] = b.importance;
    unitLatencyMs[b.key] = b.latencyMs;
  }
  return {
    format: 'strata-plan',
    version: 1,
    method: 'layermerge',
    budget: budget.kind === 'latency-ms' ? { kind: 'latency-ms', value: budget.value } : { kind: 'latency-fraction', value: budget.value },
    remove,
    predictedLatencyMs: sol.predictedLatencyMs,
    baselineLatencyMs: sol.baselineLatencyMs,
    latencyBatch: a.latency.batch,
    importanceLost: -sol.totalImportance,
    segments: [],
    importance,
    importanceMeasure: a.importance.description,
    unitLatencyMs,
    layermerge: {
      variant,
      quantumMs,
      restMs: sol.restMs,
      budgetMs: sol.budgetMs,
      refit: o.refit === true,
      maxKernel: a.options.maxKernel,
      chain: ids,
      blocks,
    },
    inputs: {
      modelSha256: a.modelSha256,
      dataSha256: a.dataSha256,
      options: { ...a.options, variant, quantumMs, refitApplied: o.refit === true },
    },
  };
}

export async function planLayerMergeForModel(
  loaded: LoadedModel,
  dataset: Dataset,
  o: LayerMergeAnalysisOptions & LayerMergePlanOptions & { budget: LayerMergeBudget },
): Promise<{ plan: PlanDocument; analysis: LayerMergeAnalysis }> {
  const analysis = await analyzeLayerMerge(loaded, dataset, o);
  const plan = await layerMergePlanFromAnalysis(analysis, o.budget, {
    ...(o.variant ? { variant: o.variant } : {}),
    ...(o.quantumMs !== undefined ? { quantumMs: o.quantumMs } : {}),
    ...(o.refit ? { refit: true } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    dataset,
    ...(o.session ? { session: o.session } : {}),
  });
  o.onProgress?.('done', 1);
  return { plan, analysis };
}
