#!/usr/bin/env node
import { Command } from 'commander';
import { registerEvaluate } from './evaluate.js';
import { registerInspect } from './inspect.js';
import { registerLatency } from './latency.js';
import { registerSimilarity } from './similarity.js';
import { registerSegments } from './segments.js';
import { registerPlan } from './plan.js';
import { registerCompress } from './compress.js';
import { registerTables } from './tables.js';
import { reportError, type GlobalOptions } from './output.js';

async function run(fn: () => Promise<void>, o: GlobalOptions): Promise<void> {
  try {
    await fn();
  } catch (e) {
    reportError(e, o.debug === true);
  }
}

const program = new Command();
program
  .name('strata')
  .description('Make trained neural networks shallower: find removable and mergeable layers in ONNX models, plan, compress, measure.')
  .showHelpAfterError()
  .exitOverride((err) => {
    // commander's own usage errors: one line, exit 1 (0 for --help/--version)
    process.exit(err.exitCode === 0 ? 0 : 1);
  });
registerInspect(program, run);
registerLatency(program, run);
registerEvaluate(program, run);
registerSimilarity(program, run);
registerSegments(program, run);
registerPlan(program, run);
registerCompress(program, run);
registerTables(program, run);
(await import('./serve.js')).registerServe(program, run);

await program.parseAsync(process.argv);
