/**
 * SGLP on the reference models: one analysis (CKA segments, ablation importance, per-unit
 * latency) per model, plans at three latency budgets, each applied and measured — latency
 * interleaved with the original (median of per-pair ratios), accuracy and agreement on the
 * 1,000-image evaluation set. Writes bench/results/sglp.json and sglp.md.
 *
 *   npm run build && node dist/bench/sglp.bench.js [--models resnet20,vit] [--budgets 0.9,0.75,0.6]
 */
import { parseArgs } from 'node:util';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModelFile } from '../service/src/runtime/model-file.js';
import { openDataset } from '../service/src/runtime/dataset.js';
import { analyzeSglp, sglpPlanFromAnalysis } from '../service/src/runtime/analysis/sglp.js';
import { applyPlan, measureCompression } from '../service/src/runtime/analysis/compress.js';
import { datasetInputShapes } from '../service/src/runtime/analysis/model-context.js';
import { BudgetInfeasibleError } from '../service/src/core/errors.js';
import { CALIB_DATA, EVAL_DATA, ROOT, fixtureModel, type ModelName } from '../tests/helpers/paths.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'resnet20,vit' },
    budgets: { type: 'string', default: '0.9,0.75,0.6' },
    'latency-batch': { type: 'string', default: '32' },
    pairs: { type: 'string', default: '40' },
  },
});
const budgets = values.budgets.split(',').map(Number);
const latencyBatch = Number(values['latency-batch']);
const rows: Record<string, unknown>[] = [];
const analyses: Record<string, unknown> = {};

for (const name of values.models.split(',') as ModelName[]) {
  const loaded = loadModelFile(fixtureModel(name));
  const calib = await openDataset(CALIB_DATA);
  const evalSet = await openDataset(EVAL_DATA);
  const t0 = Date.now();
  const analysis = await analyzeSglp(loaded, calib, { batchSize: 64, latencyBatch, importance: 'ablation' });
  const analysisSeconds = (Date.now() - t0) / 1000;
  analyses[name] = {
    units: analysis.segments.units.map((u) => u.id),
    matrix: analysis.segments.similarity.matrix,
    segments: analysis.segments.segments,
    k: analysis.segments.k,
    kRule: analysis.segments.kRule,
    costCurve: analysis.segments.costCurve,
    importance: analysis.importance.importance,
    unitLatencyMs: analysis.latency.unitMs,
    baselineLatencyMs: analysis.latency.baseline.medianMs,
    analysisSeconds,
  };
  for (const b of budgets) {
    let plan;
    try {
      plan = sglpPlanFromAnalysis(analysis, { kind: 'latency-fraction', value: b });
    } catch (e) {
      if (!(e instanceof BudgetInfeasibleError)) throw e;
      rows.push({ model: name, budget: b, infeasible: e.message });
      continue;
    }
    const compressed = await applyPlan(loaded, plan, calib);
    const m = await measureCompression(loaded.bytes, compressed.bytes, datasetInputShapes(loaded.model, evalSet, latencyBatch), evalSet, {
      pairs: Number(values.pairs),
    });
    rows.push({
      model: name,
      budget: b,
      removed: plan.remove.join(' '),
      predictedRatio: +(plan.predictedLatencyMs / plan.baselineLatencyMs).toFixed(3),
      measuredRatio: +m.latencyRatio.toFixed(3),
      ratioP10: +m.latency.ratioP10.toFixed(3),
      ratioP90: +m.latency.ratioP90.toFixed(3),
      speedup: +m.speedup.toFixed(3),
      accuracyBefore: m.accuracyBefore,
      accuracyAfter: m.accuracyAfter,
      accuracyDeltaPt: m.accuracyBefore !== null && m.accuracyAfter !== null ? +((m.accuracyAfter - m.accuracyBefore) * 100).toFixed(2) : null,
      agreement: m.agreement,
      parameters: `${compressed.parametersBefore} → ${compressed.parametersAfter}`,
    });
  }
}

console.table(rows);
const out = join(ROOT, 'bench', 'results');
mkdirSync(out, { recursive: true });
const report = { bench: 'sglp', latencyBatch, date: new Date().toISOString(), node: process.version, rows, analyses };
writeFileSync(join(out, 'sglp.json'), `${JSON.stringify(report, null, 2)}\n`);
const md = [
  '# SGLP on the reference models',
  '',
  `Regenerate: \`npm run build && node dist/bench/sglp.bench.js\`. Latency at batch ${latencyBatch}, CPU, onnxruntime-node; ratio = compressed ÷ original, median of interleaved pairs (p10–p90); accuracy on the 1,000-image Fashion-MNIST evaluation fixture; no fine-tuning.`,
  '',
  '| model | budget | removed | predicted ratio | measured ratio (p10–p90) | speed-up | accuracy before → after (Δ pt) | agreement |',
  '|---|---|---|---|---|---|---|---|',
  ...rows.map((r) =>
    r.infeasible
      ? `| ${r.model} | ${r.budget} | infeasible: ${r.infeasible} | | | | | |`
      : `| ${r.model} | ${r.budget} | ${r.removed || '—'} | ${r.predictedRatio} | ${r.measuredRatio} (${r.ratioP10}–${r.ratioP90}) | ${r.speedup}× | ${((r.accuracyBefore as number) * 100).toFixed(1)}% → ${((r.accuracyAfter as number) * 100).toFixed(1)}% (${r.accuracyDeltaPt}) | ${((r.agreement as number) * 100).toFixed(1)}% |`,
  ),
  '',
  ...Object.entries(analyses).map(([name, a]) => {
    const x = a as { segments: string[][]; k: number; kRule: string; analysisSeconds: number; baselineLatencyMs: number };
    return `- ${name}: ${x.k} segments (${x.kRule}): ${x.segments.map((s) => `[${s.join(' ')}]`).join(' ')}; analysis ${x.analysisSeconds.toFixed(1)} s; baseline ${x.baselineLatencyMs.toFixed(2)} ms`;
  }),
  '',
];
writeFileSync(join(out, 'sglp.md'), md.join('\n'));
console.log(`wrote ${join('bench', 'results', 'sglp.md')}`);
