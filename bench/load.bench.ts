/**
 * Load on the service: many clients asking for a plan that is already computed (the cached path
 * a CI pipeline takes on every run), over real HTTP on loopback, the service in its own process
 * as deployed. Bounded in requests and in time. Reference measured in the same run: /healthz
 * under the same concurrency, the cost of the HTTP stack alone; the plan figures are also given
 * as ratios to it.
 *
 *   npm run build && node dist/bench/load.bench.js [--clients 50] [--requests 40] [--seconds 60]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { quantile } from '../service/src/runtime/latency.js';
import { CALIB_DATA, fixtureModel, ROOT } from '../tests/helpers/paths.js';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '50' },
    requests: { type: 'string', default: '40' },
    seconds: { type: 'string', default: '60' },
  },
});
const clients = Number(values.clients);
const perClient = Number(values.requests);
const deadline = Date.now() + Number(values.seconds) * 1000;

const token = 'load-bench-token-0123456789';
const headers = { Authorization: `Bearer ${token}` };
const dir = mkdtempSync(join(tmpdir(), 'strata-load-'));
const service = spawn(process.execPath, [join(ROOT, 'dist', 'service', 'src', 'main.js')], {
  env: { ...process.env, STRATA_DATA_DIR: dir, STRATA_PORT: '0', STRATA_TOKEN: token, STRATA_LOG_LEVEL: 'info' },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const stopped = new Promise((r) => service.once('exit', r));
// logs at info, as deployed (one line per request); the first line with a url says where it listens
const base = await new Promise<string>((resolve, reject) => {
  let buffer: string | null = '';
  service.stdout!.on('data', (c: Buffer) => {
    if (buffer === null) return;
    buffer += c.toString();
    const m = /"url":"(http:[^"]+)"/.exec(buffer);
    if (m) {
      buffer = null;
      resolve(m[1]!);
    }
  });
  void stopped.then(() => reject(new Error('the service exited before listening')));
});

async function gql(query: string, variables?: unknown): Promise<{ data?: Record<string, { id: string; status: string }>; errors?: unknown[] }> {
  const r = await fetch(`${base}/graphql`, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify({ query, variables }) });
  if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
  return (await r.json()) as { data?: Record<string, { id: string; status: string }>; errors?: unknown[] };
}

async function upload(path: string): Promise<string> {
  const r = await fetch(`${base}/upload`, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/octet-stream' }, body: readFileSync(path) });
  return ((await r.json()) as { sha256: string }).sha256;
}

/** `clients` loops, each sending up to `perClient` requests in turn, until done or past the deadline. */
async function load(request: () => Promise<boolean>) {
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = 0; i < perClient && Date.now() < deadline; i++) {
        const t0 = performance.now();
        let good = false;
        try {
          good = await request();
        } catch {
          good = false;
        }
        latencies.push(performance.now() - t0);
        if (!good) errors++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    errors,
    p50Ms: +quantile(latencies, 0.5).toFixed(3),
    p99Ms: +quantile(latencies, 0.99).toFixed(3),
    maxMs: +latencies[latencies.length - 1]!.toFixed(3),
    perSecond: +(latencies.length / seconds).toFixed(1),
  };
}

try {
  const reg = await gql('mutation ($m: String!, $d: String!) { registerModel(sha256: $m, name: "resnet20") { id } registerDataset(sha256: $d, name: "calib") { id } }', {
    m: await upload(fixtureModel('resnet20')),
    d: await upload(CALIB_DATA),
  });
  const input = { model: reg.data!.registerModel!.id, dataset: reg.data!.registerDataset!.id, samples: 64, batchSize: 32, latencyBatch: 8, budget: { remove: 2 } };
  const planQuery = 'query ($i: PlanInput!) { plan(input: $i) { id status result { ... on PlanResult { remove predictedLatencyMs } } } }';
  const first = await gql(planQuery, { i: input });
  const id = first.data!.plan!.id;
  const computeStarted = performance.now();
  for (;;) {
    const r = await gql('query ($id: ID!) { job(id: $id) { id status } }', { id });
    if (r.data!.job!.status === 'SUCCEEDED') break;
    if (r.data!.job!.status !== 'QUEUED' && r.data!.job!.status !== 'RUNNING') throw new Error(`the plan job ended ${r.data!.job!.status}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  const computeMs = performance.now() - computeStarted;

  // connections opened and code paths warm before anything is timed
  await Promise.all(Array.from({ length: clients }, () => gql(planQuery, { i: input })));
  const healthz = await load(async () => (await fetch(`${base}/healthz`)).status === 200);
  const plan = await load(async () => {
    const r = await gql(planQuery, { i: input });
    return r.errors === undefined && r.data!.plan!.id === id && r.data!.plan!.status === 'SUCCEEDED';
  });
  console.log(
    JSON.stringify({
      bench: 'load',
      clients,
      requestsPerClient: perClient,
      planComputeMs: Math.round(computeMs),
      reference: { route: '/healthz', ...healthz },
      cachedPlan: { route: 'POST /graphql plan(input)', ...plan },
      ratios: { p50: +(plan.p50Ms / healthz.p50Ms).toFixed(2), p99: +(plan.p99Ms / healthz.p99Ms).toFixed(2) },
    }),
  );
  if (plan.errors > 0 || healthz.errors > 0) process.exitCode = 1;
} finally {
  service.kill('SIGTERM');
  await stopped;
  rmSync(dir, { recursive: true, force: true });
}
