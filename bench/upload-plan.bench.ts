/**
 * Upload → plan through the service, as a pipeline meets it the first time: a fresh data
 * directory (nothing cached), the model and the calibration data uploaded over HTTP, registered,
 * and a plan asked for and followed (graphql-ws jobUpdated) until it has SUCCEEDED. The time is
 * taken from the start of the first upload to the update that says SUCCEEDED; the service's start
 * is not part of it (it is reported beside it). Per phase: uploads, registration, the job's wait
 * in the queue, each progress phase the job reported (from the first update naming it to the next
 * phase), and the total.
 *
 * Target: "Upload → plan, a ResNet-32-class model, 2 CPU cores, 512 calibration images: ≤ 60 s".
 * The fixtures stand in for that class: ResNet-20 (the ResNet-32 of the same CIFAR-style family,
 * with fewer blocks per stage) and MobileNetV2, on fmnist-calib-512.npz (512 images, all used).
 * Methods: SGLP and LAYERMERGE (refit passed explicitly: true), each at 0.7 of the measured
 * latency. Every run starts its own service on its own empty data directory. Writes
 * bench/results/upload-plan.json and upload-plan.md.
 *
 *   npm run build && node dist/bench/upload-plan.bench.js [--models resnet20,mobilenetv2] [--methods sglp,layermerge]
 *     [--budget 0.7] [--timeout 1800]
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { CALIB_DATA, fixtureModel, ROOT, type ModelName } from '../tests/helpers/paths.js';
import { type ServiceProcess, spawnService } from './service-process.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'resnet20,mobilenetv2' },
    methods: { type: 'string', default: 'sglp,layermerge' },
    budget: { type: 'string', default: '0.7' },
    timeout: { type: 'string', default: '1800' },
  },
});
const budget = Number(values.budget);
const timeoutMs = Number(values.timeout) * 1000;
const TARGET_S = 60;
const token = 'upload-plan-bench-token-0123456789';
const auth = { Authorization: `Bearer ${token}` };

type Method = 'sglp' | 'layermerge';

interface Update {
  /** seconds since the first upload started */
  at: number;
  status: string;
  phase: string | null;
  fraction: number | null;
}

interface PhaseTime {
  phase: string;
  startS: number;
  seconds: number;
}

const round = (v: number, digits = 2) => +v.toFixed(digits);

function planInput(method: Method, model: string, dataset: string): Record<string, unknown> {
  // samples left out: all 512; LayerMerge's refit passed explicitly, whatever its default is
  return method === 'sglp'
    ? { model, dataset, method: 'SGLP', budget: { latencyFraction: budget } }
    : { model, dataset, method: 'LAYERMERGE', budget: { latencyFraction: budget }, layerMerge: { refit: true } };
}

function startService(dir: string): Promise<ServiceProcess> {
  return spawnService(join(ROOT, 'dist', 'service', 'src', 'main.js'), { STRATA_DATA_DIR: dir, STRATA_TOKEN: token });
}

async function gql<T>(base: string, query: string, variables: Record<string, unknown>): Promise<T> {
  const r = await fetch(`${base}/graphql`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ query, variables }) });
  const body = (await r.json()) as { data?: T; errors?: { message: string }[] };
  if (body.errors || !body.data) throw new Error(`GraphQL: ${JSON.stringify(body.errors)}`);
  return body.data;
}

