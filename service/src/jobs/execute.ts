/**
 * What a worker does with each kind of job: the same runtime steps the CLI commands take, with
 * inputs read from the artifact store and progress reported through `onProgress`.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BudgetInfeasibleError, InvalidArgumentError, StrataError, UnreachableCaseError } from '../core/errors.js';
import type { TablesDoc } from '../core/layermerge/tables.js';
import { GraphIndex } from '../core/onnx/graph.js';
import { bindInputShapes, modelSignature } from '../core/onnx/io.js';
import type { PlanDocument } from '../core/plan/plan.js';
import type { SglpBudget } from '../core/sglp/plan.js';
import { checkOperators, discoverStructure } from '../core/structure/discover.js';
import { applyPlan, measureCompression, type CompressResult as AppliedPlan } from '../runtime/analysis/compress.js';
import { datasetInputShapes, modelContext } from '../runtime/analysis/model-context.js';
import { analyzeSglp, segmentLayers, sglpPlanFromAnalysis, similarityOfLayers, type SglpAnalysis, type SimilarityStepOptions } from '../runtime/analysis/sglp.js';
import { openDataset, type Dataset } from '../runtime/dataset.js';
import { analyzeLayerMerge, layerMergePlanFromAnalysis, tablesDocument, type LayerMergeAnalysis, type LayerMergeAnalysisOptions } from '../runtime/layermerge/analysis.js';
import { applyLayerMergePlan } from '../runtime/layermerge/apply.js';
import { loadModelFile, type LoadedModel } from '../runtime/model-file.js';
import type { SessionOptions } from '../runtime/session.js';
import { tensorShapes } from '../runtime/shape-probe.js';
import { ArtifactStore } from '../store/artifact-store.js';
import { writeFileAtomic } from '../store/atomic-file.js';
import { cacheKey } from './cache-key.js';
import type {
  ArtifactRef,
  CompressionReport,
  JobResult,
  JobSpec,
  LayerMergeAnalysisInput,
  LayerMergeTablesInput,
  MergedConv,
  RuntimeChoice,
  SglpAnalysisInput,
  SimilarityInput,
  StructureInput,
  TradeoffPoint,
} from './job.js';

export type ProgressReporter = (phase: string, fraction?: number, message?: string) => void;

export interface ExecutionContext {
  dataDir: string;
  onProgress: ProgressReporter;
}

export async function executeJob(spec: JobSpec, ctx: ExecutionContext): Promise<JobResult> {
  const artifacts = new ArtifactStore(ctx.dataDir);
  const session = sessionOptions(spec);
  const model = () => loadModelFile(artifacts.path(spec.input.modelSha256));
  const dataset = (sha256: string) => openDataset(artifacts.path(sha256));
  switch (spec.kind) {
    case 'structure':
      return structure(model(), spec.input, spec.input.datasetSha256 === null ? undefined : await dataset(spec.input.datasetSha256));
    case 'similarity': {
      const { units, similarity } = await similarityOfLayers(model(), await dataset(spec.input.datasetSha256), similarityOptions(spec.input, session, ctx));
      return {
        kind: 'similarity',
        units: units.map((u) => ({ id: u.id, kind: u.kind })),
        matrix: similarity.matrix,
        estimator: similarity.estimator,
        samples: similarity.samples,
        batches: similarity.batches,
        degenerate: similarity.degenerate,
      };
    }
    case 'segments': {
      const r = await segmentLayers(model(), await dataset(spec.input.datasetSha256), {
        ...similarityOptions(spec.input, session, ctx),
        cost: spec.input.cost,
        ...(spec.input.k === null ? {} : { k: spec.input.k }),
      });
      return {
        kind: 'segments',
        units: r.units.map((u) => ({ id: u.id, kind: u.kind, removable: u.removable })),
        matrix: r.similarity.matrix,
        segments: r.segments,
        k: r.k,
        kRule: r.kRule,
        cost: r.cost,
        costCurve: r.costCurve,
      };
    }
    case 'tables': {
      const analysis = await layerMergeAnalysis(model(), await dataset(spec.input.datasetSha256), spec.input, spec, session, ctx);
      ctx.onProgress('done', 1);
      return { kind: 'tables', tables: tablesDocument(analysis) };
    }
    case 'plan': {
      const input = spec.input;
      const data = await dataset(input.datasetSha256);
      let plan: PlanDocument;
      switch (input.method) {
        case 'sglp':
          plan = sglpPlanFromAnalysis(await sglpAnalysis(model(), data, input, spec, session, ctx), input.budget);
          break;
        case 'layermerge': {
          const analysis = await layerMergeAnalysis(model(), data, input, spec, session, ctx);
          plan = await layerMergePlanFromAnalysis(analysis, input.budget, layerMergePlanOptions(input, data, session, ctx.onProgress));
          break;
        }
        default:
          throw new UnreachableCaseError(input);
      }
      ctx.onProgress('done', 1);
      return { kind: 'plan', plan };
    }
    case 'tradeoff': {
      const input = spec.input;
      const loaded = model();
      const data = await dataset(input.datasetSha256);
      const evalData = input.evalDatasetSha256 === null ? undefined : await dataset(input.evalDatasetSha256);
      switch (input.method) {
        case 'sglp': {
          const analysis = await sglpAnalysis(loaded, data, input, spec, session, ctx);
          const points = await tradeoff(loaded, input.budgets, async (b) => sglpPlanFromAnalysis(analysis, b), evalData, artifacts, session, ctx);
          return { kind: 'tradeoff', baselineLatencyMs: analysis.latency.baseline.medianMs, latencyBatch: analysis.latencyBatch, points };
        }
        case 'layermerge': {
          const analysis = await layerMergeAnalysis(loaded, data, input, spec, session, ctx);
          const points = await tradeoff(
            loaded,
            input.budgets,
            (b, step) => layerMergePlanFromAnalysis(analysis, b, layerMergePlanOptions(input, data, session, step)),
            evalData,
            artifacts,
            session,
            ctx,
          );
          return { kind: 'tradeoff', baselineLatencyMs: analysis.latency.originalMs, latencyBatch: analysis.latency.batch, points };
        }
        default:
          throw new UnreachableCaseError(input);
      }
    }
    case 'compress': {
      const evalData = spec.input.evalDatasetSha256 === null ? undefined : await dataset(spec.input.evalDatasetSha256);
      const { artifact, report } = await compress(model(), spec.input.plan, evalData, artifacts, session, ctx.onProgress);
      return { kind: 'compress', artifact, report };
    }
    default:
      throw new UnreachableCaseError(spec);
  }
}

function sessionOptions(r: RuntimeChoice): SessionOptions {
  return { provider: r.provider, optimization: 'all', ...(r.threads === null ? {} : { threads: r.threads }) };
}

function similarityOptions(input: SimilarityInput, session: SessionOptions, ctx: ExecutionContext): SimilarityStepOptions {
  return {
    batchSize: input.batchSize,
    ...(input.samples === null ? {} : { samples: input.samples }),
    estimator: input.estimator,
    gram: 'onnxruntime',
    session,
    onProgress: ctx.onProgress,
  };
}

async function structure(loaded: LoadedModel, input: StructureInput, dataset: Dataset | undefined): Promise<JobResult> {
  // name unknown operators before onnxruntime sees the model and fails less helpfully
  checkOperators(new GraphIndex(loaded.model.graph ?? {}));
  if (dataset) {
    const ctx = await modelContext(loaded.model, dataset);
    return { kind: 'structure', units: ctx.structure.units, warnings: ctx.structure.warnings, inputShapes: shapeList(ctx.sampleShapes) };
  }
  const given = new Map(input.shapes.map((s) => [s.input, s.dims]));
  const inputShapes = bindInputShapes(modelSignature(loaded.model).inputs, given, 1);
  const s = discoverStructure(loaded.model, await tensorShapes(loaded.model, inputShapes));
  return { kind: 'structure', units: s.units, warnings: s.warnings, inputShapes: shapeList(inputShapes) };
}

function shapeList(m: Map<string, number[]>) {
  return [...m].map(([input, dims]) => ({ input, dims }));
}

/**
 * The SGLP analysis (similarity, segments, importance, per-unit latency) is what a plan costs;
 * it is kept in the data directory by its inputs, so a plan for another budget, or a sweep,
 * reuses it and its latency baseline instead of measuring again.
 */
