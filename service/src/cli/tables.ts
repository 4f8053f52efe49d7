/**
 * LayerMerge on the command line: `strata tables` measures and exports the latency and importance
 * tables; `strata plan --method layermerge` (registered with the other plan options in plan.ts) lands
 * in planLayerMerge below. Both share how the analysis options are read.
 */
import type { Command } from 'commander';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';
import type { LayerMergeVariant } from '../core/layermerge/dp.js';
import { type LayerMergeBudget, type TablesDoc, entryLatency } from '../core/layermerge/tables.js';
import { parseBudget } from '../core/plan/plan.js';
import { openDataset } from '../runtime/dataset.js';
import { type LayerMergeAnalysisOptions, analyzeLayerMerge, planLayerMergeForModel, tablesDocument } from '../runtime/layermerge/analysis.js';
import { LatencyCache } from '../runtime/layermerge/latency-table.js';
import { loadModelFile } from '../runtime/model-file.js';
import { printJson, Progress, table, type GlobalOptions } from './output.js';
import { addRuntimeOptions, positiveInt, sessionOptions, type RuntimeCliOptions } from './runtime-options.js';

interface LayerMergeCliOptions extends GlobalOptions, RuntimeCliOptions {
  data: string;
  samples?: string;
  batch: string;
  latencyBatch: string;
  maxKernel: string;
  /** `--refit` / `--no-refit`: commander leaves it undefined when neither is given, which means on */
  refit?: boolean;
  ridge?: string;
}

const VARIANTS: readonly LayerMergeVariant[] = ['layermerge', 'layer-only', 'merge-only'];

function positiveNumber(name: string, text: string): number {
  const v = Number(text);
  if (!(v > 0) || !Number.isFinite(v)) throw new InvalidArgumentError(name, `must be a positive number, got "${text}"`);
  return v;
}

function analysisOptions(o: LayerMergeCliOptions, progress: Progress): LayerMergeAnalysisOptions {
  const ridge = o.ridge === undefined ? undefined : Number(o.ridge);
  if (ridge !== undefined && !(ridge >= 0 && Number.isFinite(ridge))) throw new InvalidArgumentError('--ridge', `must be a number ≥ 0, got "${o.ridge}"`);
  return {
    batchSize: positiveInt('--batch', o.batch),
    latencyBatch: positiveInt('--latency-batch', o.latencyBatch),
    maxKernel: positiveInt('--max-kernel', o.maxKernel),
    ...(o.samples === undefined ? {} : { samples: positiveInt('--samples', o.samples) }),
    refit: o.refit !== false,
    ...(ridge === undefined ? {} : { ridge }),
    session: sessionOptions(o),
    onProgress: (phase, fraction, message) => progress.update(phase, fraction, message),
  };
}

export function registerTables(program: Command, run: (fn: () => Promise<void>, o: GlobalOptions) => Promise<void>): void {
  addRuntimeOptions(program.command('tables'))
    .description("measure LayerMerge's tables: every candidate block's standalone latency and its importance on calibration data")
    .argument('<model>', 'an .onnx file')
    .requiredOption('--data <file>', 'calibration data: .npz with one array per model input (and optional labels) or a .npy')
    .option('--samples <n>', 'use the first n samples (default: all)')
    .option('--batch <n>', 'batch size of the importance passes', '64')
    .option('--latency-batch <n>', 'batch size latencies are measured at', '32')
    .option('--max-kernel <k>', 'largest merged kernel considered', '7')
    // on by default, as in `plan`: the refit scores are what a refit plan is chosen by
    .option('--refit', 'also refit merged convolutions by least squares and score the refits; on by default, as plans without refit lose far more accuracy')
    .option('--no-refit', 'score the exact merges only (quicker)')
    .option('--ridge <r>', 'ridge of the refit, relative to the mean Gram diagonal', '0.001')
    .option('--latency-cache <file>', 'reuse signature timings from this file (same provider, threads and host) and add the new ones to it')
    .option('-o, --output <tables.json>', 'write the tables here (`strata plan --method layermerge --tables` reads them)')
    .option('--json', 'machine-readable output')
    .option('--quiet', 'no progress on stderr')
    .option('--debug', 'print stack traces')
    .action((path: string, o: TablesCliOptions) => run(() => tables(path, o), o));
}

interface TablesCliOptions extends LayerMergeCliOptions {
  output?: string;
  latencyCache?: string;
}

