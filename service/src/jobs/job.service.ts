import { randomUUID } from 'node:crypto';
import { StrataError, UnreachableCaseError } from '../core/errors.js';
import type { RecordStore } from '../store/record-store.js';
import { cacheKey } from './cache-key.js';
import { isTerminal, type JobKind, type JobProgress, type JobRecord, type JobSpec, type JobStatus } from './job.js';
import type { JobEvents, JobOutcome, JobQueue } from './job-queue.js';

export interface JobServiceOptions {
  records: RecordStore<JobRecord>;
  /** builds the queue, which reports back through `events` */
  queue: (events: JobEvents) => JobQueue;
  clock: () => Date;
}

export type JobListener = (job: JobRecord) => void;

/**
 * Jobs as records: created from specs, found again by their inputs (equal specs share one job,
 * so a finished result comes back at once), moved through their states as the queue reports, and
 * written to the store on every change of state.
 */
export class JobService {
  private readonly records: RecordStore<JobRecord>;
  private readonly queue: JobQueue;
  private readonly clock: () => Date;
  private readonly byKey = new Map<string, string>();
  private readonly listeners = new Set<JobListener>();

  constructor(options: JobServiceOptions) {
    this.records = options.records;
    this.clock = options.clock;
    this.queue = options.queue({
      started: (id) => this.started(id),
      progress: (id, p) => this.progressed(id, p),
      finished: (id, outcome) => this.finished(id, outcome),
    });
  }

  /**
   * Reads the stored jobs after a start: a job that was running when the last process ended is
   * failed (its worker went with it), a queued one is queued again, finished ones are served.
   */
  recover(): { requeued: number; interrupted: number } {
    let requeued = 0;
    let interrupted = 0;
    const jobs = this.records.load().sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    for (const job of jobs) {
      switch (job.state.status) {
        case 'running':
          this.save({
            ...job,
            state: {
              status: 'failed',
              startedAt: job.state.startedAt,
              finishedAt: this.now(),
              error: { code: 'INTERRUPTED', message: 'interrupted by a restart of the service while the job ran' },
            },
          });
          interrupted++;
          break;
        case 'queued':
          this.byKey.set(job.cacheKey, job.id);
          this.queue.submit(job.id, job.spec);
          requeued++;
          break;
        case 'succeeded':
          this.byKey.set(job.cacheKey, job.id);
          break;
        case 'failed':
        case 'cancelled':
          break;
        default:
          throw new UnreachableCaseError(job.state);
      }
    }
    return { requeued, interrupted };
  }

  /**
   * The job for `spec`: the existing one when an equal spec is queued, running or succeeded;
   * a new one otherwise (a failed or cancelled job is tried again).
   */
  submit(spec: JobSpec): JobRecord {
    const key = cacheKey(spec);
    const existingId = this.byKey.get(key);
    const existing = existingId === undefined ? undefined : this.records.get(existingId);
    if (existing && (existing.state.status === 'queued' || existing.state.status === 'running' || existing.state.status === 'succeeded')) {
      return existing;
    }
    const job: JobRecord = { id: randomUUID(), cacheKey: key, createdAt: this.now(), spec, state: { status: 'queued' }, progress: null };
    this.save(job);
    this.byKey.set(key, job.id);
    this.queue.submit(job.id, spec);
    // the queue may have started it already
    return this.get(job.id);
  }

  get(id: string): JobRecord {
    const job = this.records.get(id);
    if (!job) throw new StrataError('NOT_FOUND', `no job with id "${id}"`, { id });
    return job;
  }

  /** Newest first. */
  list(filter: { status?: JobStatus; kind?: JobKind; limit: number }): JobRecord[] {
    return this.records
      .all()
      .filter((j) => (filter.status === undefined || j.state.status === filter.status) && (filter.kind === undefined || j.spec.kind === filter.kind))
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt) || a.id.localeCompare(b.id))
      .slice(0, filter.limit);
  }

  /** Stops a job that has not finished; a finished job is returned as it is. */
  cancel(id: string): JobRecord {
    const job = this.get(id);
    if (isTerminal(job.state)) return job;
    // recorded now: a running job's process is being killed, and whatever it reports from here
    // on (even a result that raced the kill) is ignored
    this.queue.cancel(id);
    this.finished(id, { status: 'cancelled' });
    return this.get(id);
  }

  /** Calls `listener` on every change to any job; returns the unsubscribe function. */
  subscribe(listener: JobListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The job now, then after every change, ending once it has finished. An unknown id throws at
   * once (NOT_FOUND). Ending it early (return()) takes effect at once, even while it waits.
   */
  watch(id: string): AsyncIterableIterator<JobRecord> {
    const pending: JobRecord[] = [this.get(id)];
    let last: JobRecord | undefined;
    let ended = false;
    let wake: (() => void) | undefined;
    const unsubscribe = this.subscribe((j) => {
      if (j.id !== id || ended) return;
      pending.push(j);
      wake?.();
    });
    const end = () => {
      ended = true;
      unsubscribe();
      wake?.();
    };
    const iterator: AsyncIterableIterator<JobRecord> = {
      next: async () => {
        for (;;) {
          if (ended || (last && isTerminal(last.state))) {
            end();
            return { value: undefined, done: true };
          }
          const next = pending.shift();
          if (next) {
            last = next;
            return { value: next, done: false };
          }
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      },
      return: async () => {
        end();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  counts(): Record<JobStatus, number> {
    const out: Record<JobStatus, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const j of this.records.all()) out[j.state.status]++;
    return out;
  }

  get waiting(): number {
    return this.queue.waiting;
  }

  async shutdown(graceMs: number): Promise<void> {
    await this.queue.shutdown(graceMs);
  }

  private started(id: string): void {
    const job = this.records.get(id);
    if (!job || job.state.status !== 'queued') return;
    this.save({ ...job, state: { status: 'running', startedAt: this.now() }, progress: { phase: 'starting', fraction: null, message: null } });
  }

  private progressed(id: string, progress: JobProgress): void {
    const job = this.records.get(id);
    if (!job || job.state.status !== 'running') return;
    // progress is not worth a disk write: after a restart a running job is failed anyway
    const next = { ...job, progress };
    this.records.remember(next);
    this.emit(next);
  }

  private finished(id: string, outcome: JobOutcome): void {
    const job = this.records.get(id);
    if (!job || isTerminal(job.state)) return;
    const startedAt = job.state.status === 'running' ? job.state.startedAt : null;
    const finishedAt = this.now();
    switch (outcome.status) {
      case 'succeeded':
        this.save({
          ...job,
          state: { status: 'succeeded', startedAt: startedAt ?? finishedAt, finishedAt, result: outcome.result },
          progress: { phase: 'done', fraction: 1, message: null },
        });
        break;
      case 'failed':
        this.save({ ...job, state: { status: 'failed', startedAt, finishedAt, error: outcome.error } });
        break;
      case 'cancelled':
        this.save({ ...job, state: { status: 'cancelled', startedAt, finishedAt } });
        break;
      default:
        throw new UnreachableCaseError(outcome);
    }
  }

  private save(job: JobRecord): void {
    this.records.put(job);
    this.emit(job);
  }

  private emit(job: JobRecord): void {
    for (const l of this.listeners) {
      try {
        l(job);
      } catch {
        // one listener's failure must not stop the others or the job's bookkeeping
      }
    }
  }

  private now(): string {
    return this.clock().toISOString();
  }
}
