import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type TableEntry, budgetQuanta, latencyQuanta, solveLayerMerge } from '../../service/src/core/layermerge/dp.js';
import { BudgetInfeasibleError, InvalidArgumentError } from '../../service/src/core/errors.js';
import { rng } from '../helpers/random.js';


type Entry = TableEntry & { kept: number; id: number };

/**
 * A random table over positions 0..L: every (j−1, j] block has at least one entry (so a plan always
 * exists), longer blocks appear at random with 1–3 entries each. Latencies are random floats, never
 * within float noise of a multiple of the quantum, so ⌈T/Δ⌉ is unambiguous for the brute force.
 */
function randomTable(random: () => number, L: number): Entry[] {
  const entries: Entry[] = [];
  for (let i = 0; i < L; i++) {
    for (let j = i + 1; j <= L; j++) {
      if (j - i > 1 && random() < 0.45) continue;
      const count = 1 + Math.floor(random() * 3);
      for (let c = 0; c < count; c++) {
        const kept = j - i === 1 ? (c === 0 ? 1 : Math.floor(random() * 2)) : Math.floor(random() * (j - i + 1));
        entries.push({
          id: entries.length,
          i,
          j,
          k: kept === 0 ? 0 : 1 + 2 * kept,
          kept,
          latencyMs: kept === 0 ? (random() < 0.5 ? 0 : 0.013 + random() * 0.2) : 0.05 + random() * 3,
          importance: random() * 2 - 0.3,
        });
      }
    }
  }
  return entries;
}

interface Best {
  importance: number;
  latency: number;
  cells: number;
  ids: number[];
}

/** Every path 0 → L through the table, by depth-first search; feasibility in the DP's own terms. */
function bruteForce(L: number, entries: readonly Entry[], budgetMs: number, q: number, admit: (e: Entry) => boolean): Best | null {
  const B = Math.floor(budgetMs / q + 1e-9);
  let best: Best | null = null;
  const path: Entry[] = [];
  const walk = (at: number): void => {
    if (at === L) {
      const cells = path.reduce((s, e) => s + Math.ceil(e.latencyMs / q), 0);
      if (cells > B) return;
      const importance = path.reduce((s, e) => s + e.importance, 0);
      const latency = path.reduce((s, e) => s + e.latencyMs, 0);
      if (best === null || importance > best.importance + 1e-12 || (Math.abs(importance - best.importance) <= 1e-12 && latency < best.latency)) {
        best = { importance, latency, cells, ids: path.map((e) => e.id) };
      }
      return;
    }
    for (const e of entries) {
      if (e.i !== at || !admit(e)) continue;
      path.push(e);
      walk(e.j);
      path.pop();
    }
  };
  walk(0);
  return best;
}

/** The same search with true latencies against a budget, for the bounds that hold whatever the rounding. */
function bruteForceContinuous(L: number, entries: readonly Entry[], budgetMs: number): { importance: number; maxBlocks: number } | null {
  let best: number | null = null;
  let maxBlocks = 0;
  const walk = (at: number, lat: number, imp: number, blocks: number): void => {
    if (lat > budgetMs) return;
    if (at === L) {
      if (best === null || imp > best) best = imp;
      maxBlocks = Math.max(maxBlocks, blocks);
      return;
    }
    for (const e of entries) if (e.i === at) walk(e.j, lat + e.latencyMs, imp + e.importance, blocks + 1);
  };
  walk(0, 0, 0, 0);
  return best === null ? null : { importance: best, maxBlocks };
}

function checkPlanShape(L: number, blocks: readonly TableEntry[]): void {
  assert.ok(blocks.length > 0);
  assert.equal(blocks[0]!.i, 0);
  assert.equal(blocks[blocks.length - 1]!.j, L);
  for (let n = 1; n < blocks.length; n++) assert.equal(blocks[n]!.i, blocks[n - 1]!.j, 'blocks must tile the chain');
}

