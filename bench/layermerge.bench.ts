/**
 * LayerMerge on the reference CNNs: one analysis per model (chain, candidates, latency table timed in
 * onnxruntime, importance table with least-squares refits on the calibration set), then plans at three
 * latency budgets for each variant (layermerge, layer-only, merge-only), with and without refit. Every
 * plan is applied and measured against the original in the same run: latency interleaved (median of
 * per-pair ratios), accuracy and agreement on the 1,000-image evaluation set, and the additive latency
 * model's prediction against the measured ratio. Writes bench/results/layermerge.json and .md.
 *
 *   npm run build && node dist/bench/layermerge.bench.js [--models resnet20,mobilenetv2] [--budgets 0.9,0.7,0.5]
 *
 * One intra-op thread by default: on a small machine shared with other work, onnxruntime's thread pool
 * contends with the other processes and a two-thread run can be slower and far noisier than one.
 */
import { parseArgs } from 'node:util';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BudgetInfeasibleError } from '../service/src/core/errors.js';
import type { LayerMergeVariant } from '../service/src/core/layermerge/dp.js';
import { openDataset } from '../service/src/runtime/dataset.js';
import { measureCompression } from '../service/src/runtime/analysis/compress.js';
import { datasetInputShapes } from '../service/src/runtime/analysis/model-context.js';
import { analyzeLayerMerge, layerMergePlanFromAnalysis } from '../service/src/runtime/layermerge/analysis.js';
import { applyLayerMergePlan } from '../service/src/runtime/layermerge/apply.js';
import { loadModelFile } from '../service/src/runtime/model-file.js';
import { CALIB_DATA, EVAL_DATA, ROOT, fixtureModel, type ModelName } from '../tests/helpers/paths.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'resnet20,mobilenetv2' },
    budgets: { type: 'string', default: '0.9,0.7,0.5' },
    variants: { type: 'string', default: 'layermerge,layer-only,merge-only' },
    samples: { type: 'string', default: '256' },
    'latency-batch': { type: 'string', default: '32' },
    threads: { type: 'string', default: '1' },
    pairs: { type: 'string', default: '40' },
  },
});
const budgets = values.budgets.split(',').map(Number);
const variants = values.variants.split(',') as LayerMergeVariant[];
const session = { threads: Number(values.threads) };
const rows: Record<string, unknown>[] = [];
const analyses: Record<string, unknown> = {};
const started = Date.now();

const round = (v: number, digits = 4) => Number.parseFloat(v.toPrecision(digits));

for (const name of values.models.split(',') as ModelName[]) {
  const loaded = loadModelFile(fixtureModel(name));
  const calib = await openDataset(CALIB_DATA);
  const evalSet = await openDataset(EVAL_DATA);
  const t0 = Date.now();
  const a = await analyzeLayerMerge(loaded, calib, {
    samples: Number(values.samples),
    batchSize: 64,
    latencyBatch: Number(values['latency-batch']),
    refit: true,
    session,
  });
  const analysisSeconds = (Date.now() - t0) / 1000;
  const entries = Object.values(a.importance.entries);
  analyses[name] = {
    chain: a.extracted.chain.layers.length,
    residuals: a.extracted.chain.residuals.length,
    candidates: a.candidates.length,
    dominated: a.importance.dominated.length,
    refit: entries.filter((e) => e.refit).length,
    signatures: Object.keys(a.latency.signatures).length,
    originalMs: round(a.latency.originalMs),
    originalKernelMs: round(a.latency.originalKernelMs),
    restMs: round(a.latency.restMs),
    baselineLoss: round(a.importance.baselineLoss),
    seconds: { total: round(analysisSeconds), ...Object.fromEntries(Object.entries(a.seconds).map(([k, v]) => [k, round(v)])) },
    medianFidelity: {
      exact: round(median(entries.filter((e) => e.refit).map((e) => e.fidelity))),
      refit: round(median(entries.filter((e) => e.refit).map((e) => e.refit!.fidelity))),
    },
  };
  const shapes = datasetInputShapes(loaded.model, evalSet, a.latency.batch);
  for (const variant of variants) {
    for (const b of budgets) {
      for (const refit of [false, true]) {
        const row: Record<string, unknown> = { model: name, variant, budget: b, refit };
        rows.push(row);
        const tp = Date.now();
        let plan;
        try {
          plan = await layerMergePlanFromAnalysis(a, { kind: 'latency-fraction', value: b }, { variant, refit, dataset: calib, session });
        } catch (e) {
          if (!(e instanceof BudgetInfeasibleError)) throw e;
          row.infeasible = e.message;
          row.minimumFraction = round(Number(e.details['minimumFraction']));
          continue;
        }
        row.planSeconds = round((Date.now() - tp) / 1000);
        const lm = plan.layermerge!;
        const changed = lm.blocks.filter((x) => !x.unchanged);
        row.blocks = changed.map((x) => `(${x.i},${x.j}]${x.k === 0 ? 'id' : `k${x.k}`}`).join(' ');
        row.removedConvs = changed.reduce((n, x) => n + x.removedIds.length, 0);
        row.removedActivations = changed.reduce((n, x) => n + x.removedActivations.length, 0);
        row.mergedConvs = changed.filter((x) => x.kept.length > 1).reduce((n, x) => n + x.kept.length, 0);
        row.predictedLoss = round(plan.importanceLost);
        const compressed = await applyLayerMergePlan(loaded, plan, calib);
        const report = await measureCompression(loaded.bytes, compressed.bytes, shapes, evalSet, { session, pairs: Number(values.pairs) });
        const predicted = plan.predictedLatencyMs / plan.baselineLatencyMs;
        Object.assign(row, {
          predictedRatio: round(predicted),
          measuredRatio: round(report.latencyRatio),
          predictionError: round(predicted / report.latencyRatio - 1, 3),
          speedup: round(report.speedup, 3),
          accuracyBefore: report.accuracyBefore,
          accuracyAfter: report.accuracyAfter,
          accuracyDeltaPt: report.accuracyBefore === null || report.accuracyAfter === null ? null : round((report.accuracyAfter - report.accuracyBefore) * 100, 3),
          agreement: report.agreement,
          parameters: `${compressed.parametersBefore} → ${compressed.parametersAfter}`,
        });
        console.error(`${name} ${variant} ${b} refit=${refit}: ×${row.speedup} Δacc ${row.accuracyDeltaPt} pt, predicted ${row.predictedRatio} measured ${row.measuredRatio}`);
      }
    }
  }
}

