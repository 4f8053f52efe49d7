import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { JOB_STATUSES, type JobKind, type JobStatus } from '../../jobs/job.js';

export interface MetricSources {
  jobCounts(): Record<JobStatus, number>;
  queueDepth(): number;
}

/** The service's Prometheus metrics, in a registry of its own (several servers can share a process). */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly requestSeconds: Histogram<'method' | 'route'>;
  private readonly jobsFinished: Counter<'kind' | 'status'>;
  private readonly jobSeconds: Histogram<'kind' | 'status'>;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'strata_' });
    this.requests = new Counter({
      name: 'strata_http_requests_total',
      help: 'HTTP requests by method, route and status',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: 'strata_http_request_duration_seconds',
      help: 'HTTP request durations',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.jobsFinished = new Counter({
      name: 'strata_jobs_finished_total',
      help: 'jobs that finished, by kind and final status',
      labelNames: ['kind', 'status'],
      registers,
    });
    this.jobSeconds = new Histogram({
      name: 'strata_job_duration_seconds',
      help: 'time from a job starting to its end, by kind and final status',
      labelNames: ['kind', 'status'],
      buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    new Gauge({
      name: 'strata_jobs',
      help: 'jobs in the store by status',
      labelNames: ['status'],
      registers,
      collect() {
        const counts = sources.jobCounts();
        for (const s of JOB_STATUSES) this.set({ status: s }, counts[s]);
      },
    });
    new Gauge({
      name: 'strata_queue_depth',
      help: 'jobs waiting for a worker',
      registers,
      collect() {
        this.set(sources.queueDepth());
      },
    });
  }

  request(method: string, route: string, status: number, seconds: number): void {
    this.requests.inc({ method, route, status: String(status) });
    this.requestSeconds.observe({ method, route }, seconds);
  }

  jobFinished(kind: JobKind, status: JobStatus, seconds: number | null): void {
    this.jobsFinished.inc({ kind, status });
    if (seconds !== null) this.jobSeconds.observe({ kind, status }, seconds);
  }

  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
