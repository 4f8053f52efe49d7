import type { Command } from 'commander';
import { loadModelFile } from '../runtime/model-file.js';
import { createSession } from '../runtime/session.js';
import { openDataset } from '../runtime/dataset.js';
import { evaluate } from '../runtime/evaluate.js';
import { printJson, Progress, type GlobalOptions } from './output.js';
import { addRuntimeOptions, positiveInt, sessionOptions, type RuntimeCliOptions } from './runtime-options.js';

interface EvaluateCliOptions extends GlobalOptions, RuntimeCliOptions {
  data: string;
  reference?: string;
  batch: string;
  limit?: string;
}

export function registerEvaluate(program: Command, run: (fn: () => Promise<void>, o: GlobalOptions) => Promise<void>): void {
  addRuntimeOptions(
    program
      .command('evaluate')
      .description('top-1 accuracy on a labelled .npz/.npy data set; with --reference, agreement and divergence from another model')
      .argument('<model>', 'an .onnx file')
      .requiredOption('--data <file>', '.npz with one array per model input (named after it) and optional `labels`, or a lone .npy')
      .option('--reference <model>', 'the original model to compare predictions with')
      .option('--batch <n>', 'batch size', '64')
      .option('--limit <n>', 'evaluate only the first n samples'),
  )
    .option('--json', 'machine-readable output')
    .option('--quiet', 'no progress on stderr')
    .option('--debug', 'print stack traces')
    .action((path: string, o: EvaluateCliOptions) => run(() => runEvaluate(path, o), o));
}

async function runEvaluate(path: string, o: EvaluateCliOptions): Promise<void> {
  const batchSize = positiveInt('--batch', o.batch);
  const limit = o.limit === undefined ? undefined : positiveInt('--limit', o.limit);
  const progress = new Progress(o.quiet);
  const model = loadModelFile(path);
  const dataset = await openDataset(o.data);
  const opts = sessionOptions(o);
  const session = await createSession(model.bytes, opts);
  const reference = o.reference ? await createSession(loadModelFile(o.reference).bytes, opts) : undefined;
  try {
    const r = await evaluate(session, dataset, {
      batchSize,
      ...(limit === undefined ? {} : { limit }),
      ...(reference ? { reference } : {}),
      onProgress: (done, total) => progress.update('evaluating', total > 0 ? done / total : undefined, `${done}/${total}`),
    });
    progress.done();
    const result = {
      model: path,
      data: o.data,
      dataSha256: dataset.sha256,
      reference: o.reference ?? null,
      samples: r.samples,
      accuracy: r.accuracy ?? null,
      agreement: r.agreement ?? null,
      meanKl: r.meanKl ?? null,
      relativeError: r.relativeError ?? null,
      output: r.outputName,
    };
    if (o.json) {
      printJson(result);
      return;
    }
    const parts = [`${r.samples} samples`];
    if (r.accuracy !== undefined) parts.push(`accuracy ${(r.accuracy * 100).toFixed(2)}%`);
    if (r.agreement !== undefined) parts.push(`agreement ${(r.agreement * 100).toFixed(2)}%`);
    if (r.meanKl !== undefined) parts.push(`mean KL ${r.meanKl.toExponential(3)}`);
    if (r.relativeError !== undefined) parts.push(`relative error ${r.relativeError.toExponential(3)}`);
    if (r.accuracy === undefined && r.agreement === undefined) parts.push('(no labels and no --reference: nothing to score)');
    process.stdout.write(`${path}: ${parts.join(', ')}\n`);
  } finally {
    await session.release();
    await reference?.release();
  }
}