async function sglpAnalysis(
  loaded: LoadedModel,
  dataset: Dataset,
  input: SglpAnalysisInput,
  runtime: RuntimeChoice,
  session: SessionOptions,
  ctx: ExecutionContext,
): Promise<SglpAnalysis> {
  const folder = join(ctx.dataDir, 'analyses');
  const key = cacheKey({
    method: input.method,
    model: input.modelSha256,
    data: input.datasetSha256,
    samples: input.samples,
    batchSize: input.batchSize,
    estimator: input.estimator,
    k: input.k,
    cost: input.cost,
    importance: input.importance,
    keepPerSegment: input.keepPerSegment,
    latencyBatch: input.latencyBatch,
    provider: runtime.provider,
    threads: runtime.threads,
  });
  const file = join(folder, `${key}.json`);
  if (existsSync(file)) {
    ctx.onProgress('analysis', 1, 'reused');
    return JSON.parse(readFileSync(file, 'utf8')) as SglpAnalysis;
  }
  const analysis = await analyzeSglp(loaded, dataset, {
    ...similarityOptions(input, session, ctx),
    cost: input.cost,
    ...(input.k === null ? {} : { k: input.k }),
    importance: input.importance,
    keepPerSegment: input.keepPerSegment,
    latencyBatch: input.latencyBatch,
  });
  mkdirSync(folder, { recursive: true });
  writeFileAtomic(file, JSON.stringify(analysis));
  return analysis;
}

