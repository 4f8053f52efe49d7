import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { CLI } from './paths.js';

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the compiled `strata` command as a user would, without progress on stderr. */
export function strata(...args: string[]): CliRun {
  const r = spawnSync(process.execPath, [CLI, ...args, '--quiet'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs `strata … --json`, requires success, and parses what it printed. */
export function strataJson(...args: string[]): Record<string, unknown> {
  const r = strata(...args, '--json');
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}
