/**
 * What a worker does with each kind of job: the same runtime steps the CLI commands take, with
 * inputs read from the artifact store and progress reported through `onProgress`.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BudgetInfeasibleError, InvalidArgumentError, UnreachableCaseError } from '../core/errors.js';
import { GraphIndex } from '../core/onnx/graph.js';
import { bindInputShapes, modelSignature } from '../core/onnx/io.js';
import type { PlanDocument } from '../core/plan/plan.js';
import type { SglpBudget } from '../core/sglp/plan.js';
import { checkOperators, discoverStructure } from '../core/structure/discover.js';
import { applyPlan, measureCompression } from '../runtime/analysis/compress.js';
import { datasetInputShapes, modelContext } from '../runtime/analysis/model-context.js';
import { analyzeSglp, segmentLayers, sglpPlanFromAnalysis, similarityOfLayers, type SglpAnalysis, type SimilarityStepOptions } from '../runtime/analysis/sglp.js';
import { openDataset, type Dataset } from '../runtime/dataset.js';
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
    case 'plan': {
      const loaded = model();
      const analysis = await sglpAnalysis(loaded, await dataset(spec.input.datasetSha256), spec.input, spec, session, ctx);
      const plan = sglpPlanFromAnalysis(analysis, spec.input.budget);
      ctx.onProgress('done', 1);
      return { kind: 'plan', plan };
    }
    case 'tradeoff': {
      const loaded = model();
      const analysis = await sglpAnalysis(loaded, await dataset(spec.input.datasetSha256), spec.input, spec, session, ctx);
      const evalData = spec.input.evalDatasetSha256 === null ? undefined : await dataset(spec.input.evalDatasetSha256);
      const points = await tradeoff(loaded, analysis, spec.input.budgets, evalData, artifacts, session, ctx);
      return { kind: 'tradeoff', baselineLatencyMs: analysis.latency.baseline.medianMs, latencyBatch: analysis.latencyBatch, points };
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

async function tradeoff(
  loaded: LoadedModel,
  analysis: SglpAnalysis,
  budgets: SglpBudget[],
  evalData: Dataset | undefined,
  artifacts: ArtifactStore,
  session: SessionOptions,
  ctx: ExecutionContext,
): Promise<TradeoffPoint[]> {
  const points: TradeoffPoint[] = [];
  // budgets that pick the same units share one compressed model and one measurement
  const measured = new Map<string, { artifact: ArtifactRef; report: CompressionReport }>();
  for (const [i, budget] of budgets.entries()) {
    const step: ProgressReporter = (phase, fraction, message) =>
      ctx.onProgress(`budget ${i + 1}/${budgets.length}: ${phase}`, fraction, message);
    let plan: PlanDocument;
    try {
      plan = sglpPlanFromAnalysis(analysis, budget);
    } catch (e) {
      if (e instanceof BudgetInfeasibleError || (e instanceof InvalidArgumentError && e.details.parameter === 'budget')) {
        points.push({ budget, feasible: false, reason: e.message });
        continue;
      }
      throw e;
    }
    const key = [...plan.remove].sort().join('\n');
    let m = measured.get(key);
    if (!m) {
      m = await compress(loaded, plan, evalData, artifacts, session, step);
      measured.set(key, m);
    }
    points.push({ budget, feasible: true, plan, artifact: m.artifact, report: { ...m.report, predictedRatio: plan.predictedLatencyMs / plan.baselineLatencyMs } });
  }
  return points;
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
  const result = await applyPlan(loaded, plan, evalData);
  const artifact = artifacts.put(result.bytes);
  const shapes = evalData
    ? datasetInputShapes(loaded.model, evalData, plan.latencyBatch)
    : bindInputShapes(modelSignature(loaded.model).inputs, new Map(), plan.latencyBatch);
  const m = await measureCompression(loaded.bytes, result.bytes, shapes, evalData, { session, onProgress });
  return {
    artifact,
    report: {
      removed: result.removed,
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