/**
 * LayerMerge's tables (every candidate block's latency and importance) are what its plans cost,
 * as SGLP's analysis is for SGLP: kept in the data directory by their inputs, as the document
 * `strata tables -o` writes, and read back the way `strata plan --tables` reads one, so a plan for
 * another budget or variant, a sweep, or the tables query measures nothing again.
 */
async function layerMergeAnalysis(
  loaded: LoadedModel,
  dataset: Dataset,
  input: LayerMergeTablesInput,
  runtime: RuntimeChoice,
  session: SessionOptions,
  ctx: ExecutionContext,
): Promise<LayerMergeAnalysis> {
  const folder = join(ctx.dataDir, 'analyses');
  const key = cacheKey({
    method: 'layermerge',
    model: input.modelSha256,
    data: input.datasetSha256,
    samples: input.samples,
    batchSize: input.batchSize,
    latencyBatch: input.latencyBatch,
    maxKernel: input.maxKernel,
    refit: input.refit,
    ridge: input.ridge,
    provider: runtime.provider,
    threads: runtime.threads,
  });
  const file = join(folder, `${key}.json`);
  const options: LayerMergeAnalysisOptions = {
    ...(input.samples === null ? {} : { samples: input.samples }),
    batchSize: input.batchSize,
    latencyBatch: input.latencyBatch,
    maxKernel: input.maxKernel,
    refit: input.refit,
    ...(input.ridge === null ? {} : { ridge: input.ridge }),
    session,
    onProgress: ctx.onProgress,
  };
  if (existsSync(file)) {
    const tables = JSON.parse(readFileSync(file, 'utf8')) as TablesDoc;
    try {
      const analysis = await analyzeLayerMerge(loaded, dataset, { ...options, tables });
      ctx.onProgress('analysis', 1, 'reused');
      return analysis;
    } catch (e) {
      // tables kept by an earlier strata whose chain rules found other candidates: measure again
      // (and replace them) rather than fail a request that is valid today
      if (!(e instanceof StrataError && e.details.parameter === '--tables')) throw e;
    }
  }
  const analysis = await analyzeLayerMerge(loaded, dataset, options);
  mkdirSync(folder, { recursive: true });
  writeFileAtomic(file, JSON.stringify(tablesDocument(analysis)));
  return analysis;
}

function layerMergePlanOptions(input: LayerMergeAnalysisInput, dataset: Dataset, session: SessionOptions, onProgress: ProgressReporter) {
  // the calibration data is read only with refit: the chosen blocks are refit in sequence
  return { variant: input.variant, quantumMs: input.quantumMs, refit: input.refit, dataset, session, onProgress };
}

type Planner<B extends SglpBudget> = (budget: B, step: ProgressReporter) => Promise<PlanDocument>;

