import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CALIB_DATA, EVAL_DATA, fixtureModel } from '../helpers/paths.js';
import { strata, strataJson } from '../helpers/cli.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-layermerge-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const json = strataJson;

// Small and quick: 64 calibration samples, 3×3 merged kernels at most, one thread.
const common = ['--data', CALIB_DATA, '--samples', '64', '--batch', '32', '--max-kernel', '3', '--threads', '1'];
const resnet = fixtureModel('resnet20');
const tablesFile = () => join(dir, 'tables.json');

test('strata tables --no-refit: the chain, every candidate, a latency per signature and an importance per candidate, exact merges only', () => {
  const t = json('tables', resnet, ...common, '--no-refit', '-o', tablesFile(), '--latency-cache', join(dir, 'latency-cache.json'));
  assert.equal(t.format, 'strata-layermerge-tables');
  const chain = t.chain as { layers: string[]; residuals: string[] };
  assert.equal(chain.layers.length, 19);
  assert.equal(chain.residuals.length, 9);
  const candidates = t.candidates as { key: string; k: number }[];
  assert.ok(candidates.length > 19 && candidates.every((c) => c.k <= 3));
  const latency = t.latency as { entries: Record<string, string | null>; signatures: Record<string, { ms: number }>; originalMs: number; restMs: number; batch: number };
  assert.equal(latency.batch, 32);
  assert.ok(latency.originalMs > 0 && Number.isFinite(latency.restMs));
  for (const c of candidates) {
    const sig = latency.entries[c.key];
    assert.ok(sig === null || latency.signatures[sig!]!.ms > 0, c.key);
  }
  const importance = t.importance as {
    entries: Record<string, { importance: number; fidelity: number; refit?: unknown }>;
    dominated: string[];
    samples: number;
    basis: string;
    ridge: number | null;
  };
  assert.equal(importance.samples, 64);
  assert.equal(importance.basis, 'cross-entropy');
  for (const c of candidates) assert.ok(importance.entries[c.key] || importance.dominated.includes(c.key), c.key);
  assert.equal(importance.ridge, null);
  assert.ok(Object.values(importance.entries).every((e) => e.refit === undefined), 'no refit scores with --no-refit');
  assert.ok(existsSync(tablesFile()));
});

test('the latency cache gives the same signature timings again without re-timing them; by default the tables score refits too', () => {
  const first = JSON.parse(readFileSync(tablesFile(), 'utf8')) as { latency: { signatures: Record<string, unknown> } };
  const cache = JSON.parse(readFileSync(join(dir, 'latency-cache.json'), 'utf8')) as { format: string; entries: Record<string, unknown> };
  assert.equal(cache.format, 'strata-layermerge-latency-cache');
  assert.equal(Object.keys(cache.entries).length, Object.keys(first.latency.signatures).length);
  const again = json('tables', resnet, ...common, '--latency-cache', join(dir, 'latency-cache.json'));
  assert.deepEqual((again.latency as { signatures: unknown }).signatures, first.latency.signatures);
  const importance = again.importance as { entries: Record<string, { fidelity: number; refit?: { fidelity: number } }>; ridge: number | null };
  assert.equal(importance.ridge, 0.001, 'refit is on by default, with the default ridge');
  const refit = Object.values(importance.entries).filter((e) => e.refit !== undefined);
  assert.ok(refit.length > 0, 'merged candidates carry refit scores');
  // fidelity is the relative error of the block's output: fitted to the original block on these very
  // samples, the refits come closer to it than the exact merges (per block the ridge may cost a little)
  assert.ok(refit.every((e) => Number.isFinite(e.refit!.fidelity)));
  const total = (f: (e: (typeof refit)[number]) => number) => refit.reduce((a, e) => a + f(e), 0);
  assert.ok(total((e) => e.refit!.fidelity) < total((e) => e.fidelity), `refit ${total((e) => e.refit!.fidelity)} vs exact ${total((e) => e.fidelity)}`);
});

