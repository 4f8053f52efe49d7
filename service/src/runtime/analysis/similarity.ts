import { InvalidArgumentError } from '../../core/errors.js';
import { addOutputs, cloneModel, freshName, insertNodes } from '../../core/onnx/edit.js';
import { encodeModel } from '../../core/onnx/codec.js';
import type { ModelProto, NodeProto } from '../../core/onnx/proto.js';
import { CkaAccumulator, type HsicEstimator } from '../../core/similarity/cka.js';
import { gramMatrix } from '../../core/similarity/gram.js';
import type { Dataset } from '../dataset.js';
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
  const backend = options.gram ?? 'onnxruntime';
  const tapped = cloneModel(model);
  const outputs: string[] = [];
  if (backend === 'onnxruntime') {
    const nodes: NodeProto[] = [];
    for (const t of targets) {
      const flat = freshName(tapped, `strata/flat/${t.id}`);
      const gram = freshName(tapped, `strata/gram/${t.id}`);
      nodes.push(
        { op_type: 'Flatten', name: flat, input: [t.tensor], output: [flat], attribute: [{ name: 'axis', type: 2, i: 1 }] },
        { op_type: 'Gemm', name: gram, input: [flat, flat], output: [gram], attribute: [{ name: 'transB', type: 2, i: 1 }] },
      );
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
    if (binding.fixedBatch !== undefined && binding.fixedBatch !== batchSize) {
      throw new InvalidArgumentError('--batch', `the model fixes its batch size at ${binding.fixedBatch}; use --batch ${binding.fixedBatch}`);
    }
    const total = Math.min(dataset.samples, options.samples ?? dataset.samples);
    const acc = new CkaAccumulator(
      targets.map((t) => t.id),
      { estimator },
    );
    let seen = 0;
    for await (const batch of dataset.batches(batchSize, { limit: total, binding })) {
      // a short final batch below the estimator's minimum carries too little to estimate HSIC
      if (batch.count < minimum) break;
      const result = await session.run(batchFeeds(batch, binding), outputs);
      const n = batch.count;
      const grams = outputs.map((name) => {
        const t = result[name]!;
        const data = t.data as Float32Array;
        if (backend === 'onnxruntime') return Float64Array.from(data);
        return gramMatrix(data, n, data.length / n);
      });
      acc.addBatch(grams, n);
      seen += n;
      options.onProgress?.(seen, total);
    }
    if (acc.batches === 0) {
      throw new InvalidArgumentError('--samples', `the data set gives no batch of at least ${minimum} samples`);
    }
    const m = acc.matrix();
    return { units: m.units, matrix: m.matrix, estimator, samples: seen, batches: acc.batches, degenerate: acc.degenerateUnits?.() ?? [] };
  } finally {
    await session.release();
  }
}
