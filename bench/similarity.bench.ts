/**
 * The similarity analysis (activation capture + Gram matrices + CKA accumulation) against bare
 * inference over the same calibration set, same batch size, same session settings. Runs are
 * interleaved (bare, ORT-Gram, typed-array-Gram, bare, …) and each variant's median is reported
 * with the median of its per-round ratio to the bare pass. Target: ≤ 1.5× bare inference.
 *
 *   npm run build && node dist/bench/similarity.bench.js [--rounds 5] [--batch 64] [--samples 512]
 */
import { parseArgs } from 'node:util';
import { loadModelFile } from '../service/src/runtime/model-file.js';
import { openDataset } from '../service/src/runtime/dataset.js';
import { createSession } from '../service/src/runtime/session.js';
import { batchFeeds } from '../service/src/runtime/analysis/feeds.js';
import { layerUnits, modelContext } from '../service/src/runtime/analysis/model-context.js';
import { similarityAnalysis, type GramBackend } from '../service/src/runtime/analysis/similarity.js';
import { CALIB_DATA, fixtureModel } from '../tests/helpers/paths.js';

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '5' }, batch: { type: 'string', default: '64' }, samples: { type: 'string', default: '512' }, models: { type: 'string', default: 'resnet20,vit' } },
});
const rounds = Number(values.rounds);
const batchSize = Number(values.batch);
const samples = Number(values.samples);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const results: Record<string, unknown>[] = [];
for (const name of values.models.split(',') as ('resnet20' | 'vit')[]) {
  const loaded = loadModelFile(fixtureModel(name));
  const dataset = await openDataset(CALIB_DATA);
  const ctx = await modelContext(loaded.model, dataset);
  const targets = layerUnits(ctx.structure).map((u) => ({ id: u.id, tensor: u.output }));
  // Both sides start from the model bytes: the bare pass creates its session too, as the
  // analysis does, so the ratio compares whole jobs, not a warm session with a cold one.
  const bareRun = async () => {
    const t0 = process.hrtime.bigint();
    const bare = await createSession(loaded.bytes, { optimization: 'all' });
    const binding = dataset.validateAgainst(bare.inputs);
    const out = bare.outputs[0]!.name;
    for await (const batch of dataset.batches(batchSize, { limit: samples, binding })) await bare.run(batchFeeds(batch, binding), [out]);
    await bare.release();
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  const analysis = (gram: GramBackend) => async () => {
    const t0 = process.hrtime.bigint();
    await similarityAnalysis(loaded.model, targets, dataset, { batchSize, samples, gram });
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  const variants: [string, () => Promise<number>][] = [
    ['bare', bareRun],
    ['onnxruntime', analysis('onnxruntime')],
    ['typed-array', analysis('typed-array')],
  ];
  for (const [, run] of variants) await run(); // warm-up
  const times = new Map<string, number[]>(variants.map(([v]) => [v, []]));
  for (let r = 0; r < rounds; r++) for (const [v, run] of variants) times.get(v)!.push(await run());
  const bareTimes = times.get('bare')!;
  for (const [v] of variants) {
    const ts = times.get(v)!;
    results.push({
      model: name,
      variant: v,
      units: targets.length,
      samples,
      batch: batchSize,
      medianMs: +median(ts).toFixed(1),
      minMs: +Math.min(...ts).toFixed(1),
      maxMs: +Math.max(...ts).toFixed(1),
      ratioToBare: +median(ts.map((t, i) => t / bareTimes[i]!)).toFixed(3),
    });
  }
}
console.table(results);
console.log(JSON.stringify({ bench: 'similarity', rounds, results }));
