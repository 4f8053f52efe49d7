import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';
import { IMPORTANCE_MEASURES, type ImportanceMeasure } from '../core/importance/measures.js';
import { parseBudget } from '../core/plan/plan.js';
import { loadModelFile } from '../runtime/model-file.js';
import { openDataset } from '../runtime/dataset.js';
import { planSglpForModel } from '../runtime/analysis/sglp.js';
import { planLayerMerge } from './tables.js';
import { printJson, Progress, type GlobalOptions } from './output.js';
import { addRuntimeOptions, positiveInt } from './runtime-options.js';
import { addAnalysisOptions, analysisOptions, type AnalysisCliOptions } from './analysis-options.js';

interface PlanCliOptions extends GlobalOptions, AnalysisCliOptions {
  method: string;
  budgetMs?: string;
  budget?: string;
  remove?: string;
  k?: string;
  cost: string;
  importance: string;
  keep: string;
  latencyBatch: string;
  output?: string;
  variant: string;
  quantum: string;
  /** `--refit` / `--no-refit`: undefined (on) unless one is given */
  refit?: boolean;
  maxKernel: string;
  ridge?: string;
  tables?: string;
}

export function registerPlan(program: Command, run: (fn: () => Promise<void>, o: GlobalOptions) => Promise<void>): void {
  addRuntimeOptions(addAnalysisOptions(program.command('plan')))
    .description('compute a prune plan under a budget (SGLP: segments by CKA, least important layers removed inside each; LayerMerge: activations and convs removed so convs merge, exact DP over measured tables)')
    .argument('<model>', 'an .onnx file')
    .option('--method <name>', 'planning method: sglp or layermerge', 'sglp')
    .option('--budget-ms <ms>', 'target latency in milliseconds (at --latency-batch)')
    .option('--budget <fraction>', 'target latency as a fraction of the measured original, e.g. 0.7')
    .option('--remove <n>', 'remove this many layers')
    .option('--k <k>', 'number of segments (default: elbow of the cost curve)')
    .option('--cost <name>', 'segment cost: fisher or dissimilarity', 'fisher')
    .option('--importance <measure>', `importance measure: ${IMPORTANCE_MEASURES.join(', ')}`, 'ablation')
    .option('--keep <n>', 'layers each segment keeps at least', '1')
    .option('--latency-batch <n>', 'batch size latency is measured and budgeted at', '32')
    .option('--variant <name>', 'LayerMerge: layermerge, layer-only or merge-only', 'layermerge')
    .option('--quantum <ms>', 'LayerMerge: latency quantum of the DP, in ms', '0.1')
    // on by default: removing activations changes what a block computes and the exact merge of its convs
    // cannot make up for it, so plans without refit lose far more accuracy (bench/results/layermerge.md)
    .option('--refit', 'LayerMerge: refit merged convolutions by least squares on the calibration data; on by default, as the exact merge alone loses far more accuracy')
    .option('--no-refit', 'LayerMerge: keep the exact merge, not refit (quicker analysis, much less accurate plans)')
    .option('--max-kernel <k>', 'LayerMerge: largest merged kernel considered', '7')
    .option('--ridge <r>', 'LayerMerge: ridge of the refit, relative to the mean Gram diagonal', '0.001')
    .option('--tables <tables.json>', 'LayerMerge: use tables from `strata tables -o` instead of measuring')
    .option('-o, --output <plan.json>', 'write the plan here')
    .option('--json', 'machine-readable output')
    .option('--quiet', 'no progress on stderr')
    .option('--debug', 'print stack traces')
    .action((path: string, o: PlanCliOptions) => run(() => plan(path, o), o));
}

async function plan(path: string, o: PlanCliOptions): Promise<void> {
  if (o.method === 'layermerge') return planLayerMerge(path, o);
  if (o.method !== 'sglp') {
    throw new InvalidArgumentError('--method', `"${o.method}" is not available; this strata plans with: sglp, layermerge`);
  }
  if (!IMPORTANCE_MEASURES.includes(o.importance as ImportanceMeasure)) {
    throw new InvalidArgumentError('--importance', `must be one of ${IMPORTANCE_MEASURES.join(', ')}, got "${o.importance}"`);
  }
  if (o.cost !== 'fisher' && o.cost !== 'dissimilarity') throw new InvalidArgumentError('--cost', `must be fisher or dissimilarity, got "${o.cost}"`);
  const budget = parseBudget({
    ...(o.budgetMs === undefined ? {} : { budgetMs: o.budgetMs }),
    ...(o.budget === undefined ? {} : { budget: o.budget }),
    ...(o.remove === undefined ? {} : { remove: o.remove }),
  });
  const progress = new Progress(o.quiet);
  const opts = analysisOptions(o, progress);
  const keep = Number(o.keep);
  if (!Number.isSafeInteger(keep) || keep < 0) throw new InvalidArgumentError('--keep', `must be a whole number ≥ 0, got "${o.keep}"`);
  const loaded = loadModelFile(path);
  const dataset = await openDataset(o.data);
  const doc = await planSglpForModel(loaded, dataset, {
    ...opts,
    budget,
    cost: o.cost,
    importance: o.importance as ImportanceMeasure,
    keepPerSegment: keep,
    latencyBatch: positiveInt('--latency-batch', o.latencyBatch),
    ...(o.k === undefined ? {} : { k: positiveInt('--k', o.k) }),
  });
  progress.done();
  if (o.output) writeFileSync(o.output, `${JSON.stringify(doc, null, 2)}\n`);
  if (o.json) {
    printJson(doc);
    return;
  }
  const lines = [
    `SGLP plan for ${path}: remove ${doc.remove.length} layer(s): ${doc.remove.join(', ') || '(none)'}`,
    `predicted latency ${doc.predictedLatencyMs.toFixed(3)} ms of ${doc.baselineLatencyMs.toFixed(3)} ms measured (batch ${doc.latencyBatch}, ×${(doc.baselineLatencyMs / doc.predictedLatencyMs).toFixed(2)} predicted speed-up)`,
    `importance lost ${doc.importanceLost.toExponential(3)} (${doc.importanceMeasure})`,
    `segments: ${doc.segments.map((s) => `[${s.join(' ')}]`).join(' ')}`,
  ];
  if (o.output) lines.push(`plan written to ${o.output}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
