import { InvalidArgumentError } from '../../core/errors.js';
import { addOutputs, cloneModel, freshName, insertNodes } from '../../core/onnx/edit.js';
import { encodeModel } from '../../core/onnx/codec.js';
import type { ModelProto, NodeProto } from '../../core/onnx/proto.js';
import { CkaAccumulator, type HsicEstimator } from '../../core/similarity/cka.js';
import { gramMatrix } from '../../core/similarity/gram.js';
import type { Dataset } from '../dataset.js';
import { modelSignature } from '../../core/onnx/io.js';
import { int64ToNumber } from '../../core/onnx/proto.js';
import { createSession, type SessionOptions } from '../session.js';
import { batchFeeds } from './feeds.js';

/** Where the per-batch Gram matrices X·Xᵀ are computed. */
export type GramBackend = 'onnxruntime' | 'typed-array';

export interface SimilarityOptions {
  batchSize?: number;
  /** Use at most this many samples, in data order. */
  samples?: number;
  estimator?: HsicEstimator;
  gram?: GramBackend;
  session?: SessionOptions;
  onProgress?(done: number, total: number): void;
}

export interface SimilarityResult {
  units: string[];
  matrix: number[][];
  estimator: HsicEstimator;
  samples: number;
  batches: number;
  /** units whose representation was constant over the data */
  degenerate: string[];
}

export interface SimilarityTarget {
  id: string;
  /** the tensor whose value represents the unit */
  tensor: string;
}

/**
 * Minibatch CKA between units over a data set. Batches stream in data order; per batch only the
 * L Gram matrices (n×n each) leave the runtime, and the L×L HSIC sums are all that is kept.
 *
 * With the 'onnxruntime' backend each tapped tensor gets Flatten → Gemm(X, Xᵀ) nodes appended,
 * so the Gram products run in onnxruntime's multithreaded GEMM next to the forward pass and the
 * activations themselves never cross into JavaScript. The 'typed-array' backend copies the
 * activations out and multiplies in float64 here (bench/similarity.bench.ts compares the two).
 */
export async function similarityAnalysis(
  model: ModelProto,
  targets: SimilarityTarget[],
  dataset: Dataset,
  options: SimilarityOptions = {},
): Promise<SimilarityResult> {
  const estimator = options.estimator ?? 'unbiased';
  const batchSize = options.batchSize ?? 64;
  const minimum = estimator === 'unbiased' ? 4 : 2;
  if (!Number.isInteger(batchSize) || batchSize < minimum) {
    throw new InvalidArgumentError('--batch', `the ${estimator} CKA estimator needs batches of at least ${minimum} samples, got ${batchSize}`);
  }
  if (targets.length === 0) throw new InvalidArgumentError('units', 'no units to compare');
  const sig = modelSignature(model);
  const binding0 = dataset.validateAgainst(sig.inputs.map((i) => ({ name: i.name, dtype: i.dtype, dims: i.dims.map((d) => d ?? '?') })));
  // A model exported with a fixed batch size runs that many samples at a time; a CKA batch is then
  // assembled from several runs, which needs the activations themselves (the typed-array path).
  const runBatch = binding0.fixedBatch ?? batchSize;
  const group = binding0.fixedBatch === undefined ? 1 : Math.max(1, Math.ceil(batchSize / binding0.fixedBatch));
  const backend: GramBackend = group > 1 || binding0.fixedBatch !== undefined && binding0.fixedBatch !== batchSize ? 'typed-array' : (options.gram ?? 'onnxruntime');
  const opset = onnxOpset(model);
  const tapped = cloneModel(model);
  const outputs: string[] = [];
  if (backend === 'onnxruntime') {
    const nodes: NodeProto[] = [];
    for (const t of targets) {
      const flat = freshName(tapped, `strata/flat/${t.id}`);
      const gram = freshName(tapped, `strata/gram/${t.id}`);
      nodes.push({ op_type: 'Flatten', name: flat, input: [t.tensor], output: [flat], attribute: [{ name: 'axis', type: 2, i: 1 }] });
      if (opset >= 11) {
        nodes.push({ op_type: 'Gemm', name: gram, input: [flat, flat], output: [gram], attribute: [{ name: 'transB', type: 2, i: 1 }] });
      } else {
        // Gemm's bias input is optional only from opset 11
        const flatT = freshName(tapped, `strata/flatT/${t.id}`);
        nodes.push(
          { op_type: 'Transpose', name: flatT, input: [flat], output: [flatT] },
          { op_type: 'MatMul', name: gram, input: [flat, flatT], output: [gram] },
        );
      }
      outputs.push(gram);
    }
    insertNodes(tapped, nodes);
  } else {
    outputs.push(...targets.map((t) => t.tensor));
  }
  addOutputs(tapped, [...new Set(outputs)]);
  const session = await createSession(encodeModel(tapped), { optimization: 'all', ...options.session });
  try {
    const binding = dataset.validateAgainst(session.inputs);
    const total = Math.min(dataset.samples, options.samples ?? dataset.samples);
    const acc = new CkaAccumulator(
      targets.map((t) => t.id),
      { estimator },
    );
    let seen = 0;
    let pending: Float32Array[][] = [];
    let pendingCount = 0;
    const flush = () => {
      const n = pendingCount;
      const grams = outputs.map((_, k) => {
        const parts = pending.map((p) => p[k]!);
        const data = parts.length === 1 ? parts[0]! : concat(parts);
        return gramMatrix(data, n, data.length / n);
      });
      acc.addBatch(grams, n);
      seen += n;
      pending = [];
      pendingCount = 0;
      options.onProgress?.(seen, total);
    };
    for await (const batch of dataset.batches(runBatch, { limit: total, binding })) {
      // a fixed-batch model cannot run a short final batch; a short CKA batch below the
      // estimator's minimum carries too little to estimate HSIC
      if (binding.fixedBatch !== undefined && batch.count < binding.fixedBatch) break;
      const result = await session.run(batchFeeds(batch, binding), outputs);
      if (backend === 'onnxruntime') {
        if (batch.count < minimum) break;
        acc.addBatch(
          outputs.map((name) => Float64Array.from(result[name]!.data as Float32Array)),
          batch.count,
        );
        seen += batch.count;
        options.onProgress?.(seen, total);
        continue;
      }
      pending.push(outputs.map((name) => result[name]!.data as Float32Array));
      pendingCount += batch.count;
      if (pending.length >= group) {
        if (pendingCount < minimum) {
          pending = [];
          pendingCount = 0;
          break;
        }
        flush();
      }
    }
    if (pendingCount >= minimum) flush();
    if (acc.batches === 0) {
      throw new InvalidArgumentError('--samples', `the data set gives no batch of at least ${minimum} samples`);
    }
    const m = acc.matrix();
    return { units: m.units, matrix: m.matrix, estimator, samples: seen, batches: acc.batches, degenerate: acc.degenerateUnits?.() ?? [] };
  } finally {
    await session.release();
  }
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function onnxOpset(model: ModelProto): number {
  const entry = (model.opset_import ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return entry ? int64ToNumber(entry.version) : 1;
}
