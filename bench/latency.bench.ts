/**
 * Latency of the reference models on this machine: every model timed in the same rounds
 * (round-robin, one run each per round) so that load drift hits all of them alike. Prints
 * medians, spreads and each model's median per-round ratio to ResNet-20.
 *
 *   npm run build && node dist/bench/latency.bench.js [--batch 1,32] [--rounds 60]
 */
import { parseArgs } from 'node:util';
import { loadModelFile } from '../service/src/runtime/model-file.js';
import { createSession, type Session } from '../service/src/runtime/session.js';
import { randomFeeds, summarize } from '../service/src/runtime/latency.js';
import { MODELS, fixtureModel } from '../tests/helpers/paths.js';

const { values } = parseArgs({ options: { batch: { type: 'string', default: '1,32' }, rounds: { type: 'string', default: '60' }, threads: { type: 'string' } } });
const batches = values.batch.split(',').map(Number);
const rounds = Number(values.rounds);
const threads = values.threads === undefined ? undefined : Number(values.threads);

const sessions: { name: string; session: Session }[] = [];
for (const name of MODELS) {
  const m = loadModelFile(fixtureModel(name));
  sessions.push({ name, session: await createSession(m.bytes, { optimization: 'all', ...(threads ? { threads } : {}) }) });
}

const report: Record<string, unknown>[] = [];
for (const batch of batches) {
  const feeds = sessions.map(({ session }) => randomFeeds(session.inputs, { batch }));
  for (let w = 0; w < 5; w++) for (let i = 0; i < sessions.length; i++) await sessions[i]!.session.run(feeds[i]!);
  const times: number[][] = sessions.map(() => []);
  for (let r = 0; r < rounds; r++) {
    // rotate the starting model each round so no model always follows the same one
    for (let k = 0; k < sessions.length; k++) {
      const i = (k + r) % sessions.length;
      const t0 = process.hrtime.bigint();
      await sessions[i]!.session.run(feeds[i]!);
      times[i]!.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  const ref = times[0]!;
  for (let i = 0; i < sessions.length; i++) {
    const s = summarize(times[i]!);
    const ratios = times[i]!.map((t, r) => t / ref[r]!).sort((a, b) => a - b);
    report.push({
      model: sessions[i]!.name,
      batch,
      medianMs: +s.medianMs.toFixed(4),
      p10Ms: +s.p10Ms.toFixed(4),
      p90Ms: +s.p90Ms.toFixed(4),
      madMs: +s.madMs.toFixed(4),
      runs: s.runs,
      ratioToResnet20: +ratios[ratios.length >> 1]!.toFixed(4),
    });
  }
}
for (const { session } of sessions) await session.release();
console.table(report);
console.log(JSON.stringify({ bench: 'latency', rounds, threads: threads ?? 'default', results: report }));
