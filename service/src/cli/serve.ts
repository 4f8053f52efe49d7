import type { Command } from 'commander';
import { loadConfig } from '../config.js';
import type { GlobalOptions } from './output.js';

interface ServeCliOptions extends GlobalOptions {
  port?: string;
  host?: string;
  dataDir?: string;
}

export function registerServe(program: Command, run: (fn: () => Promise<void>, o: GlobalOptions) => Promise<void>): void {
  program
    .command('serve')
    .description('run the GraphQL service (configured by STRATA_* environment variables; flags override them)')
    .option('--port <n>', 'port to listen on (STRATA_PORT, default 4000; 0 picks a free one)')
    .option('--host <address>', 'address to listen on (STRATA_HOST, default 127.0.0.1; any other needs STRATA_TOKEN)')
    .option('--data-dir <dir>', 'where artifacts, records and results are kept (STRATA_DATA_DIR, default ~/.strata)')
    .option('--debug', 'print stack traces')
    .action((o: ServeCliOptions) =>
      run(async () => {
        const config = loadConfig({
          ...(o.port === undefined ? {} : { port: o.port }),
          ...(o.host === undefined ? {} : { host: o.host }),
          ...(o.dataDir === undefined ? {} : { dataDir: o.dataDir }),
        });
        // the GraphQL stack loads only for this command, not for every CLI call
        const { serve } = await import('../graphql/serve.js');
        await serve(config);
      }, o),
    );
}
