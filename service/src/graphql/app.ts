import { ApolloServer, type GraphQLRequest } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
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
import { DataDirLock } from '../store/data-dir-lock.js';
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
  private closed = false;

  private constructor(
    readonly config: Config,
    options: AppOptions,
    private readonly lock: DataDirLock,
  ) {
    const clock = options.clock ?? (() => new Date());
    this.log = options.logger ?? createLogger(config.logLevel);
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
      // Cache control would add a willResolveField hook, run for every field of every request,
      // only to compute a Cache-Control header that is never sent: nothing here sets cache hints,
      // and answers carry tokens and change as jobs do. (A measurable share of a cached plan
      // query's CPU time: bench/load.bench.ts.)
      plugins: [ApolloServerPluginLandingPageDisabled(), ApolloServerPluginCacheControlDisabled()],
      logger: {
        debug: (m) => this.log.debug(m),
        info: (m) => this.log.info(m),
        warn: (m) => this.log.warn(m),
        error: (m) => this.log.error(m),
      },
    });
  }

  /**
   * Takes the data directory (DataDirLock: one service per folder, whether it is served over
   * HTTP or driven in process), fails what a previous process left running, queues what it left
   * queued, and starts the executor. The lock is held until close() has stopped the jobs.
   */
  static async open(config: Config, options: AppOptions = {}): Promise<StrataApp> {
    // before anything reads the data directory: a second service must not even recover its jobs
    const lock = DataDirLock.acquire(config.dataDir);
    let app: StrataApp | undefined;
    try {
      app = new StrataApp(config, options, lock);
      const r = app.services.jobs.recover();
      if (r.requeued + r.interrupted > 0) app.log.info(r, 'jobs recovered from the data directory');
      await app.apollo.start();
      return app;
    } catch (e) {
      // jobs queued again by recover() may have started: stopped before the directory is given up
      await app?.services.jobs.shutdown(0).catch(() => undefined);
      lock.release();
      throw e;
    }
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

  /**
   * Lets running jobs finish (up to the grace period), stops the rest, and releases the data
   * directory — only once the jobs have stopped writing, so a service started next never meets
   * them. A close that fails keeps the lock until this process exits, after which it is stale.
   */
  async close(graceMs = this.config.shutdownGraceMs): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.services.jobs.shutdown(graceMs);
    await this.apollo.stop();
    this.lock.release();
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
