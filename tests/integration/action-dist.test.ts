/**
 * action/dist is committed (the runner runs it without installing anything), so it must be what
 * action/src builds to: `npm run check:action-dist` rebuilds into a temporary folder and compares.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/paths.js';

const DIST = join(ROOT, 'action', 'dist');
const BUILD = join(ROOT, 'action', 'build.mjs');

test('the committed action/dist matches a fresh build of action/src (npm run check:action-dist)', { timeout: 120_000 }, () => {
  const r = spawnSync('npm', ['run', '--silent', 'check:action-dist'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, `action/dist is stale: run npm run build:action and commit it\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /matches a fresh build/);
});

test('STALE - the check fails on a changed, a missing or an extra file, naming it', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-dist-'));
  try {
    const check = (name: string) => {
      const copy = join(dir, name);
      cpSync(DIST, copy, { recursive: true });
      return copy;
    };
    const edited = check('edited');
    appendFileSync(join(edited, 'index.js'), '\n// edited by hand\n');
    const missing = check('missing');
    rmSync(join(missing, 'package.json'));
    const extra = check('extra');
    writeFileSync(join(extra, 'old.js'), '');
    for (const [copy, problem] of [
      [edited, 'stale index.js'],
      [missing, 'missing package.json'],
      [extra, 'unexpected old.js'],
    ] as const) {
      const r = spawnSync(process.execPath, [BUILD, '--check', copy], { cwd: ROOT, encoding: 'utf8' });
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stderr, new RegExp(`differs from a fresh build \\(${problem.replace('.', '\\.')}\\): run \`npm run build:action\``));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
