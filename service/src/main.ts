/**
 * The service's entry (in a container: `node dist/service/src/main.js`), configured from the
 * environment only.
 */
import { loadConfig } from './config.js';
import { StrataError } from './core/errors.js';
import { serve } from './graphql/serve.js';

try {
  await serve(loadConfig());
} catch (e) {
  process.stderr.write(`strata: ${e instanceof StrataError || e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
