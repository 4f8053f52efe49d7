/**
 * The service as a container runs it: `node dist/service/src/main.js`, configured by the
 * environment; signals, a crash, restarts on one data directory.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CALIB_DATA, EVAL_DATA, fixtureModel, ROOT } from '../helpers/paths.js';

const MAIN = join(ROOT, 'dist', 'service', 'src', 'main.js');
const TOKEN = 'process-token-0123456789';
const auth = { Authorization: `Bearer ${TOKEN}` };

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-process-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, STRATA_DATA_DIR: join(dir, 'data'), STRATA_PORT: '0', STRATA_TOKEN: TOKEN, STRATA_SHUTDOWN_GRACE_S: '0', STRATA_LOG_LEVEL: 'info', ...extra };
}

interface Service {
  child: ChildProcess;
  url: string;
  logs: Record<string, unknown>[];
  exited: Promise<number | null>;
}

/** Starts main.js and waits for its "listening" log line. */
async function start(extra: Record<string, string> = {}): Promise<Service> {
  const child = spawn(process.execPath, [MAIN], { env: env(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Record<string, unknown>[] = [];
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let buffer = '';
    child.stdout!.on('data', (c: Buffer) => {
      buffer += c.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue; // not a log line (a native library's own output)
        }
        logs.push(entry);
        if (entry.msg === 'strata service listening') resolve(String(entry.url));
      }
    });
    void exited.then((code) => reject(new Error(`the service exited (${code}) before listening: ${stderr}`)));
  });
  return { child, url, logs, exited };
}

async function gql<T>(s: Service, query: string, variables?: Record<string, unknown>): Promise<T> {
  const r = await fetch(`${s.url}/graphql`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...auth }, body: JSON.stringify({ query, variables }) });
  const body = (await r.json()) as { data: T; errors?: unknown };
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

async function upload(s: Service, path: string): Promise<string> {
  const r = await fetch(`${s.url}/upload`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream', ...auth }, body: readFileSync(path) });
  assert.equal(r.status, 201);
  return ((await r.json()) as { sha256: string }).sha256;
}

async function job(s: Service, id: string) {
  return (await gql<{ job: { status: string; error: { code: string; message: string } | null } }>(s, 'query ($id: ID!) { job(id: $id) { status error { code message } } }', { id })).job;
}

async function until(s: Service, id: string, status: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await job(s, id)).status !== status) {
    assert.ok(Date.now() < deadline, `job never became ${status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('BAD CONFIG - a host that is not loopback without a token: exit 1 with the reason, nothing started', () => {
  const r = spawnSync(process.execPath, [MAIN], { env: env({ STRATA_HOST: '0.0.0.0', STRATA_TOKEN: '' }), encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^strata: STRATA_TOKEN: is required when the service listens on 0\.0\.0\.0, which is not a loopback address/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});

test('SIGTERM stops a running job (INTERRUPTED); a crash leaves none running either: the next start fails it', async () => {
  let s = await start();
  const model = await upload(s, fixtureModel('resnet20'));
  const data = await upload(s, CALIB_DATA);
  const evalData = await upload(s, EVAL_DATA);
  const reg = await gql<{ m: { id: string }; d: { id: string }; e: { id: string } }>(
    s,
    'mutation ($m: String!, $d: String!, $e: String!) { m: registerModel(sha256: $m, name: "r") { id } d: registerDataset(sha256: $d, name: "c") { id } e: registerDataset(sha256: $e, name: "e") { id } }',
    { m: model, d: data, e: evalData },
  );
  // a sweep with evaluation: long enough to be caught running
  const sweep = (budgets: unknown[]) =>
    gql<{ tradeoff: { id: string } }>(s, 'query ($i: TradeoffInput!) { tradeoff(input: $i) { id } }', {
      i: { model: reg.m.id, dataset: reg.d.id, evalDataset: reg.e.id, samples: 64, batchSize: 32, latencyBatch: 8, budgets },
    });

  const first = (await sweep([{ remove: 1 }, { remove: 2 }, { remove: 3 }, { remove: 4 }])).tradeoff.id;
  await until(s, first, 'RUNNING');
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0);
  assert.ok(s.logs.some((l) => l.msg === 'stopped'));

  s = await start();
  const j1 = await job(s, first);
  assert.equal(j1.status, 'FAILED');
  assert.equal(j1.error?.code, 'INTERRUPTED');
  assert.match(j1.error!.message, /shut down/);

  const second = (await sweep([{ remove: 1 }, { remove: 2 }, { remove: 3 }, { remove: 5 }])).tradeoff.id;
  await until(s, second, 'RUNNING');
  s.child.kill('SIGKILL');
  await s.exited;

  s = await start();
  try {
    const j2 = await job(s, second);
    assert.equal(j2.status, 'FAILED');
    assert.equal(j2.error?.code, 'INTERRUPTED');
    assert.match(j2.error!.message, /restart/);
    assert.equal((await job(s, first)).error?.code, 'INTERRUPTED');
    assert.ok(s.logs.some((l) => l.msg === 'jobs recovered from the data directory' && l.interrupted === 1));
    assert.equal((await fetch(`${s.url}/readyz`)).status, 200);

    const twin = spawnSync(process.execPath, [MAIN], { env: env(), encoding: 'utf8', timeout: 20_000 });
    assert.equal(twin.status, 1, 'a second service on the same data directory refuses to start');
    assert.match(twin.stderr, /in use by another strata service/);
  } finally {
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
  }
});

test('LOCK - one service per data directory: a second start is refused naming the holder; a stop releases it; a killed one\'s lock is taken over', async () => {
  const dataDir = join(dir, 'locked');
  const lockFile = join(dataDir, 'strata.lock');
  const holderPid = () => (JSON.parse(readFileSync(lockFile, 'utf8')) as { pid: number }).pid;
  let s = await start({ STRATA_DATA_DIR: dataDir });
  try {
    assert.equal(holderPid(), s.child.pid);
    const twin = spawnSync(process.execPath, [MAIN], { env: env({ STRATA_DATA_DIR: dataDir }), encoding: 'utf8', timeout: 20_000 });
    assert.equal(twin.status, 1);
    const lines = twin.stderr.trim().split('\n');
    assert.equal(lines.length, 1, twin.stderr);
    assert.ok(
      lines[0]!.startsWith(`strata: the data directory ${dataDir} is in use by another strata service (pid ${s.child.pid} on host `),
      lines[0],
    );
    assert.ok(lines[0]!.endsWith(`if that service is no longer running, delete ${lockFile}`), lines[0]);
    assert.equal((await fetch(`${s.url}/healthz`)).status, 200, 'the refused start disturbed the running service');
  } finally {
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
  }
  assert.ok(!existsSync(lockFile), 'a graceful stop leaves the data directory locked');

  s = await start({ STRATA_DATA_DIR: dataDir });
  const killed = s.child.pid;
  s.child.kill('SIGKILL');
  await s.exited;
  assert.equal(holderPid(), killed, 'a killed service leaves its lock');

  s = await start({ STRATA_DATA_DIR: dataDir });
  try {
    assert.equal(holderPid(), s.child.pid, 'the stale lock was taken over');
    assert.equal((await fetch(`${s.url}/readyz`)).status, 200);
  } finally {
    s.child.kill('SIGTERM');
    assert.equal(await s.exited, 0);
  }
});
