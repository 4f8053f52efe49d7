// Runs the compiled test files with node's built-in runner.
// Usage: node tests/run.mjs [unit|integration ...]  (default: every suite)
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..', 'dist', 'tests');
const suites = process.argv.slice(2);
const dirs = (suites.length > 0 ? suites : ['unit', 'integration']).map((s) => join(root, s));

function collect(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = dirs.flatMap(collect);
if (files.length === 0) {
  console.error('no compiled test files found; run `npm run build` first');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
