/**
 * Peak memory of the similarity analysis against the size of the calibration set. The analysis keeps
 * one batch of activations and the L×L accumulators, so its peak resident memory must not grow with
 * the number of samples. Each measurement runs in a fresh child process (peak RSS is per process and
 * never goes down), for the bare inference over the same set and for the similarity analysis, at
 * data sets 1×, 8× and 32× the size of the smallest; the calibration images are tiled to make the
 * larger sets, so only the sample count changes. A third job runs the analysis with V8's heap capped
 * at 16 MiB: it can only finish if nothing on the JavaScript side grows with the data (the largest
 * set is ~50 MiB), which separates retained memory from garbage the collector had not yet reclaimed
 * when the peak was taken. Writes bench/results/similarity-memory.json.
 *
 *   npm run build && node dist/bench/similarity-memory.bench.js [--models resnet20,vit] [--batch 64]
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { encodeNpzStream } from '../service/src/core/data/npy.js';
import { openDataset } from '../service/src/runtime/dataset.js';
import { loadModelFile } from '../service/src/runtime/model-file.js';
import { createSession } from '../service/src/runtime/session.js';
import { batchFeeds } from '../service/src/runtime/analysis/feeds.js';
import { similarityOfLayers } from '../service/src/runtime/analysis/sglp.js';
import { CALIB_DATA, ROOT, fixtureModel, type ModelName } from '../tests/helpers/paths.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'resnet20,vit' },
    batch: { type: 'string', default: '64' },
    child: { type: 'string' },
    model: { type: 'string' },
    data: { type: 'string' },
  },
});
const batchSize = Number(values.batch);

/** In a child: run one job, print its peak resident set in MiB. */
async function child(kind: string, model: string, data: string): Promise<void> {
  const loaded = loadModelFile(model);
  const dataset = await openDataset(data);
  if (kind === 'bare') {
    const session = await createSession(loaded.bytes, { optimization: 'all' });
    const binding = dataset.validateAgainst(session.inputs);
    const out = session.outputs[0]!.name;
    for await (const batch of dataset.batches(batchSize, { binding })) await session.run(batchFeeds(batch, binding), [out]);
    await session.release();
  } else {
    await similarityOfLayers(loaded, dataset, { batchSize, gram: 'onnxruntime' });
  }
  // maxRSS is in KiB
  process.stdout.write(`${JSON.stringify({ peakMiB: process.resourceUsage().maxRSS / 1024 })}\n`);
}

/** Writes the calibration images tiled `times` over, with labels, streaming (never whole in memory). */
async function tiledDataset(dir: string, times: number): Promise<string> {
  const base = await openDataset(CALIB_DATA);
  const images: Float32Array[] = [];
  const labels: BigInt64Array[] = [];
  let dims: number[] = [];
  for await (const b of base.batches(base.samples)) {
    const x = b.inputs.input!;
    dims = x.dims.slice(1);
    images.push(x.data as Float32Array);
    labels.push(BigInt64Array.from(b.labels as ArrayLike<bigint | number>, (v) => BigInt(v)));
  }
  const n = base.samples * times;
  const path = join(dir, `calib-x${times}.npz`);
  const fd = openSync(path, 'w');
  try {
    const repeat = <T>(parts: T[]) => () => (function* () {
      for (let t = 0; t < times; t++) yield* parts;
    })();
    for (const chunk of encodeNpzStream({
      input: { dtype: 'float32', shape: [n, ...dims], chunks: repeat(images) },
      labels: { dtype: 'int64', shape: [n], chunks: repeat(labels) },
    })) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
  return path;
}

if (values.child) {
  await child(values.child, values.model!, values.data!);
} else {
  const self = fileURLToPath(import.meta.url);
  const dir = mkdtempSync(join(tmpdir(), 'strata-simmem-'));
  try {
    const sizes = [1, 8, 32];
    const files = new Map<number, string>();
    for (const t of sizes) files.set(t, await tiledDataset(dir, t));
    const rows: Record<string, unknown>[] = [];
    for (const name of values.models.split(',') as ModelName[]) {
      const peaks = new Map<string, number>();
      for (const t of sizes) {
        for (const kind of ['bare', 'similarity', 'similarity-heap16']) {
          const capped = kind.endsWith('-heap16') ? ['--max-old-space-size=16', '--max-semi-space-size=1'] : [];
          const out = execFileSync(process.execPath, [...capped, self, '--child', kind.replace('-heap16', ''), '--model', fixtureModel(name), '--data', files.get(t)!, '--batch', String(batchSize)], {
            encoding: 'utf8',
            maxBuffer: 1 << 20,
          });
          const { peakMiB } = JSON.parse(out.trim().split('\n').pop()!) as { peakMiB: number };
          peaks.set(`${kind}${t}`, peakMiB);
          rows.push({
            model: name,
            job: kind,
            samples: 512 * t,
            dataMiB: +(statSync(files.get(t)!).size / 2 ** 20).toFixed(1),
            peakMiB: +peakMiB.toFixed(1),
            vsSmallest: +(peakMiB / peaks.get(`${kind}1`)!).toFixed(3),
          });
        }
      }
    }
    console.table(rows);
    const report = { bench: 'similarity-memory', date: new Date().toISOString(), node: process.version, batch: batchSize, rows };
    console.log(JSON.stringify(report));
    const out = join(ROOT, 'bench', 'results');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'similarity-memory.json'), `${JSON.stringify(report, null, 2)}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
