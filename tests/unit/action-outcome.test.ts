/** The best model within the accuracy limit, and the gates that fail the step. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { budgetLabel, budgetSlug, chooseBest, evaluateOutcome, type ReportRow, type TradeoffData } from '../../action/src/outcome.js';

function row(speedup: number | null, accuracyChangePt: number | null, feasible = true): ReportRow {
  return {
    label: `x${speedup}`,
    feasible,
    reason: feasible ? null : 'no plan',
    latencyMs: speedup === null ? null : 10 / speedup,
    speedup,
    speedupRange: null,
    predictedSpeedup: null,
    accuracy: accuracyChangePt === null ? null : 0.9 + accuracyChangePt / 100,
    accuracyChangePt,
    agreement: null,
    parameters: null,
    removed: [],
    merged: [],
    segments: [],
    file: null,
  };
}

test('best: the fastest model; with a limit, the fastest within it; ties go to the one that keeps more accuracy', () => {
  const rows = [row(1.1, -0.1), row(1.5, -0.8), row(2.0, -5), row(null, null, false)];
  assert.equal(chooseBest(rows, null), 2);
  assert.equal(chooseBest(rows, 1), 1);
  assert.equal(chooseBest(rows, 0.8), 1, 'a drop equal to the limit is within it');
  assert.equal(chooseBest(rows, 0.05), null);
  assert.equal(chooseBest([row(1.5, -0.8), row(1.5, -0.2)], null), 1);
  assert.equal(chooseBest([row(1.5, null)], 1), null, 'an unmeasured accuracy is not within a limit');
  assert.equal(chooseBest([row(null, null, false)], null), null);
});

function tradeoff(points: { speedup: number; before: number | null; after: number | null }[], infeasible = 0): TradeoffData {
  return {
    baselineLatencyMs: 10,
    latencyBatch: 8,
    points: [
      ...points.map((p, i) => ({
        budget: { kind: 'REMOVE', value: i + 1 },
        feasible: true,
        reason: null,
        artifact: { sha256: String(i).repeat(64), size: 1, url: '/artifacts/x' },
        plan: { remove: ['u'], segments: [['u', 'v']], predictedSpeedup: p.speedup, importanceLost: 0 },
        report: {
          removed: ['u'],
          merged: [],
          parametersBefore: 100,
          parametersAfter: 90,
          originalMs: 10,
          compressedMs: 10 / p.speedup,
          latencyRatioP10: 0.9 / p.speedup,
          latencyRatioP90: 1.1 / p.speedup,
          speedup: p.speedup,
          accuracyBefore: p.before,
          accuracyAfter: p.after,
          agreement: 0.9,
          samples: 100,
        },
      })),
      ...Array.from({ length: infeasible }, () => ({ budget: { kind: 'LATENCY_MS', value: 0.001 }, feasible: false, reason: 'too fast', artifact: null, plan: null, report: null })),
    ],
  };
}

test('outcome: rows in budget order with the change in percentage points, the original from the first report', () => {
  const o = evaluateOutcome(tradeoff([{ speedup: 1.2, before: 0.9, after: 0.895 }], 1), ['out/a.onnx', null], { maxAccuracyDrop: null, minSpeedup: null });
  assert.deepEqual(o.original, { latencyMs: 10, accuracy: 0.9, parameters: 100, pairedMs: [10, 10] });
  assert.equal(o.rows.length, 2);
  assert.ok(Math.abs(o.rows[0]!.accuracyChangePt! - -0.5) < 1e-9);
  assert.equal(o.rows[0]!.file, 'out/a.onnx');
  assert.deepEqual(o.rows[1], { ...o.rows[1]!, feasible: false, reason: 'too fast', speedup: null, file: null });
  assert.equal(o.best, 0);
  assert.deepEqual(o.gates, []);
});

test('GATES - max-accuracy-drop fails when every model loses more, naming the smallest loss', () => {
  const o = evaluateOutcome(tradeoff([{ speedup: 1.2, before: 0.9, after: 0.88 }, { speedup: 1.5, before: 0.9, after: 0.85 }]), [null, null], { maxAccuracyDrop: 1, minSpeedup: null });
  assert.equal(o.best, null);
  assert.deepEqual(o.gates.map((g) => [g.input, g.passed]), [['max-accuracy-drop', false]]);
  assert.equal(o.gates[0]!.message, 'every compressed model loses more than the allowed 1 pt of accuracy; the least loss is −2.00 pt (remove 1).');
});

test('GATES - min-speedup judges the best model within the accuracy limit', () => {
  const points = [
    { speedup: 1.2, before: 0.9, after: 0.899 },
    { speedup: 1.8, before: 0.9, after: 0.8 },
  ];
  const passed = evaluateOutcome(tradeoff(points), [null, null], { maxAccuracyDrop: null, minSpeedup: 1.5 });
  assert.deepEqual(passed.gates.map((g) => [g.input, g.passed, g.message]), [['min-speedup', true, 'the best speed-up is 1.80× (remove 2), at least the required 1.50×.']]);
  const failed = evaluateOutcome(tradeoff(points), [null, null], { maxAccuracyDrop: 0.5, minSpeedup: 1.5 });
  assert.deepEqual(failed.gates.map((g) => [g.input, g.passed]), [
    ['max-accuracy-drop', true],
    ['min-speedup', false],
  ]);
  assert.equal(failed.gates[1]!.message, 'the best speed-up within the accuracy limit is 1.20× (remove 1), below the required 1.50×.');
});

test('GATES - an accuracy limit without labelled data fails, and says why', () => {
  const o = evaluateOutcome(tradeoff([{ speedup: 1.2, before: null, after: null }]), [null], { maxAccuracyDrop: 1, minSpeedup: null });
  assert.equal(o.gates[0]!.passed, false);
  assert.match(o.gates[0]!.message, /accuracy was not measured \(the evaluation data has no labels\)/);
});

test('GATES - no budget met fails both gates', () => {
  const o = evaluateOutcome(tradeoff([], 2), [null, null], { maxAccuracyDrop: 1, minSpeedup: 1.1 });
  assert.deepEqual(o.gates.map((g) => g.passed), [false, false]);
  assert.match(o.gates[0]!.message, /^no budget could be met/);
  assert.match(o.gates[1]!.message, /^no budget could be met/);
});

test('budget labels and file-name parts', () => {
  const cases: [string, number, string, string][] = [
    ['LATENCY_FRACTION', 0.7, 'latency ×0.7', 'latency-0.7'],
    ['LATENCY_MS', 12.5, '12.5 ms', '12.5ms'],
    ['REMOVE', 3, 'remove 3', 'remove-3'],
    ['FRACTION', 0.25, '25% of units', 'fraction-0.25'],
  ];
  for (const [kind, value, label, slug] of cases) {
    assert.equal(budgetLabel({ kind, value }), label);
    assert.equal(budgetSlug({ kind, value }), slug);
  }
});
