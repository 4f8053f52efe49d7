import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planSglp, type SglpBudget, type SglpPlan, type SglpUnit } from '../../service/src/core/sglp/plan.js';
import { BudgetInfeasibleError, InvalidArgumentError } from '../../service/src/core/errors.js';
import { rng, close } from '../helpers/random.js';



interface Case {
  units: SglpUnit[];
  segments: number[][];
  keep: number;
  baseline: number;
}

/** Random units cut into contiguous segments, a few not removable, some left out of every segment. */
function randomCase(random: () => number, count: number): Case {
  const units: SglpUnit[] = Array.from({ length: count }, (_, i) => ({
    id: `u${i}`,
    removable: random() > 0.2,
    latencyMs: Math.round(random() * 100) / 10,
    // Few distinct values, so ties in importance happen and are exercised.
    importance: Math.round(random() * 6) / 2 - 1,
  }));
  const segments: number[][] = [];
  let current: number[] = [];
  for (let i = 0; i < count; i++) {
    if (random() < 0.1) continue; // not in any segment
    current.push(i);
    if (random() < 0.35) {
      segments.push(current);
      current = [];
    }
  }
  if (current.length > 0) segments.push(current);
  const total = units.reduce((s, u) => s + u.latencyMs, 0);
  return { units, segments, keep: Math.floor(random() * 3), baseline: total + 5 };
}

/** Every subset of in-segment removable units that leaves each segment ≥ keep units, grouped by size. */
function feasibleSubsets(c: Case): number[][] {
  const candidates = c.segments.flat().filter((u) => c.units[u]!.removable);
  const out: number[][] = [];
  for (let mask = 0; mask < 1 << candidates.length; mask++) {
    const subset = candidates.filter((_, b) => (mask >> b) & 1);
    const chosen = new Set(subset);
    // A segment smaller than keep may lose nothing, hence the min.
    if (c.segments.every((seg) => seg.filter((u) => !chosen.has(u)).length >= Math.min(c.keep, seg.length))) {
      out.push(subset);
    }
  }
  return out;
}

const sum = (xs: number[]): number => xs.reduce((s, v) => s + v, 0);

function planFor(c: Case, budget: SglpBudget): SglpPlan {
  return planSglp({
    units: c.units,
    segments: c.segments,
    baselineLatencyMs: c.baseline,
    budget,
    keepPerSegment: c.keep,
  });
}

test("'remove N': greedy loses exactly the brute-force minimum importance, for every feasible N", () => {
  const random = rng(31);
  let checked = 0;
  for (let trial = 0; trial < 60; trial++) {
    const c = randomCase(random, 3 + Math.floor(random() * 7));
    const subsets = feasibleSubsets(c);
    const maximum = Math.max(...subsets.map((s) => s.length));
    for (let count = 0; count <= maximum; count++) {
      const lost = subsets.filter((s) => s.length === count).map((s) => sum(s.map((u) => c.units[u]!.importance)));
      const best = Math.min(...lost);
      const plan = planFor(c, { kind: 'remove', count });
      assert.equal(plan.remove.length, count);
      close(plan.importanceLost, best, 1e-12, `trial ${trial} N=${count}`);

      // The plan itself is feasible and its totals are what its units add up to.
      const removed = plan.remove.map((id) => c.units.findIndex((u) => u.id === id));
      assert.equal(new Set(removed).size, count);
      for (const u of removed) assert.ok(c.units[u]!.removable, 'only removable units are removed');
      c.segments.forEach((seg, s) => {
        const kept = seg.filter((u) => !removed.includes(u)).length;
        assert.ok(kept >= Math.min(c.keep, seg.length), 'segment keeps enough units');
        assert.deepEqual(
          plan.perSegment[s]!.removed,
          seg.filter((u) => removed.includes(u)).map((u) => c.units[u]!.id),
        );
      });
      const inSegments = new Set(c.segments.flat());
      for (const u of removed) assert.ok(inSegments.has(u), 'only units in a segment are removed');
      const saved = sum(removed.map((u) => c.units[u]!.latencyMs));
      close(plan.predictedLatencyMs, c.baseline - saved, 1e-9, 'predicted latency');
      checked++;
    }
    // One more than the maximum is rejected, naming the maximum.
    assert.throws(
      () =>
        planFor(c, { kind: 'remove', count: maximum + 1 }),
      (e: unknown) =>
        e instanceof InvalidArgumentError && e.message.includes(`at most ${maximum} `) && e.details['maximum'] === maximum,
    );
  }
  assert.ok(checked > 150, `only ${checked} plans checked`);
});