const VARIANTS = {
  layermerge: (): boolean => true,
  'layer-only': (e: Entry): boolean => e.kept <= 1,
  'merge-only': (e: Entry): boolean => e.kept === e.j - e.i,
} as const;

test('DP optimum equals brute force over all paths (random tables, L ≤ 8, several budgets, all variants)', () => {
  const random = rng(7);
  let compared = 0;
  let infeasible = 0;
  let binding = 0;
  for (let trial = 0; trial < 120; trial++) {
    const L = 1 + Math.floor(random() * 8);
    const entries = randomTable(random, L);
    const q = [0.1, 0.05, 0.25][trial % 3]!;
    for (const [variant, admit] of Object.entries(VARIANTS) as Array<[keyof typeof VARIANTS, (e: Entry) => boolean]>) {
      const admitted = entries.filter(admit);
      const maxLatency = bruteForceContinuous(L, admitted, Infinity);
      if (maxLatency === null) continue;
      for (const budgetMs of [0.3, 1, 2.5, 5, 9, 20].map((b) => b * (0.5 + random()))) {
        const expected = bruteForce(L, entries, budgetMs, q, admit);
        if (expected === null) {
          assert.throws(() => solveLayerMerge({ positions: L, entries, budgetMs, quantumMs: q, variant }), BudgetInfeasibleError);
          infeasible++;
          continue;
        }
        const plan = solveLayerMerge({ positions: L, entries, budgetMs, quantumMs: q, variant });
        checkPlanShape(L, plan.blocks);
        assert.ok(plan.blocks.every(admit), `variant ${variant} used an entry it excludes`);
        assert.ok(Math.abs(plan.totalImportance - expected.importance) <= 1e-9, `L=${L} ${variant} budget ${budgetMs}: ${plan.totalImportance} vs ${expected.importance}`);
        const sumLat = plan.blocks.reduce((s, e) => s + e.latencyMs, 0);
        const sumImp = plan.blocks.reduce((s, e) => s + e.importance, 0);
        assert.ok(Math.abs(plan.totalLatencyMs - sumLat) <= 1e-12 && Math.abs(plan.totalImportance - sumImp) <= 1e-12);
        // the guarantee ceiling rounding buys: the true latency fits
        assert.ok(plan.totalLatencyMs <= budgetMs, `latency ${plan.totalLatencyMs} over budget ${budgetMs}`);
        // and what it costs: never better than the unrounded optimum, never worse than the optimum with Δ per block held back
        const upper = bruteForceContinuous(L, admitted, budgetMs)!;
        assert.ok(plan.totalImportance <= upper.importance + 1e-9);
        const lower = bruteForceContinuous(L, admitted, budgetMs - L * q);
        if (lower !== null) assert.ok(plan.totalImportance >= lower.importance - 1e-9);
        if (expected.importance < bruteForce(L, entries, 1e9, q, admit)!.importance - 1e-9) binding++;
        compared++;
      }
    }
  }
  assert.ok(compared > 800 && infeasible > 20 && binding > 200, `coverage: ${compared} compared, ${infeasible} infeasible, ${binding} with a binding budget`);
});

test('ties in importance go to the faster plan', () => {
  const entries: TableEntry[] = [
    { i: 0, j: 1, k: 3, latencyMs: 2, importance: 1 },
    { i: 1, j: 2, k: 3, latencyMs: 2, importance: 1 },
    { i: 0, j: 2, k: 5, latencyMs: 3, importance: 2 },
    { i: 0, j: 2, k: 5, latencyMs: 3.5, importance: 2 },
  ];
  const plan = solveLayerMerge({ positions: 2, entries, budgetMs: 10 });
  assert.deepEqual(plan.blocks, [entries[2]]);
  assert.equal(plan.totalLatencyMs, 3);
});

