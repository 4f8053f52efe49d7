/**
 * The worker entry: the service forks this file once per job (see child-process-runner.ts).
 */
import { runWorker } from './worker-main.js';

if (!process.send) {
  process.stderr.write('this file is started by the strata service, one process per job; run `strata serve`\n');
  process.exit(2);
}
runWorker(process);
