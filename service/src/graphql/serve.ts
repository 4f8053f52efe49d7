import type { Config } from '../config.js';
import { StrataApp, type AppOptions } from './app.js';
import { startHttpServer, type HttpServer } from './http/server.js';

export interface RunningService {
  app: StrataApp;
  http: HttpServer;
  /** Stops taking requests, lets requests and running jobs finish within the grace period, then stops. */
  close(): Promise<void>;
}

export async function startService(config: Config, options: AppOptions = {}): Promise<RunningService> {
  // the app takes the data directory's lock before it reads anything there, and gives it up
  // when it has closed (after its jobs have stopped)
  const app = await StrataApp.open(config, options);
  let http: HttpServer;
  try {
    http = await startHttpServer(app);
  } catch (e) {
    await app.close(0);
    throw e;
  }
  let closing: Promise<void> | undefined;
  return {
    app,
    http,
    close: () =>
      (closing ??= (async () => {
        await http.close(config.shutdownGraceMs);
        await app.close(config.shutdownGraceMs);
      })()),
  };
}

/** Runs the service until SIGTERM or SIGINT, then shuts down gracefully; a second signal ends it at once. */
export async function serve(config: Config): Promise<void> {
  const service = await startService(config);
  const { log } = service.app;
  log.info(
    { url: service.http.url, dataDir: config.dataDir, concurrency: config.concurrency, provider: config.provider, auth: config.token !== null },
    'strata service listening',
  );
  let signalled = false;
  const stop = (signal: NodeJS.Signals) => {
    if (signalled) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    signalled = true;
    log.info({ signal, graceSeconds: config.shutdownGraceMs / 1000 }, 'shutting down: no new requests; running jobs get the grace period');
    service.close().then(
      () => {
        log.info('stopped');
        log.flush();
        process.exit(0);
      },
      (e: unknown) => {
        log.error({ err: e }, 'shutdown failed');
        log.flush();
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