function median(v: number[]): number {
  if (v.length === 0) return NaN;
  const s = [...v].sort((x, y) => x - y);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const measured = rows.filter((r) => typeof r.predictionError === 'number').map((r) => Math.abs(r.predictionError as number));
const report = {
  options: { ...values, threads: session.threads },
  seconds: round((Date.now() - started) / 1000),
  analyses,
  rows,
  predictionError: { median: round(median(measured), 3), max: round(Math.max(...measured), 3), within5pct: measured.filter((e) => e <= 0.05).length, of: measured.length },
};
const out = join(ROOT, 'bench', 'results');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'layermerge.json'), `${JSON.stringify(report, null, 2)}\n`);

const md: string[] = [
  '# LayerMerge on the reference models',
  '',
  `Generated by \`node dist/bench/layermerge.bench.js\` (${report.seconds} s in all). Calibration: the first ${values.samples} images of` +
    ' `fmnist-calib-512.npz`; evaluation: `fmnist-eval-1000.npz`. Latency at batch ' +
    `${values['latency-batch']}, CPU, ${session.threads} intra-op thread(s); ratios are compressed ÷ original, interleaved in the same run ` +
    '(median of per-pair ratios). "predicted" is the plan\'s additive model (rest + Σ block latencies) over the measured original; ' +
    '"error" is predicted ÷ measured − 1. Refit: importance from least-squares refits, and every merged block refit in sequence on the ' +
    'compressed network at emission. No gradient fine-tuning anywhere.',
  '',
  '## Analyses',
  '',
  '| model | chain convs | skips | candidates | dominated | refit entries | original ms | rest ms | median fidelity exact → refit | analysis s (latency / importance / refit sums / refit solve) |',
  '|---|---|---|---|---|---|---|---|---|---|',
];
for (const [name, v] of Object.entries(analyses) as [string, Record<string, unknown>][]) {
  const s = v.seconds as Record<string, number>;
  const f = v.medianFidelity as Record<string, number>;
  md.push(
    `| ${name} | ${v.chain} | ${v.residuals} | ${v.candidates} | ${v.dominated} | ${v.refit} | ${v.originalMs} | ${v.restMs} | ${f.exact} → ${f.refit} | ${s.total} (${s.latency} / ${s.importance} / ${s.refitSums} / ${s.refitSolve}) |`,
  );
}
md.push(
  '',
  '## Plans',
  '',
  '| model | variant | budget | refit | changed blocks | convs removed / merged, activations removed | predicted | measured | error | speed-up | accuracy | Δ pt | agreement |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
);
const pct = (v: unknown) => (typeof v === 'number' ? `${(v * 100).toFixed(1)}%` : 'n/a');
for (const r of rows) {
  if (r.infeasible) {
    md.push(`| ${r.model} | ${r.variant} | ${r.budget} | ${r.refit ? 'yes' : 'no'} | infeasible: minimum ${r.minimumFraction} of the original | | | | | | | | |`);
    continue;
  }
  md.push(
    `| ${r.model} | ${r.variant} | ${r.budget} | ${r.refit ? 'yes' : 'no'} | ${r.blocks || '—'} | ${r.removedConvs} / ${r.mergedConvs}, ${r.removedActivations} | ${r.predictedRatio} | ${r.measuredRatio} | ${((r.predictionError as number) * 100).toFixed(1)}% | ${r.speedup}× | ${pct(r.accuracyBefore)} → ${pct(r.accuracyAfter)} | ${r.accuracyDeltaPt} | ${pct(r.agreement)} |`,
  );
}
md.push(
  '',
  `Prediction error |predicted ÷ measured − 1|: median ${pct(report.predictionError.median)}, max ${pct(report.predictionError.max)}; ` +
    `${report.predictionError.within5pct} of ${report.predictionError.of} plans within 5%.`,
  '',
);
writeFileSync(join(out, 'layermerge.md'), md.join('\n'));
console.log(JSON.stringify(report.predictionError));
console.log(`wrote ${join('bench', 'results', 'layermerge.md')}`);
