import type { Command } from 'commander';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { InvalidArgumentError, StrataError } from '../core/errors.js';
import { validatePlan } from '../core/plan/plan.js';
import { loadModelFile } from '../runtime/model-file.js';
import { openDataset } from '../runtime/dataset.js';
import { applyPlan, measureCompression } from '../runtime/analysis/compress.js';
import { applyLayerMergePlan } from '../runtime/layermerge/apply.js';
import { datasetInputShapes } from '../runtime/analysis/model-context.js';
import { bindInputShapes, modelSignature } from '../core/onnx/io.js';
import { printJson, Progress, type GlobalOptions } from './output.js';
import { addRuntimeOptions, sessionOptions, type RuntimeCliOptions } from './runtime-options.js';

interface CompressCliOptions extends GlobalOptions, RuntimeCliOptions {
  plan: string;
  output: string;
  data?: string;
}

export function registerCompress(program: Command, run: (fn: () => Promise<void>, o: GlobalOptions) => Promise<void>): void {
  addRuntimeOptions(program.command('compress'))
    .description('apply a plan: write the compressed model, then measure its latency (interleaved with the original) and accuracy')
    .argument('<model>', 'the .onnx file the plan was made for')
    .requiredOption('--plan <plan.json>', 'a plan from `strata plan -o`')
    .requiredOption('-o, --output <out.onnx>', 'where to write the compressed model')
    .option('--data <file>', 'labelled data to measure accuracy and agreement before and after')
    .option('--json', 'machine-readable output')
    .option('--quiet', 'no progress on stderr')
    .option('--debug', 'print stack traces')
    .action((path: string, o: CompressCliOptions) => run(() => compress(path, o), o));
}

async function compress(path: string, o: CompressCliOptions): Promise<void> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(o.plan, 'utf8'));
  } catch (e) {
    throw new InvalidArgumentError('--plan', `cannot read ${o.plan} as JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  const plan = validatePlan(raw);
  const progress = new Progress(o.quiet);
  const loaded = loadModelFile(path);
  const dataset = o.data ? await openDataset(o.data) : undefined;
  progress.update('compressing');
  const result = plan.method === 'layermerge' ? await applyLayerMergePlan(loaded, plan, dataset) : await applyPlan(loaded, plan, dataset);
  // write beside the target and rename: a reader never sees a half-written model
  const tmp = `${o.output}.partial`;
  try {
    writeFileSync(tmp, result.bytes);
    renameSync(tmp, o.output);
  } catch (e) {
    throw new StrataError('BAD_USER_INPUT', `cannot write ${o.output}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const shapes = dataset
    ? datasetInputShapes(loaded.model, dataset, plan.latencyBatch)
    : bindInputShapes(modelSignature(loaded.model).inputs, new Map(), plan.latencyBatch);
  const report = await measureCompression(loaded.bytes, result.bytes, shapes, dataset, {
    session: sessionOptions(o),
    onProgress: (p, f, m) => progress.update(p, f, m),
  });
  progress.done();
  const out = {
    model: path,
    output: o.output,
    removed: result.removed,
    removedNodes: result.removedNodes,
    parametersBefore: result.parametersBefore,
    parametersAfter: result.parametersAfter,
    latencyBatch: plan.latencyBatch,
    originalMs: report.latency.b.medianMs,
    compressedMs: report.latency.a.medianMs,
    latencyRatio: report.latencyRatio,
    latencyRatioP10: report.latency.ratioP10,
    latencyRatioP90: report.latency.ratioP90,
    speedup: report.speedup,
    predictedLatencyMs: plan.predictedLatencyMs,
    predictedRatio: plan.predictedLatencyMs / plan.baselineLatencyMs,
    // how far the plan's additive latency model was from the measured ratio (relative to the measured)
    predictionError: plan.predictedLatencyMs / plan.baselineLatencyMs / report.latencyRatio - 1,
    accuracyBefore: report.accuracyBefore,
    accuracyAfter: report.accuracyAfter,
    agreement: report.agreement,
    meanKl: report.meanKl,
    samples: report.samples,
  };
  if (o.json) {
    printJson(out);
    return;
  }
  const pct = (v: number | null) => (v === null ? 'n/a' : `${(v * 100).toFixed(2)}%`);
  process.stdout.write(
    [
      `wrote ${o.output}: removed ${result.removed.length} unit(s) (${result.removedNodes} nodes), parameters ${result.parametersBefore} → ${result.parametersAfter}`,
      `latency (batch ${plan.latencyBatch}): ${out.originalMs.toFixed(3)} → ${out.compressedMs.toFixed(3)} ms, ratio ${out.latencyRatio.toFixed(3)} (p10 ${out.latencyRatioP10.toFixed(3)}, p90 ${out.latencyRatioP90.toFixed(3)}), ${out.speedup.toFixed(2)}× speed-up; plan predicted ratio ${out.predictedRatio.toFixed(3)} (${(out.predictionError * 100).toFixed(1)}% off)`,
      dataset ? `accuracy ${pct(out.accuracyBefore)} → ${pct(out.accuracyAfter)}, agreement with the original ${pct(out.agreement)} on ${out.samples} samples` : 'no --data: accuracy not measured',
    ].join('\n') + '\n',
  );
}
