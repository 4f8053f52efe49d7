import { ApolloServer, type GraphQLRequest } from '@apollo/server';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { specifiedRules } from 'graphql';
import type { Config } from '../config.js';
import { AnalysisService } from '../jobs/analysis.service.js';
import { ChildProcessRunner } from '../jobs/child-process-runner.js';
import { InProcessJobQueue } from '../jobs/in-process-queue.js';
import { isTerminal, type JobRecord } from '../jobs/job.js';
import type { JobRunner } from '../jobs/job-queue.js';
import { JobService } from '../jobs/job.service.js';
import { ArtifactStore } from '../store/artifact-store.js';
import { RecordStore } from '../store/record-store.js';
import { Registry, type DatasetRecord, type ModelRecord } from '../store/registry.js';
import { contextFor, type Services, type StrataContext } from './context.js';
import { errorFormatter } from './errors.js';
import { createLogger, type Logger } from './http/logger.js';
import { Metrics } from './http/metrics.js';
import { queryLimitsRule } from './query-limits.js';
import { strataSchema } from './schema.js';

export interface AppOptions {
  clock?: () => Date;
  /** how jobs run; default: one child process per job */
  runner?: JobRunner;
  logger?: Logger;
}

/**
 * The service without its HTTP front: the data directory, the registry, the jobs and the GraphQL
 * executor. Tests drive it directly with execute(); http/server.ts puts it on the network.
 */
export class StrataApp {
  readonly services: Services;
  readonly apollo: ApolloServer<StrataContext>;
  readonly artifacts: ArtifactStore;
  readonly metrics: Metrics;
  readonly log: Logger;
  private readonly contextValue: StrataContext;
  private readonly lock: string;
  private closed = false;

  private constructor(
    readonly config: Config,
    options: AppOptions,
  ) {
    const clock = options.clock ?? (() => new Date());
    this.log = options.logger ?? createLogger(config.logLevel);
    mkdirSync(config.dataDir, { recursive: true });
    this.lock = takeLock(config.dataDir);
    this.artifacts = new ArtifactStore(config.dataDir);
    this.artifacts.init();
    const records = join(config.dataDir, 'records');
    const models = new RecordStore<ModelRecord>(join(records, 'models'));
    const datasets = new RecordStore<DatasetRecord>(join(records, 'datasets'));
    models.load();
    datasets.load();
    const registry = new Registry({ artifacts: this.artifacts, models, datasets }, { fileRoots: config.fileRoots, clock });
    const runner =
      options.runner ??
      new ChildProcessRunner({
        dataDir: config.dataDir,
        timeoutMs: config.jobTimeoutMs,
        log: (level, message, fields) => this.log[level](fields, message),
      });
    const jobs = new JobService({
      records: new RecordStore<JobRecord>(join(records, 'jobs')),
      queue: (events) => new InProcessJobQueue({ concurrency: config.concurrency, runner, events }),
      clock,
    });
    const analysis = new AnalysisService(registry, jobs, { provider: config.provider, threads: config.threads });
    this.services = { registry, jobs, analysis };
    this.contextValue = contextFor(this.services);
    this.metrics = new Metrics({ jobCounts: () => jobs.counts(), queueDepth: () => jobs.waiting });
    jobs.subscribe((job) => this.observe(job));

    this.apollo = new ApolloServer<StrataContext>({
      schema: strataSchema(),
      formatError: errorFormatter({
        development: config.development,
        logUnexpected: (e) => this.log.error({ err: e }, 'unexpected error in a GraphQL request'),
      }),
      includeStacktraceInErrorResponses: config.development,
      csrfPrevention: true,
      // serve.ts owns the signals: it stops HTTP first, then jobs, then this executor
      stopOnTerminationSignals: false,
      // a closed set of error codes: no persisted-query codes to document
      persistedQueries: false,
      validationRules: [queryLimitsRule({ maxDepth: config.maxQueryDepth, maxFields: config.maxQueryFields })],
      plugins: [ApolloServerPluginLandingPageDisabled()],
      logger: {
        debug: (m) => this.log.debug(m),
        info: (m) => this.log.info(m),
        warn: (m) => this.log.warn(m),
        error: (m) => this.log.error(m),
      },
    });
  }

  /** Opens the data directory, fails what a previous process left running, queues what it left queued, and starts the executor. */
  static async open(config: Config, options: AppOptions = {}): Promise<StrataApp> {
    const app = new StrataApp(config, options);
    try {
      const r = app.services.jobs.recover();
      if (r.requeued + r.interrupted > 0) app.log.info(r, 'jobs recovered from the data directory');
      await app.apollo.start();
    } catch (e) {
      rmSync(app.lock, { force: true });
      throw e;
    }
    return app;
  }

  context(): StrataContext {
    return this.contextValue;
  }

  /** A GraphQL operation, in process (the tests' way in). */
  execute(request: Omit<GraphQLRequest, 'query'> & { query: string }) {
    return this.apollo.executeOperation(request, { contextValue: this.contextValue });
  }

  /** The rules an operation is validated against (for transports other than Apollo's). */
  validationRules() {
    return [...specifiedRules, queryLimitsRule({ maxDepth: this.config.maxQueryDepth, maxFields: this.config.maxQueryFields })];
  }

  get closing(): boolean {
    return this.closed;
  }

  /** Lets running jobs finish (up to the grace period), stops the rest, and releases the data directory. */
  async close(graceMs = this.config.shutdownGraceMs): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.services.jobs.shutdown(graceMs);
    await this.apollo.stop();
    rmSync(this.lock, { force: true });
  }

  private observe(job: JobRecord): void {
    if (!isTerminal(job.state)) return;
    const s = job.state;
    const started = 'startedAt' in s && s.startedAt ? Date.parse(s.startedAt) : null;
    const seconds = started === null || !('finishedAt' in s) ? null : (Date.parse(s.finishedAt) - started) / 1000;
    this.metrics.jobFinished(job.spec.kind, s.status, seconds);
    const fields = { job: job.id, kind: job.spec.kind, status: s.status, seconds };
    if (s.status === 'failed') this.log.warn({ ...fields, code: s.error.code, error: s.error.message }, 'job failed');
    else this.log.info(fields, 'job finished');
  }
}

/**
 * One service per data directory: two would each believe they own the running jobs. A lock left
 * by a process that no longer exists (a crash) is taken over.
 */
function takeLock(dataDir: string): string {
  const lock = join(dataDir, 'service.lock');
  if (existsSync(lock)) {
    const pid = Number(readFileSync(lock, 'utf8').trim());
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      throw new Error(`the data directory ${dataDir} is in use by another strata service (pid ${pid}); give each service its own STRATA_DATA_DIR`);
    }
  }
  writeFileSync(lock, `${process.pid}\n`);
  return lock;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