test('greedy order: the picks go least important first and are the per-segment cheapest', () => {
  const units: SglpUnit[] = [
    { id: 'a', removable: true, latencyMs: 1, importance: 0.1 },
    { id: 'b', removable: true, latencyMs: 1, importance: 0.2 },
    { id: 'c', removable: true, latencyMs: 1, importance: 0.9 },
    { id: 'd', removable: true, latencyMs: 1, importance: 0.3 },
    { id: 'e', removable: false, latencyMs: 1, importance: 0 },
    { id: 'f', removable: true, latencyMs: 1, importance: 0.05 },
  ];
  // Segment 0 = a, b, c (may lose 2 with keep 1); segment 1 = d, e, f (e is kept; may lose 2).
  const plan = planSglp({
    units,
    segments: [
      [0, 1, 2],
      [3, 4, 5],
    ],
    baselineLatencyMs: 10,
    budget: { kind: 'remove', count: 4 },
  });
  assert.deepEqual(plan.remove, ['f', 'a', 'b', 'd']);
  assert.deepEqual(plan.perSegment, [
    { units: ['a', 'b', 'c'], removed: ['a', 'b'] },
    { units: ['d', 'e', 'f'], removed: ['d', 'f'] },
  ]);
  assert.equal(plan.predictedLatencyMs, 6);
  close(plan.importanceLost, 0.65, 1e-12, 'importance lost');
  // With keep 2, segment 0 may lose one unit only and segment 1 one (e counts as kept).
  const tight = planSglp({
    units,
    segments: [
      [0, 1, 2],
      [3, 4, 5],
    ],
    baselineLatencyMs: 10,
    budget: { kind: 'remove', count: 2 },
    keepPerSegment: 2,
  });
  assert.deepEqual(tight.remove, ['f', 'a']);
  assert.throws(
    () =>
      planSglp({
        units,
        segments: [
          [0, 1, 2],
          [3, 4, 5],
        ],
        baselineLatencyMs: 10,
        budget: { kind: 'remove', count: 3 },
        keepPerSegment: 2,
      }),
    /at most 2 can be removed while each segment keeps 2/,
  );
});

test('latency budgets are met by the shortest greedy prefix, in ms and as a fraction', () => {
  const random = rng(32);
  for (let trial = 0; trial < 80; trial++) {
    const c = randomCase(random, 4 + Math.floor(random() * 8));
    const all = planFor(c, { kind: 'remove', count: 0 });
    assert.equal(all.remove.length, 0);
    // The greedy order in full: the largest count the caps allow.
    let max = 0;
    for (;;) {
      try {
        planFor(c, { kind: 'remove', count: max + 1 });
        max++;
      } catch {
        break;
      }
    }
    const full = planFor(c, { kind: 'remove', count: max });
    const latencyOf = (id: string): number => c.units.find((u) => u.id === id)!.latencyMs;
    const floor = c.baseline - sum(full.remove.map(latencyOf));

    const target = floor + random() * (c.baseline - floor);
    const plan = planFor(c, { kind: 'latency-ms', value: target });
    const predicted = c.baseline - sum(plan.remove.map(latencyOf));
    close(plan.predictedLatencyMs, predicted, 1e-9, 'predicted latency');
    assert.ok(plan.predictedLatencyMs <= target + 1e-6, `trial ${trial}: ${plan.predictedLatencyMs} > ${target}`);
    // It is a prefix of the greedy order, and one unit fewer would not have met the target.
    assert.deepEqual(plan.remove, full.remove.slice(0, plan.remove.length));
    if (plan.remove.length > 0) {
      const before = c.baseline - sum(plan.remove.slice(0, -1).map(latencyOf));
      assert.ok(before > target, 'one unit fewer misses the target');
    }

    const asFraction = planFor(c, { kind: 'latency-fraction', value: target / c.baseline });
    assert.deepEqual(asFraction.remove, plan.remove);

    if (floor > 0.5) {
      assert.throws(
        () => planFor(c, { kind: 'latency-ms', value: floor - 0.5 }),
        (e: unknown) => e instanceof BudgetInfeasibleError && Math.abs((e.details['minimum'] as number) - floor) <= 1e-9,
      );
    }
  }
});

