import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';
import { loadModelFile } from '../runtime/model-file.js';
import { openDataset } from '../runtime/dataset.js';
import { segmentLayers } from '../runtime/analysis/sglp.js';
import { heatmapSvg } from './heatmap.js';
import { printJson, Progress, type GlobalOptions } from './output.js';
import { addRuntimeOptions, positiveInt } from './runtime-options.js';
import { addAnalysisOptions, analysisOptions, type AnalysisCliOptions } from './analysis-options.js';

interface SegmentsCliOptions extends GlobalOptions, AnalysisCliOptions {
  k?: string;
  cost: string;
  heatmap?: string;
}

export function registerSegments(program: Command, run: (fn: () => Promise<void>, o: GlobalOptions) => Promise<void>): void {
  addRuntimeOptions(addAnalysisOptions(program.command('segments')))
    .description('Fisher optimal segmentation of the layer sequence by CKA similarity')
    .argument('<model>', 'an .onnx file')
    .option('--k <k>', 'number of segments (default: the elbow of the optimal cost curve)')
    .option('--cost <name>', 'segment cost: fisher (squared deviation of similarity profiles) or dissimilarity (Σ 1 − CKA)', 'fisher')
    .option('--heatmap <file.svg>', 'draw the similarity matrix with the segments marked')
    .option('--json', 'machine-readable output')
    .option('--quiet', 'no progress on stderr')
    .option('--debug', 'print stack traces')
    .action((path: string, o: SegmentsCliOptions) => run(() => segments(path, o), o));
}

async function segments(path: string, o: SegmentsCliOptions): Promise<void> {
  if (o.cost !== 'fisher' && o.cost !== 'dissimilarity') throw new InvalidArgumentError('--cost', `must be fisher or dissimilarity, got "${o.cost}"`);
  const progress = new Progress(o.quiet);
  const opts = analysisOptions(o, progress);
  const loaded = loadModelFile(path);
  const dataset = await openDataset(o.data);
  const r = await segmentLayers(loaded, dataset, { ...opts, cost: o.cost, ...(o.k === undefined ? {} : { k: positiveInt('--k', o.k) }) });
  progress.done();
  if (o.heatmap) writeFileSync(o.heatmap, heatmapSvg(r.similarity.units, r.similarity.matrix, r.segments));
  if (o.json) {
    printJson({
      model: path,
      modelSha256: loaded.sha256,
      dataSha256: dataset.sha256,
      k: r.k,
      kRule: r.kRule,
      cost: r.cost,
      segments: r.segments,
      costCurve: r.costCurve,
      units: r.similarity.units,
      matrix: r.similarity.matrix,
    });
    return;
  }
  const lines = [`${r.k} segments (${r.kRule === 'given' ? 'k given' : `k by rule: ${r.kRule}`}, cost ${r.cost})`];
  const removable = new Map(r.units.map((u) => [u.id, u.removable]));
  r.segments.forEach((s, i) => lines.push(`  ${i + 1}: ${s.map((id) => (removable.get(id) ? id : `${id}*`)).join(' ')}`));
  lines.push('  (* not removable)', `optimal cost by k: ${r.costCurve.map((c, i) => `${i + 1}:${c.toFixed(3)}`).join(' ')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
