import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { loadModelFile } from '../runtime/model-file.js';
import { openDataset } from '../runtime/dataset.js';
import { similarityOfLayers } from '../runtime/analysis/sglp.js';
import { heatmapSvg } from './heatmap.js';
import { printJson, Progress, type GlobalOptions } from './output.js';
import { addRuntimeOptions } from './runtime-options.js';
import { addAnalysisOptions, analysisOptions, type AnalysisCliOptions } from './analysis-options.js';

interface SimilarityCliOptions extends GlobalOptions, AnalysisCliOptions {
  heatmap?: string;
}

export function registerSimilarity(program: Command, run: (fn: () => Promise<void>, o: GlobalOptions) => Promise<void>): void {
  addRuntimeOptions(addAnalysisOptions(program.command('similarity')))
    .description('CKA similarity between every pair of layers (outermost units) over calibration data')
    .argument('<model>', 'an .onnx file')
    .option('--heatmap <file.svg>', 'also draw the matrix as an SVG heat map')
    .option('--json', 'machine-readable output')
    .option('--quiet', 'no progress on stderr')
    .option('--debug', 'print stack traces')
    .action((path: string, o: SimilarityCliOptions) => run(() => similarity(path, o), o));
}

async function similarity(path: string, o: SimilarityCliOptions): Promise<void> {
  const progress = new Progress(o.quiet);
  const opts = analysisOptions(o, progress);
  const loaded = loadModelFile(path);
  const dataset = await openDataset(o.data);
  const { units, similarity: s } = await similarityOfLayers(loaded, dataset, opts);
  progress.done();
  if (o.heatmap) writeFileSync(o.heatmap, heatmapSvg(s.units, s.matrix, []));
  const result = {
    model: path,
    modelSha256: loaded.sha256,
    dataSha256: dataset.sha256,
    estimator: s.estimator,
    samples: s.samples,
    batches: s.batches,
    units: s.units,
    kinds: Object.fromEntries(units.map((u) => [u.id, u.kind])),
    matrix: s.matrix,
    degenerate: s.degenerate,
  };
  if (o.json) {
    printJson(result);
    return;
  }
  const w = Math.max(...s.units.map((u) => u.length));
  const lines = [`CKA (${s.estimator}, ${s.samples} samples in ${s.batches} batches)`, ''];
  lines.push(`${''.padEnd(w)} ${s.units.map((_, i) => String(i).padStart(4)).join('')}`);
  s.matrix.forEach((row, i) => lines.push(`${s.units[i]!.padEnd(w)} ${row.map((v) => v.toFixed(2).slice(1).padStart(4)).join('')}  ${i}`));
  if (o.heatmap) lines.push('', `heat map written to ${o.heatmap}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
