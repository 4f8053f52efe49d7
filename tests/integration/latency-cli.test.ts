import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { CLI, fixtureModel } from '../helpers/paths.js';

function json(...args: string[]): Record<string, unknown> {
  const r = spawnSync(process.execPath, [CLI, ...args, '--json', '--quiet'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

test('latency reports a median inside its spread; --vs adds an interleaved ratio', () => {
  const r = json('latency', fixtureModel('vgg'), '--batch', '2', '--runs', '8', '--warmup', '2');
  const [min, p10, med, p90, max] = [r.minMs, r.p10Ms, r.medianMs, r.p90Ms, r.maxMs] as number[];
  assert.ok(min! <= p10! && p10! <= med! && med! <= p90! && p90! <= max!);
  assert.equal(r.runs, 8);
  const v = json('latency', fixtureModel('vgg'), '--batch', '2', '--runs', '6', '--warmup', '2', '--vs', fixtureModel('resnet20'));
  assert.ok(typeof v.ratio === 'number' && v.ratio > 0 && Number.isFinite(v.ratio));
  assert.equal(v.pairs, 6);
  assert.equal((v.vs as { model: string }).model, fixtureModel('resnet20'));
});

test('per-unit latency shares out the measured median: outermost units never sum past it', () => {
  const r = json('latency', fixtureModel('resnet20'), '--batch', '4', '--runs', '6', '--per-unit');
  const units = r.units as { id: string; ms: number; share: number }[];
  const inspect = json('inspect', fixtureModel('resnet20'));
  const top = new Set((inspect.units as { id: string; parent?: string }[]).filter((u) => !u.parent).map((u) => u.id));
  assert.deepEqual(units.map((u) => u.id), (inspect.units as { id: string }[]).map((u) => u.id));
  const sum = units.filter((u) => top.has(u.id)).reduce((a, u) => a + u.ms, 0);
  assert.ok(sum <= (r.medianMs as number) * (1 + 1e-9), `Σ units ${sum} ≤ median ${r.medianMs}`);
  assert.ok(units.every((u) => u.share >= 0 && u.share <= 1));
  // the nine residual blocks hold most of ResNet-20's compute, so most of its time
  const residual = units.filter((u) => u.id.startsWith('residual')).reduce((a, u) => a + u.share, 0);
  assert.ok(residual > 0.5, `residual share ${residual}`);
});
