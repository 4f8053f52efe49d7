/**
 * Jobs run in child processes: what happens when one crashes, hangs, reports, or is cancelled;
 * and that a crashing worker costs its job only.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../service/src/config.js';
import { StrataApp } from '../../service/src/graphql/app.js';
import { ChildProcessRunner } from '../../service/src/jobs/child-process-runner.js';
import type { JobProgress, JobSpec } from '../../service/src/jobs/job.js';
import { fixtureModel } from '../helpers/paths.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-worker-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in worker: gets the run message, then does `body` (with `m` the message). */
function worker(name: string, body: string): string {
  const path = join(dir, `${name}.mjs`);
  writeFileSync(
    path,
    `import { writeFileSync } from 'node:fs';\nimport { join } from 'node:path';\nprocess.once('message', (m) => {\n  writeFileSync(join(m.dataDir, '${name}.pid'), String(process.pid));\n  ${body}\n});\n`,
  );
  return path;
}

const spec: JobSpec = { provider: 'cpu', threads: null, kind: 'structure', input: { modelSha256: 'a'.repeat(64), datasetSha256: null, shapes: [] } };

function runWith(entry: string, timeoutMs = 30_000) {
  const progress: JobProgress[] = [];
  const job = new ChildProcessRunner({ dataDir: dir, timeoutMs, workerEntry: entry }).run('job-1', spec, (p) => progress.push(p));
  return { job, progress };
}

function data<T>(r: Awaited<ReturnType<StrataApp['execute']>>): T {
  assert.equal(r.body.kind, 'single');
  return (r.body as unknown as { singleResult: { data: T } }).singleResult.data;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('a worker that reports progress and a result: the job succeeds with it', async () => {
  const { job, progress } = runWith(
    worker(
      'good',
      `process.send({ type: 'progress', phase: 'working', fraction: 0.5, message: 'half' });
  process.send({ type: 'result', result: { kind: 'structure', units: [], warnings: ['w'], inputShapes: [] } }, () => process.exit(0));`,
    ),
  );
  const outcome = await job.done;
  assert.deepEqual(outcome, { status: 'succeeded', result: { kind: 'structure', units: [], warnings: ['w'], inputShapes: [] } });
  assert.deepEqual(progress, [{ phase: 'working', fraction: 0.5, message: 'half' }]);
});

test('CRASH - a worker killed by a signal or exiting without a result fails its job as WORKER_CRASHED', async () => {
  // SIGKILL stands for any fatal signal (a segfault in native code) without leaving a core file
  const killed = await runWith(worker('killed', `process.kill(process.pid, 'SIGKILL');`)).job.done;
  assert.equal(killed.status, 'failed');
  assert.equal(killed.status === 'failed' && killed.error.code, 'WORKER_CRASHED');
  assert.match(killed.status === 'failed' ? killed.error.message : '', /killed by SIGKILL/);
  const exit = await runWith(worker('exit', `process.exit(3);`)).job.done;
  assert.match(exit.status === 'failed' ? exit.error.message : '', /exited with code 3/);
});

test('HANG - a worker past the time limit is killed and its job fails as JOB_TIMEOUT', async () => {
  const started = Date.now();
  const outcome = await runWith(worker('hang', `setInterval(() => {}, 1000);`), 300).job.done;
  assert.equal(outcome.status === 'failed' && outcome.error.code, 'JOB_TIMEOUT');
  assert.ok(Date.now() - started < 5000);
  assert.ok(!alive(Number(readFileSync(join(dir, 'hang.pid'), 'utf8'))), 'the process is gone');
});

test('CANCEL - stopping a running job kills its process; the job ends cancelled', async () => {
  const { job } = runWith(worker('cancel', `setInterval(() => {}, 1000);`));
  const pidFile = join(dir, 'cancel.pid');
  while (!existsSync(pidFile)) await new Promise((r) => setTimeout(r, 20));
  const pid = Number(readFileSync(pidFile, 'utf8'));
  assert.ok(alive(pid));
  job.stop('cancelled');
  assert.deepEqual(await job.done, { status: 'cancelled' });
  assert.ok(!alive(pid));
});

test('a crashing worker fails that job only: the service goes on answering and running jobs', async () => {
  const config = parseConfig({ STRATA_LOG_LEVEL: 'silent' }, { dataDir: join(dir, 'app'), port: '0' });
  const crashing = new ChildProcessRunner({ dataDir: config.dataDir, timeoutMs: 30_000, workerEntry: worker('crash', `process.kill(process.pid, 'SIGKILL');`) });
  const app = await StrataApp.open(config, { runner: crashing });
  try {
    const { sha256 } = app.artifacts.put(new Uint8Array(readFileSync(fixtureModel('resnet20'))));
    const reg = await app.execute({ query: `mutation ($s: String!) { registerModel(sha256: $s, name: "r") { id } }`, variables: { s: sha256 } });
    const id = data<{ registerModel: { id: string } }>(reg).registerModel.id;
    const asked = await app.execute({ query: `query ($m: ID!) { structure(input: { model: $m }) { id } }`, variables: { m: id } });
    const jobId = data<{ structure: { id: string } }>(asked).structure.id;
    let job = app.services.jobs.get(jobId);
    while (job.state.status === 'queued' || job.state.status === 'running') {
      await new Promise((r) => setTimeout(r, 50));
      job = app.services.jobs.get(jobId);
    }
    assert.equal(job.state.status === 'failed' && job.state.error.code, 'WORKER_CRASHED');
    const after = await app.execute({ query: '{ models { id } }' });
    assert.equal(data<{ models: unknown[] }>(after).models.length, 1);
  } finally {
    await app.close(0);
  }
});
