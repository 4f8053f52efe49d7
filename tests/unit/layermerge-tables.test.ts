import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BudgetInfeasibleError, InvalidArgumentError } from '../../service/src/core/errors.js';
import { type Chain, type ChainLayer, checkBlock, enumerateCandidates } from '../../service/src/core/layermerge/chain.js';
import type { ConvSpec } from '../../service/src/core/layermerge/conv.js';
import { validateLayerMergeSection } from '../../service/src/core/layermerge/plan-section.js';
import {
  type ImportanceTableDoc,
  type LatencyTableDoc,
  baselineKeys,
  candidateKey,
  dominatedCandidates,
  planLayerMerge,
} from '../../service/src/core/layermerge/tables.js';
import { validatePlan } from '../../service/src/core/plan/plan.js';

function conv(cin: number, cout: number, k: number, stride = 1): ConvSpec {
  const p = (k - 1) / 2;
  return { cin, cout, kh: k, kw: k, stride: [stride, stride], pads: [p, p, p, p], dilation: [1, 1], group: 1, weight: new Float32Array(0), bias: new Float32Array(0) };
}

/** stem, one identity residual block of two convs, then a strided conv. */
function chain(): Chain {
  const layers: ChainLayer[] = [
    { id: 'c0', spec: conv(3, 8, 3), inH: 8, inW: 8, activationAfter: true },
    { id: 'c1', spec: conv(8, 8, 3), inH: 8, inW: 8, activationAfter: true },
    { id: 'c2', spec: conv(8, 8, 3), inH: 8, inW: 8, activationAfter: true },
    { id: 'c3', spec: conv(8, 16, 3, 2), inH: 8, inW: 8, activationAfter: true },
  ];
  return { layers, residuals: [{ start: 1, end: 3, skip: 'identity' }] };
}

/**
 * Tables where a conv costs k²/3 ms (3 ms for a 3×3), an identity 0.1 ms, and each removed activation
 * or conv costs 0.01 of loss; rest 2 ms.
 */
function tables(c: Chain) {
  const cands = enumerateCandidates(c);
  const latency: LatencyTableDoc = {
    format: 'strata-layermerge-latency',
    version: 1,
    provider: 'cpu',
    threads: 1,
    host: 'test',
    batch: 1,
    originalMs: 0,
    originalKernelMs: 0,
    chainKernelMs: 0,
    wallPerKernelMs: 1,
    restMs: 2,
    signatures: {},
    entries: {},
  };
  const importance: ImportanceTableDoc = {
    format: 'strata-layermerge-importance',
    version: 1,
    basis: 'cross-entropy',
    description: 'synthetic',
    samples: 1,
    baselineLoss: 0,
    ridge: null,
    entries: {},
    dominated: [],
  };
  for (const q of cands) {
    const key = candidateKey(q);
    const ms = q.identity ? 0.1 : (q.k * q.k) / 3;
    latency.signatures[key] = { ms, p10: ms, p90: ms, runs: 1 };
    latency.entries[key] = key;
    const loss = 0.01 * (q.removed.length + q.removedActivations.length);
    importance.entries[key] = { key, deltaLoss: loss, importance: -loss, fidelity: 0 };
  }
  let base = 0;
  for (const k of baselineKeys(cands, c.layers.length)) base += latency.signatures[k]!.ms;
  latency.originalMs = base + latency.restMs;
  return { cands, latency, importance };
}

test('the original network is the plan at its own latency, with nothing changed', () => {
  const c = chain();
  const t = tables(c);
  const sol = planLayerMerge({ candidates: t.cands, L: 4, latency: t.latency, importance: t.importance, budget: { kind: 'latency-fraction', value: 1 } });
  assert.equal(sol.predictedLatencyMs, t.latency.originalMs);
  assert.equal(sol.totalImportance, 0);
  assert.deepEqual(
    sol.blocks.map((b) => [b.candidate.i, b.candidate.j]),
    [
      [0, 1],
      [1, 2],
      [2, 3],
      [3, 4],
    ],
  );
});

test('a tighter budget removes the cheapest loss first and the predicted latency includes the rest', () => {
  const c = chain();
  const t = tables(c);
  const budget = t.latency.originalMs - 2.5;
  const sol = planLayerMerge({ candidates: t.cands, L: 4, latency: t.latency, importance: t.importance, budget: { kind: 'latency-ms', value: budget } });
  assert.ok(sol.predictedLatencyMs <= budget + 1e-9);
  assert.equal(sol.restMs, 2);
  assert.ok(Math.abs(sol.totalImportance + 0.01) < 1e-12, `one removal suffices, got ${sol.totalImportance}`);
});