test('plan --method layermerge --no-refit: SGLP plan keys, blocks tiling the chain, within the budget; compress applies it', () => {
  const planFile = join(dir, 'plan.json');
  const plan = json('plan', resnet, '--method', 'layermerge', ...common, '--tables', tablesFile(), '--budget', '0.8', '--no-refit', '-o', planFile);
  assert.equal(plan.method, 'layermerge');
  assert.ok(Array.isArray(plan.remove));
  const predicted = plan.predictedLatencyMs as number;
  const baseline = plan.baselineLatencyMs as number;
  assert.ok(predicted <= 0.8 * baseline + 1e-9, `${predicted} > 0.8 × ${baseline}`);
  const lm = plan.layermerge as {
    chain: string[];
    blocks: { i: number; j: number; kept: number[]; unchanged: boolean; removedIds: string[]; refit: boolean }[];
    variant: string;
    refit: boolean;
  };
  assert.equal(lm.variant, 'layermerge');
  assert.equal(lm.refit, false);
  assert.ok(lm.blocks.every((b) => !b.refit));
  let at = 0;
  for (const b of lm.blocks) {
    assert.equal(b.i, at);
    at = b.j;
  }
  assert.equal(at, lm.chain.length);
  assert.ok(lm.blocks.some((b) => !b.unchanged));
  assert.deepEqual(JSON.parse(readFileSync(planFile, 'utf8')), plan);

  const out = join(dir, 'small.onnx');
  const c = json('compress', resnet, '--plan', planFile, '-o', out, '--data', EVAL_DATA, '--threads', '1');
  assert.equal(c.output, out);
  assert.ok(existsSync(out));
  for (const key of ['latencyRatio', 'speedup', 'predictedRatio', 'predictionError', 'accuracyBefore', 'accuracyAfter', 'agreement']) {
    assert.equal(typeof c[key], 'number', key);
  }
  assert.ok((c.parametersAfter as number) < (c.parametersBefore as number));
  // the compressed model is a model strata reads like any other
  const r = json('evaluate', out, '--data', EVAL_DATA);
  assert.equal(r.samples, 1000);
});

test('plan refits by default: it carries the refit weights of its merged blocks, and compress uses them', () => {
  const plain = json('plan', resnet, '--method', 'layermerge', ...common, '--tables', tablesFile(), '--budget', '0.75', '--no-refit', '-o', join(dir, 'plan-plain.json'));
  const planFile = join(dir, 'plan-refit.json');
  const plan = json('plan', resnet, '--method', 'layermerge', ...common, '--tables', tablesFile(), '--budget', '0.75', '-o', planFile);
  type Blocks = { refit: boolean; blocks: { i: number; j: number; unchanged: boolean; k: number; refit: boolean; weights?: { weight: string } }[] };
  assert.equal((plan.layermerge as Blocks).refit, true);
  assert.equal((plain.layermerge as Blocks).refit, false);
  const blocks = (plan.layermerge as Blocks).blocks;
  // the same tables (without refit entries) give the same blocks; only the weights differ
  assert.deepEqual(
    blocks.map((b) => [b.i, b.j]),
    (plain.layermerge as Blocks).blocks.map((b) => [b.i, b.j]),
  );
  const merged = blocks.filter((b) => !b.unchanged && b.k > 0);
  assert.ok(merged.length > 0);
  assert.ok(merged.every((b) => b.refit && typeof b.weights?.weight === 'string'));
  const withRefit = json('compress', resnet, '--plan', planFile, '-o', join(dir, 'refit.onnx'), '--data', EVAL_DATA, '--threads', '1');
  const without = json('compress', resnet, '--plan', join(dir, 'plan-plain.json'), '-o', join(dir, 'plain.onnx'), '--data', EVAL_DATA, '--threads', '1');
  assert.ok(
    (withRefit.accuracyAfter as number) > (without.accuracyAfter as number),
    `refit ${withRefit.accuracyAfter} vs exact merge ${without.accuracyAfter}`,
  );
});

test('an impossible budget is refused with the minimum reachable latency', () => {
  const r = strata('plan', resnet, '--method', 'layermerge', ...common, '--tables', tablesFile(), '--budget', '0.05');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^strata: latency budget [\d.]+ ms is below the minimum reachable latency of [\d.]+ ms \(layermerge: .*rest of the network/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});

test('LayerMerge plan options are checked before any work', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--remove', '3'], /^strata: --remove: LayerMerge plans take a latency budget/],
    [['--budget', '0.7', '--variant', 'deep'], /^strata: --variant: must be one of layermerge, layer-only, merge-only, got "deep"/],
    [['--budget', '0.7', '--quantum', '0'], /^strata: --quantum: must be a positive number/],
    [['--budget', '0.7', '--max-kernel', '0'], /^strata: --max-kernel: must be a positive integer/],
  ];
  for (const [args, message] of cases) {
    const r = strata('plan', resnet, '--method', 'layermerge', '--data', CALIB_DATA, ...args);
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, message);
  }
});

test('a LayerMerge plan is refused for another model, and tables for another model are too', () => {
  const r = strata('compress', fixtureModel('vgg'), '--plan', join(dir, 'plan.json'), '-o', join(dir, 'x.onnx'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /the plan was made for another model/);
  const t = strata('plan', fixtureModel('vgg'), '--method', 'layermerge', ...common, '--tables', tablesFile(), '--budget', '0.9');
  assert.equal(t.status, 1);
  assert.match(t.stderr, /^strata: --tables: the tables were made for another model/);
});