test('ceiling, not floor: a plan whose latencies round down under the budget but really exceed it is refused', () => {
  // Two 1.05 ms blocks: floor rounding would count 10 + 10 = 20 quanta = 2.0 ms and accept 2.1 ms.
  const entries: TableEntry[] = [
    { i: 0, j: 1, k: 3, latencyMs: 1.05, importance: 1 },
    { i: 1, j: 2, k: 3, latencyMs: 1.05, importance: 1 },
    { i: 0, j: 2, k: 5, latencyMs: 1.9, importance: 1.5 },
  ];
  const plan = solveLayerMerge({ positions: 2, entries, budgetMs: 2.0 });
  assert.deepEqual(plan.blocks, [entries[2]]);
  assert.ok(plan.totalLatencyMs <= 2.0);
  // the price: at 2.1 ms the pair really fits but needs 11 + 11 quanta > 21; at 2.2 ms it is taken
  assert.deepEqual(solveLayerMerge({ positions: 2, entries, budgetMs: 2.1 }).blocks, [entries[2]]);
  assert.deepEqual(solveLayerMerge({ positions: 2, entries, budgetMs: 2.2 }).blocks, [entries[0], entries[1]]);
});

test('latencies and budgets that are multiples of Δ up to float noise lose no quantum', () => {
  assert.equal(latencyQuanta(2.3, 0.1), 23);
  assert.equal(latencyQuanta(0.1 + 0.2, 0.1), 3);
  assert.equal(latencyQuanta(0.30001, 0.1), 4);
  assert.equal(latencyQuanta(0, 0.1), 0);
  assert.equal(budgetQuanta(146, 0.1), 1460);
  assert.equal(budgetQuanta(7.3, 0.1), 73);
  assert.equal(budgetQuanta(7.29999, 0.1), 72);
  const entries: TableEntry[] = [
    { i: 0, j: 1, k: 3, latencyMs: 2.3, importance: 1 },
    { i: 1, j: 2, k: 3, latencyMs: 1.2, importance: 1 },
    { i: 0, j: 2, k: 0, latencyMs: 0, importance: 0.5 },
  ];
  const plan = solveLayerMerge({ positions: 2, entries, budgetMs: 3.5 });
  assert.equal(plan.blocks.length, 2);
  assert.ok(plan.totalLatencyMs <= 3.5 + 1e-9);
});

test('an infeasible budget names the minimum reachable latency in ms', () => {
  const entries: TableEntry[] = [
    { i: 0, j: 1, k: 3, latencyMs: 1.23, importance: 1 },
    { i: 0, j: 1, k: 1, latencyMs: 0.72, importance: 0.5 },
    { i: 1, j: 3, k: 5, latencyMs: 2.01, importance: 1 },
    { i: 1, j: 2, k: 3, latencyMs: 1.5, importance: 1 },
    { i: 2, j: 3, k: 3, latencyMs: 1.5, importance: 1 },
  ];
  // fastest: 0.72 + 2.01 = 2.73 ms → 8 + 21 = 29 quanta → 2.9 ms is the smallest budget that works
  try {
    solveLayerMerge({ positions: 3, entries, budgetMs: 2.8 });
    assert.fail('expected BudgetInfeasibleError');
  } catch (err) {
    assert.ok(err instanceof BudgetInfeasibleError);
    assert.match(err.message, /2\.9 ms/);
    assert.equal(err.details.minimum, 2.9);
    assert.equal(err.details.unit, 'ms');
  }
  assert.equal(solveLayerMerge({ positions: 3, entries, budgetMs: 2.9 }).totalLatencyMs, 0.72 + 2.01);
  // merge-only keeps every conv: no (1, 3] entry says it keeps both, so the minimum changes
  const kept = entries.map((e) => ({ ...e, kept: 1 }));
  assert.throws(() => solveLayerMerge({ positions: 3, entries: kept, budgetMs: 3.5, variant: 'merge-only' }), (err: unknown) => {
    assert.ok(err instanceof BudgetInfeasibleError);
    assert.match(err.message, /3\.8 ms/); // 0.72 + 1.5 + 1.5 → 8 + 15 + 15 quanta
    return true;
  });
});

