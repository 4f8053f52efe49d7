import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { JobErrorCode, JobProgress, JobSpec } from './job.js';
import type { JobOutcome, JobRunner, RunningJob } from './job-queue.js';
import { isWorkerMessage, type RunMessage } from './worker-protocol.js';

/** The compiled worker entry, beside this file. */
export const WORKER_ENTRY = fileURLToPath(new URL('./worker.js', import.meta.url));

export interface ChildRunnerOptions {
  dataDir: string;
  timeoutMs: number;
  workerEntry?: string;
  /** where a worker's stderr and unexpected ends are reported */
  log?: (level: 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
}

const STDERR_TAIL = 8 * 1024;

/**
 * Each job in its own child process (a fork of the worker entry), talking over IPC. The model is
 * untrusted input to onnxruntime's native code: if it crashes or hangs the process, that process
 * and its job are lost, never the service. Stopping a job kills its process.
 */
export class ChildProcessRunner implements JobRunner {
  constructor(private readonly options: ChildRunnerOptions) {}

  run(id: string, spec: JobSpec, onProgress: (progress: JobProgress) => void): RunningJob {
    const { dataDir, timeoutMs, log } = this.options;
    let reported: JobOutcome | undefined;
    let stopped: 'cancelled' | 'shutdown' | 'timeout' | undefined;
    let stderr = '';
    let resolveDone!: (o: JobOutcome) => void;
    const done = new Promise<JobOutcome>((r) => (resolveDone = r));

    const child = fork(this.options.workerEntry ?? WORKER_ENTRY, [], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      // the service's own flags (a test runner's, an inspector) are not the worker's business
      execArgv: [],
      serialization: 'json',
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      stderr = (stderr + s).slice(-STDERR_TAIL);
    });
    const timer = setTimeout(() => {
      stopped ??= 'timeout';
      child.kill('SIGKILL');
    }, timeoutMs);
    timer.unref();

    child.on('message', (m: unknown) => {
      if (!isWorkerMessage(m) || reported) return;
      switch (m.type) {
        case 'progress':
          onProgress({ phase: m.phase, fraction: m.fraction, message: m.message });
          break;
        case 'result':
          reported = { status: 'succeeded', result: m.result };
          break;
        case 'error':
          if (m.detail) log?.('error', 'job failed unexpectedly', { job: id, detail: m.detail });
          reported = { status: 'failed', error: { code: m.code, message: m.message } };
          break;
      }
    });

    let finished = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      let outcome: JobOutcome;
      const failed = (code: JobErrorCode, message: string): JobOutcome => ({ status: 'failed', error: { code, message } });
      if (stopped === 'cancelled' && !reported) outcome = { status: 'cancelled' };
      else if (stopped === 'shutdown' && !reported) outcome = failed('INTERRUPTED', 'interrupted: the service shut down while the job ran');
      else if (stopped === 'timeout' && !reported) {
        outcome = failed('JOB_TIMEOUT', `the job ran longer than the limit of ${Math.round(timeoutMs / 1000)} s (STRATA_JOB_TIMEOUT_S) and was stopped`);
      } else if (reported) outcome = reported;
      else {
        const how = spawnError ? `could not start: ${spawnError.message}` : signal ? `was killed by ${signal}` : `exited with code ${code}`;
        log?.('error', 'job worker ended without a result', { job: id, code, signal, stderr: stderr.trim() });
        outcome = failed('WORKER_CRASHED', `the worker process running the job ${how} before it finished`);
      }
      resolveDone(outcome);
    };
    // 'close' comes after the process has exited and its IPC channel and stderr are drained, so
    // every message it sent has been seen
    child.on('close', (code, signal) => finish(code, signal));
    child.on('error', (e) => {
      if (child.pid === undefined) finish(null, null, e);
    });

    const message: RunMessage = { type: 'run', id, spec, dataDir };
    child.send(message, (e) => {
      if (e) child.kill('SIGKILL');
    });

    return {
      done,
      stop: (reason) => {
        if (finished || reported) return;
        stopped ??= reason;
        child.kill('SIGKILL');
      },
    };
  }
}