async function upload(base: string, path: string): Promise<string> {
  const r = await fetch(`${base}/upload`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/octet-stream' }, body: readFileSync(path) });
  if (r.status !== 201) throw new Error(`upload of ${path}: HTTP ${r.status} ${await r.text()}`);
  return ((await r.json()) as { sha256: string }).sha256;
}

/** Phases in the order first seen; each lasts until the next one starts (the last until the end). */
function phasesOf(updates: readonly Update[], endS: number): PhaseTime[] {
  const starts: { phase: string; startS: number }[] = [];
  for (const u of updates) {
    if (u.phase === null || u.status !== 'RUNNING') continue;
    if (starts.at(-1)?.phase !== u.phase) starts.push({ phase: u.phase, startS: u.at });
  }
  return starts.map((p, i) => ({ phase: p.phase, startS: round(p.startS), seconds: round((starts[i + 1]?.startS ?? endS) - p.startS) }));
}

async function run(model: ModelName, method: Method) {
  const dir = mkdtempSync(join(tmpdir(), 'strata-upload-plan-'));
  const startedService = performance.now();
  const service = await startService(dir);
  const serviceStartS = (performance.now() - startedService) / 1000;
  // the machine is shared: how busy it was says how far these seconds are from two idle cores
  const loadBefore = loadavg()[0]!;
  const ws = createClient({
    url: `${service.base.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: auth.Authorization },
    retryAttempts: 0,
    lazy: true,
  });
  try {
    const modelPath = fixtureModel(model);
    const t0 = performance.now();
    const since = () => (performance.now() - t0) / 1000;
    const modelSha = await upload(service.base, modelPath);
    const uploadModelS = since();
    const dataSha = await upload(service.base, CALIB_DATA);
    const uploadS = since();
    const reg = await gql<{ registerModel: { id: string }; registerDataset: { id: string; samples: number } }>(
      service.base,
      'mutation ($m: String!, $d: String!) { registerModel(sha256: $m, name: "model") { id } registerDataset(sha256: $d, name: "calib") { id samples } }',
      { m: modelSha, d: dataSha },
    );
    const registeredS = since();
    const asked = await gql<{ plan: { id: string; status: string } }>(service.base, 'query ($i: PlanInput!) { plan(input: $i) { id status } }', {
      i: planInput(method, reg.registerModel.id, reg.registerDataset.id),
    });
    const askedS = since();
    const updates: Update[] = [];
    let final: string | null = null;
    const deadline = setTimeout(() => void ws.dispose(), timeoutMs);
    try {
      for await (const r of ws.iterate<{ jobUpdated: { status: string; progress: { phase: string; fraction: number | null } | null } }>({
        query: 'subscription ($id: ID!) { jobUpdated(id: $id) { status progress { phase fraction } } }',
        variables: { id: asked.plan.id },
      })) {
        if (r.errors) throw new Error(`jobUpdated: ${JSON.stringify(r.errors)}`);
        const j = r.data!.jobUpdated;
        updates.push({ at: since(), status: j.status, phase: j.progress?.phase ?? null, fraction: j.progress?.fraction ?? null });
        if (j.status !== 'QUEUED' && j.status !== 'RUNNING') {
          final = j.status;
          break;
        }
      }
    } finally {
      clearTimeout(deadline);
    }
    const totalS = since();
    const loadAfter = loadavg()[0]!;
    const job = await gql<{
      job: {
        status: string;
        createdAt: string;
        startedAt: string | null;
        finishedAt: string | null;
        error: { code: string; message: string } | null;
        result: { remove: string[]; predictedLatencyMs: number; baselineLatencyMs: number; predictedSpeedup: number; importanceLost: number } | null;
      };
    }>(
      service.base,
      'query ($id: ID!) { job(id: $id) { status createdAt startedAt finishedAt error { code message } result { ... on PlanResult { remove predictedLatencyMs baselineLatencyMs predictedSpeedup importanceLost } } } }',
      { id: asked.plan.id },
    );
    const j = job.job;
    const ms = (a: string | null, b: string | null) => (a === null || b === null ? null : round((Date.parse(b) - Date.parse(a)) / 1000));
    const row = {
      model,
      method,
      budget,
      refit: method === 'layermerge' ? true : null,
      samples: reg.registerDataset.samples,
      modelBytes: statSync(modelPath).size,
      dataBytes: statSync(CALIB_DATA).size,
      status: final ?? `not finished within ${values.timeout} s`,
      error: j.error,
      serviceStartS: round(serviceStartS),
      /** the machine's 1-minute load average when the run started and when it ended (2 CPUs) */
      loadAverage: [round(loadBefore), round(loadAfter)],
      seconds: {
        uploadModel: round(uploadModelS),
        uploadData: round(uploadS - uploadModelS),
        register: round(registeredS - uploadS),
        ask: round(askedS - registeredS),
        // the server's own clock: queued → started → finished
        queued: ms(j.createdAt, j.startedAt),
        job: ms(j.startedAt, j.finishedAt),
        total: round(totalS),
      },
      phases: phasesOf(updates, totalS),
      updates: updates.length,
      plan: j.result
        ? {
            removed: j.result.remove.length,
            predictedLatencyMs: round(j.result.predictedLatencyMs, 3),
            baselineLatencyMs: round(j.result.baselineLatencyMs, 3),
            predictedSpeedup: round(j.result.predictedSpeedup, 3),
            importanceLost: j.result.importanceLost,
          }
        : null,
      meetsTarget: final === 'SUCCEEDED' && totalS <= TARGET_S,
    };
    console.log(JSON.stringify({ model, method, status: row.status, seconds: row.seconds, phases: row.phases.map((p) => `${p.phase} ${p.seconds}s`) }));
    return row;
  } finally {
    await ws.dispose();
    service.child.kill('SIGTERM');
    await service.stopped;
    rmSync(dir, { recursive: true, force: true });
  }
}

const started = Date.now();
const rows = [];
for (const model of values.models.split(',') as ModelName[]) {
  for (const method of values.methods.split(',') as Method[]) {
    if (method !== 'sglp' && method !== 'layermerge') throw new Error(`--methods: sglp or layermerge, got ${String(method)}`);
    rows.push(await run(model, method));
  }
}

const report = {
  bench: 'upload-plan',
  date: new Date().toISOString(),
  machine: { cpus: availableParallelism(), model: cpus()[0]?.model ?? 'unknown', node: process.version },
  data: relative(ROOT, CALIB_DATA),
  targetSeconds: TARGET_S,
  seconds: round((Date.now() - started) / 1000, 1),
  rows,
};
const out = join(ROOT, 'bench', 'results');
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'upload-plan.json'), `${JSON.stringify(report, null, 2)}\n`);

const md = [
  '# Upload → plan through the service',
  '',
  `Generated by \`node dist/bench/upload-plan.bench.js\` on ${report.date.slice(0, 10)} (${report.seconds} s in all): ${report.machine.cpus} CPU(s), ` +
    `${report.machine.model}, Node ${report.machine.node}, onnxruntime's default threads. Each run: its own service on an empty data directory ` +
    `(nothing cached), the model and \`${basename(CALIB_DATA)}\` (${rows[0]?.samples ?? 512} images, all used) uploaded over HTTP one after the other, ` +
    `registered, a plan at ${budget} of the measured latency asked for and followed over graphql-ws until SUCCEEDED. ` +
    'Total: from the start of the first upload to the SUCCEEDED update. Phases are the progress phases the job reported, each timed from ' +
    'the first update naming it to the next phase (the last until SUCCEEDED); "job" is the server\'s startedAt → finishedAt. ' +
    `Target: ≤ ${TARGET_S} s for a ResNet-32-class model on 2 CPU cores with 512 calibration images. The machine is shared: ` +
    'a load average above 2 means other work took part of the two cores during the run.',
  '',
  '| model | method | upload s (model + data) | register s | queued s | job s | total s | target | plan: removed, predicted speed-up | load average (start, end) |',
  '|---|---|---|---|---|---|---|---|---|---|',
];
for (const r of rows) {
  const s = r.seconds;
  md.push(
    `| ${r.model} | ${r.method}${r.refit ? ' (refit)' : ''} | ${round(s.uploadModel + s.uploadData)} (${s.uploadModel} + ${s.uploadData}) | ${s.register} | ${s.queued ?? '—'} | ${s.job ?? '—'} | ` +
      `**${s.total}** | ${r.meetsTarget ? 'met' : r.status === 'SUCCEEDED' ? 'not met' : r.status} | ` +
      `${r.plan ? `${r.plan.removed} units, ×${r.plan.predictedSpeedup}` : (r.error?.code ?? '—')} | ${r.loadAverage.join(', ')} |`,
  );
}
md.push('', '## Phases of the plan job', '');
for (const r of rows) {
  md.push(`- ${r.model} ${r.method}: ${r.phases.map((p) => `${p.phase} ${p.seconds} s`).join(' → ') || 'no progress reported'}`);
}
md.push('');
writeFileSync(join(out, 'upload-plan.md'), md.join('\n'));
console.log(`wrote ${join('bench', 'results', 'upload-plan.md')}`);
if (rows.some((r) => r.status !== 'SUCCEEDED')) process.exitCode = 1;