test('an unreachable latency budget throws BudgetInfeasibleError naming the smallest reachable latency', () => {
  const units: SglpUnit[] = [
    { id: 'a', removable: true, latencyMs: 2.5, importance: 1 },
    { id: 'b', removable: true, latencyMs: 4, importance: 2 },
    { id: 'c', removable: false, latencyMs: 10, importance: 0 },
    { id: 'd', removable: true, latencyMs: 3.25, importance: 3 },
  ];
  const segments = [[0, 1], [2, 3]];
  // Keep 1: segment 0 can lose one (a), segment 1 can lose d (c is kept). Minimum 30 − 2.5 − 3.25 = 24.25.
  for (const budget of [
    { kind: 'latency-ms', value: 20 },
    { kind: 'latency-fraction', value: 0.5 },
  ] as const) {
    assert.throws(
      () => planSglp({ units, segments, baselineLatencyMs: 30, budget }),
      (e: unknown) => {
        assert.ok(e instanceof BudgetInfeasibleError, 'a BudgetInfeasibleError');
        assert.match(e.message, /24\.25 ms/);
        assert.equal(e.details['minimum'], 24.25);
        assert.equal(e.details['unit'], 'ms');
        assert.equal(e.code, 'BUDGET_INFEASIBLE');
        return true;
      },
    );
  }
  // Exactly the minimum is reachable.
  const plan = planSglp({ units, segments, baselineLatencyMs: 30, budget: { kind: 'latency-ms', value: 24.25 } });
  assert.deepEqual(plan.remove, ['a', 'd']);
  assert.equal(plan.predictedLatencyMs, 24.25);
  // A budget already met removes nothing.
  const met = planSglp({ units, segments, baselineLatencyMs: 30, budget: { kind: 'latency-ms', value: 31 } });
  assert.deepEqual(met.remove, []);
});

test("'fraction' removes the rounded-down share of removable units", () => {
  const units: SglpUnit[] = Array.from({ length: 10 }, (_, i) => ({
    id: `u${i}`,
    removable: true,
    latencyMs: 1,
    importance: (i * 7) % 10,
  }));
  const segments = [units.map((_, i) => i)];
  const run = (value: number): string[] =>
    planSglp({ units, segments, baselineLatencyMs: 20, budget: { kind: 'fraction', value } }).remove;
  assert.equal(run(0.3).length, 3);
  assert.equal(run(0.35).length, 3);
  assert.equal(run(0).length, 0);
  assert.deepEqual(run(0.3), ['u0', 'u3', 'u6']);
  assert.throws(() => run(1), /cannot remove 10 units \(1 of 10 removable units\): at most 9/);
  assert.throws(() => run(1.5), InvalidArgumentError);
});

test('planSglp rejects malformed input', () => {
  const u = (id: string, extra: Partial<SglpUnit> = {}): SglpUnit => ({
    id,
    removable: true,
    latencyMs: 1,
    importance: 1,
    ...extra,
  });
  const base = { baselineLatencyMs: 5, budget: { kind: 'remove', count: 0 } as const };
  assert.throws(() => planSglp({ ...base, units: [u('a'), u('a')], segments: [[0, 1]] }), /duplicate unit id 'a'/);
  assert.throws(() => planSglp({ ...base, units: [u('a')], segments: [[1]] }), /outside 0\.\.0/);
  assert.throws(() => planSglp({ ...base, units: [u('a'), u('b')], segments: [[0], [0, 1]] }), /more than one place/);
  assert.throws(() => planSglp({ ...base, units: [u('a', { latencyMs: -1 })], segments: [[0]] }), /latency -1/);
  assert.throws(() => planSglp({ ...base, units: [u('a', { importance: Number.NaN })], segments: [[0]] }), /importance/);
  assert.throws(() => planSglp({ ...base, units: [u('a')], segments: [[0]], keepPerSegment: -1 }), /keepPerSegment/);
  assert.throws(
    () => planSglp({ ...base, units: [u('a')], segments: [[0]], budget: { kind: 'latency-ms', value: -1 } }),
    /non-negative number of ms/,
  );
  assert.throws(
    () => planSglp({ ...base, units: [u('a')], segments: [[0]], budget: { kind: 'remove', count: 1.5 } }),
    /integer/,
  );
  // keepPerSegment 0 lets a whole segment go.
  const plan = planSglp({
    ...base,
    units: [u('a'), u('b')],
    segments: [[0, 1]],
    keepPerSegment: 0,
    budget: { kind: 'remove', count: 2 },
  });
  assert.equal(plan.remove.length, 2);
});
