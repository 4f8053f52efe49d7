import type { Command } from 'commander';
import { bindInputShapes, modelSignature, type TensorSignature } from '../core/onnx/io.js';
import { loadModelFile } from '../runtime/model-file.js';
import { createSession } from '../runtime/session.js';
import { compareLatency, measureLatency, randomFeeds, type LatencyStats } from '../runtime/latency.js';
import { collectShape, givenShapes, resolveShapes } from './model-shapes.js';
import { discoverStructure } from '../core/structure/discover.js';
import { unitLatencies } from '../runtime/analysis/unit-latency.js';
import { printJson, Progress, table, type GlobalOptions } from './output.js';
import { addRuntimeOptions, positiveInt, sessionOptions, type RuntimeCliOptions } from './runtime-options.js';

interface LatencyCliOptions extends GlobalOptions, RuntimeCliOptions {
  batch: string;
  vs?: string;
  shape?: string[];
  runs: string;
  warmup: string;
  perUnit?: boolean;
}

export function registerLatency(program: Command, run: (fn: () => Promise<void>, o: GlobalOptions) => Promise<void>): void {
  addRuntimeOptions(
    program
      .command('latency')
      .description('measure inference latency (median and spread); with --vs, compare two models run in alternation')
      .argument('<model>', 'an .onnx file')
      .option('--batch <n>', 'batch size bound to a symbolic leading dimension', '1')
      .option('--vs <other>', 'a second model to compare against, run interleaved (A B A B …)')
      .option('--shape <input=dims>', 'bind an input shape, e.g. input=1x3x224x224 (repeatable)', collectShape)
      .option('--runs <n>', 'timed runs (pairs with --vs)', '50')
      .option('--warmup <n>', 'untimed warm-up runs', '10')
      .option('--per-unit', "attribute latency to units (blocks, convolutions, …) from onnxruntime's profiler"),
  )
    .option('--json', 'machine-readable output')
    .option('--quiet', 'no progress on stderr')
    .option('--debug', 'print stack traces')
    .action((path: string, o: LatencyCliOptions) => run(() => latency(path, o), o));
}

function feedsFor(inputs: TensorSignature[], shapes: Map<string, number[]>) {
  return randomFeeds(inputs.map((i) => ({ name: i.name, dtype: i.dtype, dims: shapes.get(i.name) ?? i.dims })));
}

async function latency(path: string, o: LatencyCliOptions): Promise<void> {
  const batch = positiveInt('--batch', o.batch);
  const runs = positiveInt('--runs', o.runs);
  const warmup = Number(o.warmup);
  const progress = new Progress(o.quiet);
  const a = loadModelFile(path);
  const sigA = modelSignature(a.model).inputs;
  const shapesA = bindInputShapes(sigA, givenShapes(o.shape), batch);
  const opts = sessionOptions(o);
  progress.update('loading');
  const sessionA = await createSession(a.bytes, opts);
  const result: Record<string, unknown> = {
    model: path,
    provider: opts.provider,
    threads: opts.threads ?? null,
    batch,
    inputShapes: Object.fromEntries(shapesA),
  };
  try {
    if (!o.vs) {
      progress.update('timing', undefined, `${warmup} warm-up + ${runs} runs`);
      const stats = await measureLatency(sessionA, feedsFor(sigA, shapesA), { warmup, runs });
      progress.done();
      Object.assign(result, stats);
      let rows: { id: string; kind: string; ms: number; share: number }[] | undefined;
      if (o.perUnit) {
        progress.update('profiling');
        const { shapes } = await resolveShapes(a.model, [...shapesA].map(([k, v]) => `${k}=${v.join('x')}`));
        const units = discoverStructure(a.model, shapes).units;
        const lat = await unitLatencies(a.bytes, units, shapesA, { session: opts, runs: runs });
        progress.done();
        // shares of the profiled time, applied to the median reported above
        rows = units.map((u) => {
          const share = (lat.unitMs[u.id] ?? 0) / lat.baseline.medianMs;
          return { id: u.id, kind: u.kind, ms: share * stats.medianMs, share };
        });
        result.units = rows;
        result.unattributedFraction = lat.unattributedFraction;
      }
      if (o.json) {
        printJson(result);
      } else {
        process.stdout.write(`${path}: ${describe(stats)} (batch ${batch}, ${opts.provider})\n`);
        if (rows) {
          process.stdout.write(`${table(rows.map((r) => [r.id, r.kind, r.ms.toFixed(3), `${(r.share * 100).toFixed(1)}%`]), ['unit', 'kind', 'ms', 'share'])}\n`);
        }
      }
      return;
    }
    const b = loadModelFile(o.vs);
    const sigB = modelSignature(b.model).inputs;
    const shapesB = bindInputShapes(sigB, givenShapes(o.shape), batch);
    const sessionB = await createSession(b.bytes, opts);
    try {
      progress.update('timing', undefined, `${warmup} warm-up + ${runs} interleaved pairs`);
      const cmp = await compareLatency(sessionA, sessionB, feedsFor(sigA, shapesA), feedsFor(sigB, shapesB), { warmup, pairs: runs });
      progress.done();
      Object.assign(result, cmp.a, {
        vs: { model: o.vs, ...cmp.b },
        ratio: cmp.ratio,
        ratioP10: cmp.ratioP10,
        ratioP90: cmp.ratioP90,
        pairs: cmp.pairs,
      });
      if (o.json) {
        printJson(result);
      } else {
        process.stdout.write(
          [
            `${path}: ${describe(cmp.a)}`,
            `${o.vs}: ${describe(cmp.b)}`,
            `ratio ${cmp.ratio.toFixed(3)} (p10 ${cmp.ratioP10.toFixed(3)}, p90 ${cmp.ratioP90.toFixed(3)}) over ${cmp.pairs} interleaved pairs` +
              ` — ${cmp.ratio < 1 ? `${(1 / cmp.ratio).toFixed(2)}× faster` : `${cmp.ratio.toFixed(2)}× slower`} than ${o.vs}`,
          ].join('\n') + '\n',
        );
      }
    } finally {
      await sessionB.release();
    }
  } finally {
    await sessionA.release();
  }
}

function describe(s: LatencyStats): string {
  return `median ${s.medianMs.toFixed(3)} ms (p10 ${s.p10Ms.toFixed(3)}, p90 ${s.p90Ms.toFixed(3)}, MAD ${s.madMs.toFixed(3)}, ${s.runs} runs)`;
}