async function tradeoff<B extends SglpBudget>(
  loaded: LoadedModel,
  budgets: B[],
  planFor: Planner<B>,
  evalData: Dataset | undefined,
  artifacts: ArtifactStore,
  session: SessionOptions,
  ctx: ExecutionContext,
): Promise<TradeoffPoint[]> {
  const points: TradeoffPoint[] = [];
  // budgets whose plans change the model alike share one compressed model and one measurement
  const measured = new Map<string, { artifact: ArtifactRef; report: CompressionReport }>();
  for (const [i, budget] of budgets.entries()) {
    const step: ProgressReporter = (phase, fraction, message) =>
      ctx.onProgress(`budget ${i + 1}/${budgets.length}: ${phase}`, fraction, message);
    let plan: PlanDocument;
    try {
      plan = await planFor(budget, step);
    } catch (e) {
      if (e instanceof BudgetInfeasibleError || (e instanceof InvalidArgumentError && e.details.parameter === 'budget')) {
        points.push({ budget, feasible: false, reason: e.message });
        continue;
      }
      throw e;
    }
    const key = planEffect(plan);
    let m = measured.get(key);
    if (!m) {
      m = await compress(loaded, plan, evalData, artifacts, session, step);
      measured.set(key, m);
    }
    points.push({ budget, feasible: true, plan, artifact: m.artifact, report: { ...m.report, predictedRatio: plan.predictedLatencyMs / plan.baselineLatencyMs } });
  }
  return points;
}

/** What applying a plan does to the model, as a string: equal strings give the same compressed model. */
function planEffect(plan: PlanDocument): string {
  switch (plan.method) {
    case 'sglp':
      return [...plan.remove].sort().join('\n');
    case 'layermerge': {
      // the tiling, not the removed ids: merges differ where the same units go; refit weights are
      // fitted on the whole tiling in sequence, so the same tiling gets the same weights
      const lm = plan.layermerge!;
      return JSON.stringify({ refit: lm.refit, blocks: lm.blocks.map((b) => [b.i, b.j, b.kept]) });
    }
    default:
      throw new UnreachableCaseError(plan.method);
  }
}

function applyByMethod(loaded: LoadedModel, plan: PlanDocument, evalData: Dataset | undefined): Promise<AppliedPlan> {
  switch (plan.method) {
    case 'sglp':
      return applyPlan(loaded, plan, evalData);
    case 'layermerge':
      return applyLayerMergePlan(loaded, plan, evalData);
    default:
      throw new UnreachableCaseError(plan.method);
  }
}

/** The convolutions a LayerMerge plan puts in place of the blocks it changes. */
function mergedConvs(plan: PlanDocument): MergedConv[] {
  if (plan.method !== 'layermerge' || !plan.layermerge) return [];
  return plan.layermerge.blocks
    .filter((b) => !b.unchanged && b.k > 0)
    .map((b) => ({ i: b.i, j: b.j, from: b.keptIds, kh: b.kh, kw: b.kw, foldedSkips: b.foldedSkips, refit: b.refit }));
}

async function compress(
  loaded: LoadedModel,
  plan: PlanDocument,
  evalData: Dataset | undefined,
  artifacts: ArtifactStore,
  session: SessionOptions,
  onProgress: ProgressReporter,
): Promise<{ artifact: ArtifactRef; report: CompressionReport }> {
  onProgress('compressing');
  const result = await applyByMethod(loaded, plan, evalData);
  const artifact = artifacts.put(result.bytes);
  const shapes = evalData
    ? datasetInputShapes(loaded.model, evalData, plan.latencyBatch)
    : bindInputShapes(modelSignature(loaded.model).inputs, new Map(), plan.latencyBatch);
  const m = await measureCompression(loaded.bytes, result.bytes, shapes, evalData, { session, onProgress });
  return {
    artifact,
    report: {
      removed: result.removed,
      merged: mergedConvs(plan),
      removedNodes: result.removedNodes,
      parametersBefore: result.parametersBefore,
      parametersAfter: result.parametersAfter,
      latencyBatch: plan.latencyBatch,
      originalMs: m.latency.b.medianMs,
      compressedMs: m.latency.a.medianMs,
      latencyRatio: m.latencyRatio,
      latencyRatioP10: m.latency.ratioP10,
      latencyRatioP90: m.latency.ratioP90,
      speedup: m.speedup,
      predictedRatio: plan.predictedLatencyMs / plan.baselineLatencyMs,
      accuracyBefore: m.accuracyBefore,
      accuracyAfter: m.accuracyAfter,
      agreement: m.agreement,
      meanKl: m.meanKl,
      samples: m.samples,
    },
  };
}