async function tables(path: string, o: TablesCliOptions): Promise<void> {
  const progress = new Progress(o.quiet);
  const opts = analysisOptions(o, progress);
  let cache: LatencyCache | undefined;
  if (o.latencyCache) {
    cache = new LatencyCache();
    if (existsSync(o.latencyCache)) {
      try {
        cache = LatencyCache.fromJSON(JSON.parse(readFileSync(o.latencyCache, 'utf8')));
      } catch (e) {
        throw new InvalidArgumentError('--latency-cache', `cannot read ${o.latencyCache}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }
  const loaded = loadModelFile(path);
  const dataset = await openDataset(o.data);
  const a = await analyzeLayerMerge(loaded, dataset, { ...opts, ...(cache ? { latencyCache: cache } : {}) });
  progress.done();
  if (cache && o.latencyCache) writeFileSync(o.latencyCache, `${JSON.stringify(cache)}\n`);
  const doc = tablesDocument(a);
  if (o.output) writeFileSync(o.output, `${JSON.stringify(doc)}\n`);
  if (o.json) {
    printJson({ ...doc, seconds: a.seconds });
    return;
  }
  const rows = doc.candidates.map((c) => {
    const ms = entryLatency(doc.latency, c.key);
    const imp = doc.importance.entries[c.key];
    if (!imp) return [c.key, c.k, ms.toFixed(3), 'dominated', '', '', ''];
    return [
      c.key,
      c.k,
      ms.toFixed(3),
      imp.deltaLoss.toFixed(4),
      imp.fidelity.toFixed(3),
      imp.refit ? imp.refit.deltaLoss.toFixed(4) : '',
      imp.refit ? imp.refit.fidelity.toFixed(3) : '',
    ];
  });
  process.stdout.write(
    [
      `${path}: chain of ${doc.chain.layers.length} convolutions, ${doc.chain.residuals.length} residual skips, ${doc.candidates.length} candidate blocks`,
      `original ${doc.latency.originalMs.toFixed(3)} ms at batch ${doc.latency.batch} (rest of the network ${doc.latency.restMs.toFixed(3)} ms); ${doc.importance.description}, ${doc.importance.samples} samples`,
      table(rows, ['block', 'k', 'ms', 'Δloss', 'fidelity', 'Δloss refit', 'fidelity refit']),
      ...(o.output ? [`tables written to ${o.output}`] : []),
    ].join('\n') + '\n',
  );
}

interface PlanCliOptions extends LayerMergeCliOptions {
  budgetMs?: string;
  budget?: string;
  remove?: string;
  variant: string;
  quantum: string;
  tables?: string;
  output?: string;
}

/** `strata plan --method layermerge`. */
export async function planLayerMerge(path: string, o: PlanCliOptions): Promise<void> {
  if (!VARIANTS.includes(o.variant as LayerMergeVariant)) throw new InvalidArgumentError('--variant', `must be one of ${VARIANTS.join(', ')}, got "${o.variant}"`);
  const parsed = parseBudget({
    ...(o.budgetMs === undefined ? {} : { budgetMs: o.budgetMs }),
    ...(o.budget === undefined ? {} : { budget: o.budget }),
    ...(o.remove === undefined ? {} : { remove: o.remove }),
  });
  if (parsed.kind !== 'latency-ms' && parsed.kind !== 'latency-fraction') {
    throw new InvalidArgumentError('--remove', 'LayerMerge plans take a latency budget: --budget <fraction> or --budget-ms <ms>');
  }
  const budget: LayerMergeBudget = parsed;
  const quantumMs = positiveNumber('--quantum', o.quantum);
  const progress = new Progress(o.quiet);
  const opts = analysisOptions(o, progress);
  let imported: TablesDoc | undefined;
  if (o.tables) {
    try {
      imported = JSON.parse(readFileSync(o.tables, 'utf8')) as TablesDoc;
    } catch (e) {
      throw new InvalidArgumentError('--tables', `cannot read ${o.tables} as JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const loaded = loadModelFile(path);
  const dataset = await openDataset(o.data);
  const { plan: doc } = await planLayerMergeForModel(loaded, dataset, {
    ...opts,
    ...(imported ? { tables: imported } : {}),
    budget,
    quantumMs,
    variant: o.variant as LayerMergeVariant,
  });
  progress.done();
  if (o.output) writeFileSync(o.output, `${JSON.stringify(doc, null, 2)}\n`);
  if (o.json) {
    printJson(doc);
    return;
  }
  const lm = doc.layermerge!;
  const changed = lm.blocks.filter((b) => !b.unchanged);
  const lines = [
    `LayerMerge plan (${lm.variant}) for ${path}: ${changed.length} block(s) changed, ${doc.remove.length} unit(s) removed`,
    ...changed.map(
      (b) =>
        `  (${b.i}, ${b.j}]  ${b.k === 0 ? 'identity' : `${b.kh}×${b.kw} conv from ${b.keptIds.join('+')}`}` +
        `${b.removedIds.length ? `, removes ${b.removedIds.join(' ')}` : ''}${b.removedActivations.length ? `, activations ${b.removedActivations.join(' ')}` : ''}` +
        `${b.foldedSkips.length ? `, folds ${b.foldedSkips.length} skip(s)` : ''}${b.refit ? ', refit' : ''}  ${b.latencyMs.toFixed(3)} ms`,
    ),
    `predicted latency ${doc.predictedLatencyMs.toFixed(3)} ms of ${doc.baselineLatencyMs.toFixed(3)} ms measured (batch ${doc.latencyBatch}, ×${(doc.baselineLatencyMs / doc.predictedLatencyMs).toFixed(2)} predicted speed-up; rest of the network ${lm.restMs.toFixed(3)} ms)`,
    `predicted loss increase ${doc.importanceLost.toExponential(3)} (${doc.importanceMeasure})`,
  ];
  if (o.output) lines.push(`plan written to ${o.output}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
