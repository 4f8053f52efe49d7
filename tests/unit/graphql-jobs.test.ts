import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InProcessJobQueue } from '../../service/src/jobs/in-process-queue.js';
import type { JobProgress, JobRecord, JobSpec } from '../../service/src/jobs/job.js';
import type { JobOutcome, JobRunner, RunningJob } from '../../service/src/jobs/job-queue.js';
import { JobService } from '../../service/src/jobs/job.service.js';
import { RecordStore } from '../../service/src/store/record-store.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-jobs-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A runner whose jobs end when the test says so. */
class FakeRunner implements JobRunner {
  readonly runs: { id: string; spec: JobSpec; finish(o: JobOutcome): void; progress(p: JobProgress): void; stoppedBy?: string }[] = [];

  run(id: string, spec: JobSpec, onProgress: (p: JobProgress) => void): RunningJob {
    let finish!: (o: JobOutcome) => void;
    const done = new Promise<JobOutcome>((r) => (finish = r));
    const entry: FakeRunner['runs'][number] = { id, spec, finish, progress: onProgress };
    this.runs.push(entry);
    return {
      done,
      stop: (reason) => {
        entry.stoppedBy = reason;
        finish(reason === 'cancelled' ? { status: 'cancelled' } : { status: 'failed', error: { code: 'INTERRUPTED', message: 'interrupted' } });
      },
    };
  }
}

let n = 0;
function spec(model = 'a'.repeat(64)): JobSpec {
  return { provider: 'cpu', threads: null, kind: 'structure', input: { modelSha256: model, datasetSha256: null, shapes: [] } };
}

function service(folder: string, runner: FakeRunner, concurrency = 1) {
  const clock = () => new Date(Date.UTC(2025, 0, 1, 0, 0, n++));
  return new JobService({
    records: new RecordStore<JobRecord>(join(dir, folder)),
    queue: (events) => new InProcessJobQueue({ concurrency, runner, events }),
    clock,
  });
}

const tick = () => new Promise((r) => setImmediate(r));
const result: JobOutcome = { status: 'succeeded', result: { kind: 'structure', units: [], warnings: [], inputShapes: [] } };

test('equal specs share a job; a finished result comes back at once', async () => {
  const runner = new FakeRunner();
  const jobs = service('share', runner);
  jobs.recover();
  const a = jobs.submit(spec());
  assert.equal(a.state.status, 'running', 'started at once: the queue was empty');
  assert.equal(jobs.submit(spec()).id, a.id);
  runner.runs[0]!.finish(result);
  await tick();
  const again = jobs.submit(spec());
  assert.equal(again.id, a.id);
  assert.equal(again.state.status, 'succeeded');
  assert.equal(runner.runs.length, 1);
});

test('a failed job is tried again when asked again', async () => {
  const runner = new FakeRunner();
  const jobs = service('retry', runner);
  jobs.recover();
  const a = jobs.submit(spec());
  runner.runs[0]!.finish({ status: 'failed', error: { code: 'WORKER_CRASHED', message: 'gone' } });
  await tick();
  assert.equal(jobs.get(a.id).state.status, 'failed');
  const b = jobs.submit(spec());
  assert.notEqual(b.id, a.id);
  assert.equal(runner.runs.length, 2);
});

test('jobs wait for a free slot, in order; a queued or running job can be cancelled', async () => {
  const runner = new FakeRunner();
  const jobs = service('queue', runner, 1);
  jobs.recover();
  const a = jobs.submit(spec('1'.repeat(64)));
  const b = jobs.submit(spec('2'.repeat(64)));
  const c = jobs.submit(spec('3'.repeat(64)));
  assert.deepEqual([a, b, c].map((j) => jobs.get(j.id).state.status), ['running', 'queued', 'queued']);
  assert.equal(jobs.waiting, 2);
  assert.equal(jobs.cancel(b.id).state.status, 'cancelled');
  jobs.cancel(a.id);
  await tick();
  assert.equal(runner.runs[0]!.stoppedBy, 'cancelled');
  assert.equal(jobs.get(a.id).state.status, 'cancelled');
  assert.equal(jobs.get(c.id).state.status, 'running', 'the next one starts when a slot frees');
  assert.equal(runner.runs.length, 2);
  assert.deepEqual(jobs.counts(), { queued: 0, running: 1, succeeded: 0, failed: 0, cancelled: 2 });
});

test('watch yields the job and every change, and ends when it finishes', async () => {
  const runner = new FakeRunner();
  const jobs = service('watch', runner);
  jobs.recover();
  const a = jobs.submit(spec());
  const seen: string[] = [];
  const reading = (async () => {
    for await (const j of jobs.watch(a.id)) seen.push(`${j.state.status}:${j.progress?.phase ?? ''}`);
  })();
  await tick();
  runner.runs[0]!.progress({ phase: 'similarity', fraction: 0.5, message: null });
  await tick();
  runner.runs[0]!.finish(result);
  await reading;
  assert.deepEqual(seen, ['running:starting', 'running:similarity', 'succeeded:done']);
});

test('after a restart, running jobs are failed as interrupted and queued ones run again', async () => {
  const first = new FakeRunner();
  const before = service('restart', first, 1);
  before.recover();
  const running = before.submit(spec('4'.repeat(64)));
  const queued = before.submit(spec('5'.repeat(64)));
  const later = before.submit(spec('6'.repeat(64)));
  // the process "dies" here: nothing more is written by `before`
  const second = new FakeRunner();
  const after = service('restart', second, 1);
  assert.deepEqual(after.recover(), { requeued: 2, interrupted: 1 });
  const r = after.get(running.id);
  assert.equal(r.state.status, 'failed');
  assert.equal(r.state.status === 'failed' && r.state.error.code, 'INTERRUPTED');
  assert.match(r.state.status === 'failed' ? r.state.error.message : '', /interrupted by a restart/);
  assert.equal(after.get(queued.id).state.status, 'running');
  assert.equal(after.get(later.id).state.status, 'queued');
  assert.deepEqual(second.runs.map((x) => x.id), [queued.id]);
});

test('shutdown waits for running jobs up to the grace period, then stops them as interrupted', async () => {
  const runner = new FakeRunner();
  const jobs = service('shutdown', runner, 2);
  jobs.recover();
  const quick = jobs.submit(spec('7'.repeat(64)));
  const slow = jobs.submit(spec('8'.repeat(64)));
  const waiting = jobs.submit(spec('9'.repeat(64)));
  setTimeout(() => runner.runs[0]!.finish(result), 20);
  await jobs.shutdown(200);
  assert.equal(jobs.get(quick.id).state.status, 'succeeded');
  const s = jobs.get(slow.id);
  assert.equal(s.state.status === 'failed' && s.state.error.code, 'INTERRUPTED');
  assert.equal(jobs.get(waiting.id).state.status, 'queued', 'left for the next start');
});

test('a watcher that stops early is let go at once, even while it waits for a change', async () => {
  const runner = new FakeRunner();
  const jobs = service('unwatch', runner);
  jobs.recover();
  const a = jobs.submit(spec());
  const it = jobs.watch(a.id);
  assert.equal((await it.next()).value?.state.status, 'running');
  const waiting = it.next();
  await it.return!();
  assert.deepEqual(await waiting, { value: undefined, done: true });
  assert.throws(() => jobs.watch('nope'), /no job with id "nope"/);
});
