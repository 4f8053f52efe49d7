import { StrataError } from '../../core/errors.js';
import { removeUnits } from '../../core/compress/remove-units.js';
import { encodeModel } from '../../core/onnx/codec.js';
import { bindInputShapes, modelSignature } from '../../core/onnx/io.js';
import type { PlanDocument } from '../../core/plan/plan.js';
import { discoverStructure } from '../../core/structure/discover.js';
import type { Dataset } from '../dataset.js';
import { evaluate } from '../evaluate.js';
import { compareLatency, randomFeeds, type LatencyComparison } from '../latency.js';
import type { LoadedModel } from '../model-file.js';
import { createSession, type SessionOptions } from '../session.js';
import { tensorShapes } from '../shape-probe.js';
import { datasetInputShapes } from './model-context.js';
import type { ProgressFn } from './sglp.js';

export interface CompressResult {
  bytes: Uint8Array;
  removed: string[];
  removedNodes: number;
  removedInitializers: number;
  parametersBefore: number;
  parametersAfter: number;
}

/** Applies a plan to the model it was made for; a plan for another model is refused. */
export async function applyPlan(loaded: LoadedModel, plan: PlanDocument, dataset?: Dataset): Promise<CompressResult> {
  if (plan.inputs.modelSha256 !== loaded.sha256) {
    throw new StrataError(
      'BAD_USER_INPUT',
      `the plan was made for another model (sha256 ${plan.inputs.modelSha256.slice(0, 12)}…, this one is ${loaded.sha256.slice(0, 12)}…)`,
    );
  }
  const inputShapes = dataset ? datasetInputShapes(loaded.model, dataset, 1) : bindInputShapes(modelSignature(loaded.model).inputs, new Map(), 1);
  const { units } = discoverStructure(loaded.model, await tensorShapes(loaded.model, inputShapes));
  const byId = new Map(units.map((u) => [u.id, u]));
  const chosen = plan.remove.map((id) => {
    const u = byId.get(id);
    if (!u) throw new StrataError('NOT_FOUND', `the plan removes unit "${id}", which this model does not have`);
    return u;
  });
  const r = removeUnits(loaded.model, chosen);
  const count = (m: typeof loaded.model) =>
    (m.graph?.initializer ?? []).reduce((a, t) => a + (t.dims ?? []).reduce<number>((x, d) => x * Number(d), 1), 0);
  return {
    bytes: encodeModel(r.model),
    removed: plan.remove,
    removedNodes: r.removedNodes,
    removedInitializers: r.removedInitializers,
    parametersBefore: count(loaded.model),
    parametersAfter: count(r.model),
  };
}

export interface CompressionReport {
  latency: LatencyComparison;
  /** compressed ÷ original median per-pair ratio; below 1 is faster */
  latencyRatio: number;
  speedup: number;
  accuracyBefore: number | null;
  accuracyAfter: number | null;
  agreement: number | null;
  meanKl: number | null;
  samples: number | null;
}

/** Measures a compressed model against its original: interleaved latency, accuracy and agreement. */
export async function measureCompression(
  originalBytes: Uint8Array,
  compressedBytes: Uint8Array,
  latencyShapes: Map<string, number[]>,
  dataset: Dataset | undefined,
  o: { session?: SessionOptions; pairs?: number; onProgress?: ProgressFn } = {},
): Promise<CompressionReport> {
  const original = await createSession(originalBytes, { optimization: 'all', ...o.session });
  const compressed = await createSession(compressedBytes, { optimization: 'all', ...o.session });
  try {
    o.onProgress?.('latency');
    const feeds = (s: typeof original) => randomFeeds(s.inputs.map((i) => ({ ...i, dims: latencyShapes.get(i.name) ?? i.dims })));
    const latency = await compareLatency(compressed, original, feeds(compressed), feeds(original), { warmup: 10, pairs: o.pairs ?? 40 });
    let accuracyBefore: number | null = null;
    let accuracyAfter: number | null = null;
    let agreement: number | null = null;
    let meanKl: number | null = null;
    let samples: number | null = null;
    if (dataset) {
      o.onProgress?.('evaluating');
      const before = await evaluate(original, dataset, {});
      const after = await evaluate(compressed, dataset, {
        reference: original,
        onProgress: (d, t) => o.onProgress?.('evaluating', d / t),
      });
      accuracyBefore = before.accuracy ?? null;
      accuracyAfter = after.accuracy ?? null;
      agreement = after.agreement ?? null;
      meanKl = after.meanKl ?? null;
      samples = after.samples;
    }
    return { latency, latencyRatio: latency.ratio, speedup: 1 / latency.ratio, accuracyBefore, accuracyAfter, agreement, meanKl, samples };
  } finally {
    await original.release();
    await compressed.release();
  }
}
