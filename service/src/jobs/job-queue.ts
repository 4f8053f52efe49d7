import type { JobError, JobProgress, JobResult, JobSpec } from './job.js';

export type JobOutcome = { status: 'succeeded'; result: JobResult } | { status: 'failed'; error: JobError } | { status: 'cancelled' };

/** What a queue reports about the jobs it runs; the job service keeps the records. */
export interface JobEvents {
  started(id: string): void;
  progress(id: string, progress: JobProgress): void;
  finished(id: string, outcome: JobOutcome): void;
}

/**
 * Where jobs wait and run. The in-process queue is the default; a distributed backend (jobs in a
 * shared queue, run by workers on other hosts) implements the same interface.
 */
export interface JobQueue {
  submit(id: string, spec: JobSpec): void;
  /** Takes a waiting job out, or stops a running one; either then finishes as cancelled. False when the queue does not hold the job. */
  cancel(id: string): boolean;
  /** jobs waiting for a slot */
  readonly waiting: number;
  readonly running: number;
  /**
   * Starts nothing more and waits up to `graceMs` for the running jobs; those still running then
   * are stopped and finish as failed (INTERRUPTED). Waiting jobs are dropped unreported: their
   * records stay queued, to be submitted again by the next start.
   */
  shutdown(graceMs: number): Promise<void>;
}

/** One job being run somewhere; `done` always resolves, whatever happens to the job. */
export interface RunningJob {
  readonly done: Promise<JobOutcome>;
  stop(reason: 'cancelled' | 'shutdown'): void;
}

/** Runs one job away from the process serving requests. */
export interface JobRunner {
  run(id: string, spec: JobSpec, onProgress: (progress: JobProgress) => void): RunningJob;
}