test('invalid tables and arguments are refused with InvalidArgumentError', () => {
  const ok: TableEntry[] = [{ i: 0, j: 1, k: 3, latencyMs: 1, importance: 1 }];
  const bad = (args: Parameters<typeof solveLayerMerge>[0]): void => {
    assert.throws(() => solveLayerMerge(args), InvalidArgumentError);
  };
  bad({ positions: 0, entries: ok, budgetMs: 5 });
  bad({ positions: 1, entries: ok, budgetMs: -1 });
  bad({ positions: 1, entries: ok, budgetMs: 5, quantumMs: 0 });
  bad({ positions: 1, entries: [{ ...ok[0]!, j: 2 }], budgetMs: 5 });
  bad({ positions: 1, entries: [{ ...ok[0]!, latencyMs: Number.NaN }], budgetMs: 5 });
  bad({ positions: 2, entries: ok, budgetMs: 5 }); // nothing reaches position 2
  bad({ positions: 1, entries: ok, budgetMs: 5, variant: 'layer-only' }); // kept missing
  bad({ positions: 1, entries: ok, budgetMs: 1e9, quantumMs: 1e-6 }); // table far too large
});

test('ResNet-34-sized table: plan fits the 146 ms budget and beats a greedy baseline', () => {
  const random = rng(3);
  const L = 33;
  const entries: Entry[] = [];
  for (let i = 0; i < L; i++) {
    for (let j = i + 1; j <= Math.min(L, i + 4); j++) {
      for (let kept = j - i === 1 ? 0 : 1; kept <= j - i; kept++) {
        entries.push({ id: entries.length, i, j, k: kept === 0 ? 0 : 2 * kept + 1, kept, latencyMs: kept === 0 ? 0 : (4 + 3 * kept) * (0.8 + 0.4 * random()), importance: Math.exp(-(j - i - kept + 0.5 * (j - i - 1)) * random() * 0.02) });
      }
    }
  }
  const plan = solveLayerMerge({ positions: L, entries, budgetMs: 146 });
  checkPlanShape(L, plan.blocks);
  assert.ok(plan.totalLatencyMs <= 146);
  // greedy: single-conv blocks, dropping the least important per ms until the budget holds
  const singles = Array.from({ length: L }, (_, i) => entries.filter((e) => e.i === i && e.j === i + 1));
  const choice = singles.map((s) => s.find((e) => e.kept === 1)!);
  let lat = choice.reduce((s, e) => s + e.latencyMs, 0);
  const order = singles.map((s, i) => ({ i, loss: (s.find((e) => e.kept === 1)!.importance - s.find((e) => e.kept === 0)!.importance) / s.find((e) => e.kept === 1)!.latencyMs })).sort((a, b) => a.loss - b.loss);
  for (const { i } of order) {
    if (lat <= 146) break;
    lat -= choice[i]!.latencyMs;
    choice[i] = singles[i]!.find((e) => e.kept === 0)!;
  }
  const greedy = choice.reduce((s, e) => s + e.importance, 0);
  assert.ok(plan.totalImportance >= greedy - 1e-12, `${plan.totalImportance} < greedy ${greedy}`);
  // A quantum dividing 0.1 ms rounds every latency up by less, so it can only do as well or better
  // (and this size exercises the tables that are not kept between calls).
  const fine = solveLayerMerge({ positions: L, entries, budgetMs: 146, quantumMs: 0.004 });
  checkPlanShape(L, fine.blocks);
  assert.ok(fine.totalLatencyMs <= 146);
  assert.ok(fine.totalImportance >= plan.totalImportance - 1e-12);
  // and solving the coarse problem again afterwards gives the same plan
  assert.deepEqual(solveLayerMerge({ positions: L, entries, budgetMs: 146 }).blocks, plan.blocks);
});
