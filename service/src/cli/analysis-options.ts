import type { Command } from 'commander';
import { InvalidArgumentError } from '../core/errors.js';
import type { SimilarityStepOptions } from '../runtime/analysis/sglp.js';
import { positiveInt, sessionOptions, type RuntimeCliOptions } from './runtime-options.js';
import type { Progress } from './output.js';

export interface AnalysisCliOptions extends RuntimeCliOptions {
  data: string;
  samples?: string;
  batch: string;
  estimator: string;
  gram: string;
}

/** --data, --samples, --batch, --estimator, --gram: the options of everything built on CKA. */
export function addAnalysisOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--data <file>', 'calibration data: .npz with one array per model input (and optional labels) or a .npy')
    .option('--samples <n>', 'use the first n samples (default: all)')
    .option('--batch <n>', 'batch size; CKA is estimated per batch and accumulated, in data order', '64')
    .option('--estimator <name>', 'CKA estimator: unbiased (minibatch HSIC₁) or biased', 'unbiased')
    .option('--gram <where>', 'compute Gram matrices in onnxruntime or typed-array', 'onnxruntime');
}

export function analysisOptions(o: AnalysisCliOptions, progress: Progress): SimilarityStepOptions {
  if (o.estimator !== 'unbiased' && o.estimator !== 'biased') {
    throw new InvalidArgumentError('--estimator', `must be unbiased or biased, got "${o.estimator}"`);
  }
  if (o.gram !== 'onnxruntime' && o.gram !== 'typed-array') {
    throw new InvalidArgumentError('--gram', `must be onnxruntime or typed-array, got "${o.gram}"`);
  }
  return {
    batchSize: positiveInt('--batch', o.batch),
    ...(o.samples === undefined ? {} : { samples: positiveInt('--samples', o.samples) }),
    estimator: o.estimator,
    gram: o.gram,
    session: sessionOptions(o),
    onProgress: (phase, fraction, message) => progress.update(phase, fraction, message),
  };
}
