import type { JobSpec } from './job.js';
import type { JobEvents, JobQueue, JobRunner, RunningJob } from './job-queue.js';

export interface InProcessQueueOptions {
  /** jobs running at once */
  concurrency: number;
  runner: JobRunner;
  events: JobEvents;
}

/** First come, first served, with at most `concurrency` jobs running; the jobs themselves run in the runner's processes. */
export class InProcessJobQueue implements JobQueue {
  private readonly pending: { id: string; spec: JobSpec }[] = [];
  private readonly active = new Map<string, RunningJob>();
  private closing = false;

  constructor(private readonly options: InProcessQueueOptions) {
    if (!Number.isSafeInteger(options.concurrency) || options.concurrency < 1) {
      throw new RangeError(`concurrency must be a positive integer, got ${options.concurrency}`);
    }
  }

  get waiting(): number {
    return this.pending.length;
  }

  get running(): number {
    return this.active.size;
  }

  submit(id: string, spec: JobSpec): void {
    if (this.closing) return;
    this.pending.push({ id, spec });
    this.pump();
  }

  cancel(id: string): boolean {
    const at = this.pending.findIndex((p) => p.id === id);
    if (at >= 0) {
      this.pending.splice(at, 1);
      this.options.events.finished(id, { status: 'cancelled' });
      return true;
    }
    const job = this.active.get(id);
    if (!job) return false;
    job.stop('cancelled');
    return true;
  }

  async shutdown(graceMs: number): Promise<void> {
    this.closing = true;
    this.pending.length = 0;
    const all = () => Promise.all([...this.active.values()].map((j) => j.done));
    if (this.active.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([all(), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      for (const job of this.active.values()) job.stop('shutdown');
      await all();
    }
  }

  private pump(): void {
    while (!this.closing && this.active.size < this.options.concurrency) {
      const next = this.pending.shift();
      if (!next) return;
      this.start(next.id, next.spec);
    }
  }

  private start(id: string, spec: JobSpec): void {
    const { events, runner } = this.options;
    events.started(id);
    let job: RunningJob;
    try {
      job = runner.run(id, spec, (p) => events.progress(id, p));
    } catch (e) {
      // the runner could not even start it (no process could be forked): that job fails, the queue goes on
      const message = `the job could not be started: ${e instanceof Error ? e.message : String(e)}`;
      events.finished(id, { status: 'failed', error: { code: 'WORKER_CRASHED', message } });
      return;
    }
    this.active.set(id, job);
    void job.done.then((outcome) => {
      this.active.delete(id);
      events.finished(id, outcome);
      this.pump();
    });
  }
}