test('an infeasible budget names the minimum reachable latency, rest included', () => {
  const c = chain();
  const t = tables(c);
  assert.throws(
    () => planLayerMerge({ candidates: t.cands, L: 4, latency: t.latency, importance: t.importance, budget: { kind: 'latency-ms', value: 2.5 } }),
    (e: unknown) => {
      assert.ok(e instanceof BudgetInfeasibleError);
      // the cheapest tiling, found by a plain shortest-path loop over the candidates (quanta of 0.1 ms)
      const best = [0, Infinity, Infinity, Infinity, Infinity];
      for (let j = 1; j <= 4; j++) {
        for (const q of t.cands) {
          if (q.j !== j) continue;
          const ms = t.latency.signatures[candidateKey(q)]!.ms;
          best[j] = Math.min(best[j]!, best[q.i]! + Math.ceil(ms / 0.1 - 1e-9) * 0.1);
        }
      }
      const minimum = e.details['minimum'] as number;
      assert.ok(Math.abs(minimum - (2 + best[4]!)) < 1e-9, `${minimum} vs ${2 + best[4]!}`);
      assert.match(e.message, new RegExp(`below the minimum reachable latency of ${minimum} ms`));
      assert.match(e.message, /plus 2 ms for the rest of the network/);
      return true;
    },
  );
});

test('variants restrict the table: layer-only keeps at most one conv per block, merge-only all of them', () => {
  const c = chain();
  const t = tables(c);
  const args = { candidates: t.cands, L: 4, latency: t.latency, importance: t.importance, budget: { kind: 'latency-fraction' as const, value: 0.9 } };
  const layerOnly = planLayerMerge({ ...args, variant: 'layer-only' });
  assert.ok(layerOnly.blocks.every((b) => b.candidate.kept.length <= 1));
  assert.ok(layerOnly.predictedLatencyMs <= 0.9 * t.latency.originalMs);
  // with a conv costing k²/3, a merged kernel is always slower than the convs it replaces
  assert.throws(
    () => planLayerMerge({ ...args, variant: 'merge-only' }),
    (e: unknown) => e instanceof BudgetInfeasibleError && /merge-only/.test(e.message),
  );
  const merged = planLayerMerge({ ...args, budget: { kind: 'latency-fraction', value: 1 }, variant: 'merge-only' });
  assert.ok(merged.blocks.every((b) => b.candidate.kept.length === b.candidate.j - b.candidate.i));
});

test('candidates slower than the original convs of their span are dominated and left out of the DP', () => {
  const c = chain();
  const t = tables(c);
  const dominated = dominatedCandidates(t.cands, t.latency, 4);
  // merging c1 and c2 into a 5×5 costs 8.3 ms against 3 + 3 for the two convs it replaces
  assert.ok(dominated.has('1-3:1.2'));
  for (const q of t.cands) {
    let span = 0;
    for (let m = q.i; m < q.j; m++) span += 3;
    const slower = !q.identity && (q.k * q.k) / 3 >= span && !(q.j - q.i === 1 && q.kept.length === 1);
    assert.equal(dominated.has(candidateKey(q)), slower, candidateKey(q));
  }
  t.importance.dominated = [...dominated];
  const sol = planLayerMerge({ candidates: t.cands, L: 4, latency: t.latency, importance: t.importance, budget: { kind: 'latency-fraction', value: 1 } });
  assert.ok(sol.blocks.every((b) => !dominated.has(b.key)));
});

test('checkBlock rejects blocks that cut a skip, drop a shape-changing conv or merge past a stride', () => {
  const c = chain();
  const rejects = (i: number, j: number, kept: number[], pattern: RegExp) =>
    assert.throws(
      () => checkBlock(c, i, j, kept),
      (e: unknown) => e instanceof InvalidArgumentError && pattern.test(e.message),
    );
  rejects(0, 2, [0, 1], /cuts through a residual skip/);
  rejects(0, 1, [], /c0 changes the shape and must be kept/);
  rejects(3, 4, [], /c3 changes the shape/);
  rejects(1, 3, [], /removes every conv under a skip/);
  rejects(0, 5, [0], /must satisfy 0 ≤ i < j ≤ 4/);
  assert.deepEqual(checkBlock(c, 0, 3, [0, 2]), [0]);
});

test('validatePlan accepts a LayerMerge plan only with blocks that tile its chain', () => {
  const plan = {
    format: 'strata-plan',
    version: 1,
    method: 'layermerge',
    remove: [],
    inputs: { modelSha256: 'x', dataSha256: 'y', options: {} },
    layermerge: {
      variant: 'layermerge',
      chain: ['a', 'b', 'c'],
      blocks: [
        { i: 0, j: 2, kept: [0] },
        { i: 2, j: 3, kept: [2] },
      ],
    },
  };
  assert.equal(validatePlan(plan).method, 'layermerge');
  const gap = structuredClone(plan);
  gap.layermerge.blocks[1]!.i = 1;
  assert.throws(
    () => validatePlan(gap),
    (e: unknown) => e instanceof InvalidArgumentError && /blocks must tile positions 0\.\.3 in order/.test(e.message),
  );
  const short = structuredClone(plan);
  short.layermerge.blocks.pop();
  assert.throws(
    () => validateLayerMergeSection(short.layermerge, '--plan'),
    (e: unknown) => e instanceof InvalidArgumentError && /end at position 2, the chain has 3 layers/.test(e.message),
  );
  const { layermerge: _omitted, ...bare } = plan;
  assert.throws(
    () => validatePlan(bare),
    (e: unknown) => e instanceof InvalidArgumentError && /needs its "layermerge" section/.test(e.message),
  );
});
