/** The action's inputs: budgets, numbers and URLs are checked before anything is uploaded. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../../action/src/errors.js';
import { parseBudgets, parseInputs } from '../../action/src/inputs.js';

const WORKSPACE = '/home/runner/work/models/models';

function read(values: Record<string, string>) {
  return (name: string) => values[name] ?? '';
}

const MINIMAL = { 'service-url': 'https://strata.example.com/', model: 'models/classifier.onnx', data: 'data/calibration.npz' };

function rejects(values: Record<string, string>, input: string, message: RegExp) {
  assert.throws(
    () => parseInputs(read(values), WORKSPACE),
    (e: unknown) => e instanceof InputError && e.input === input && message.test(e.message),
  );
}

test('defaults: eval data is the calibration data, budgets 0.9/0.7/0.5, SGLP, comments on, output under the workspace', () => {
  const i = parseInputs(read(MINIMAL), WORKSPACE);
  assert.equal(i.serviceUrl, 'https://strata.example.com');
  assert.deepEqual(i.model, { given: 'models/classifier.onnx', path: '/home/runner/work/models/models/models/classifier.onnx' });
  assert.deepEqual(i.evalData, i.data);
  assert.deepEqual(i.budgets, [
    { kind: 'latency-fraction', value: 0.9 },
    { kind: 'latency-fraction', value: 0.7 },
    { kind: 'latency-fraction', value: 0.5 },
  ]);
  assert.equal(i.method, 'SGLP');
  assert.equal(i.layerMerge, null, 'no LayerMerge options are sent with SGLP');
  assert.equal(i.samples, null);
  assert.equal(i.latencyBatch, null);
  assert.equal(i.maxAccuracyDrop, null);
  assert.equal(i.minSpeedup, null);
  assert.equal(i.comment, true);
  assert.equal(i.pollIntervalMs, 2000);
  assert.equal(i.outputDir.path, '/home/runner/work/models/models/strata-models');
});

test('every input given', () => {
  const i = parseInputs(
    read({
      ...MINIMAL,
      'service-url': 'http://10.0.0.5:4000/strata',
      'eval-data': '/abs/eval.npz',
      budgets: '0.8\n12.5ms, remove:3, fraction:0.25',
      method: 'sglp',
      samples: '256',
      'latency-batch': '8',
      'max-accuracy-drop': '0.5',
      'min-speedup': '1.2',
      'output-dir': 'out',
      comment: 'false',
      'poll-interval': '0.25',
    }),
    WORKSPACE,
  );
  assert.equal(i.serviceUrl, 'http://10.0.0.5:4000/strata');
  assert.deepEqual(i.evalData, { given: '/abs/eval.npz', path: '/abs/eval.npz' });
  assert.deepEqual(i.budgets, [
    { kind: 'latency-fraction', value: 0.8 },
    { kind: 'latency-ms', value: 12.5 },
    { kind: 'remove', value: 3 },
    { kind: 'fraction', value: 0.25 },
  ]);
  assert.deepEqual([i.samples, i.latencyBatch, i.maxAccuracyDrop, i.minSpeedup, i.comment, i.pollIntervalMs], [256, 8, 0.5, 1.2, false, 250]);
});

test('BAD INPUT - a missing required input is named', () => {
  rejects({ ...MINIMAL, 'service-url': '' }, 'service-url', /^input `service-url`: is required$/);
  rejects({ ...MINIMAL, model: '  ' }, 'model', /is required/);
  rejects({ ...MINIMAL, data: '' }, 'data', /is required/);
});

test('BAD INPUT - a service URL that is not http(s)', () => {
  rejects({ ...MINIMAL, 'service-url': 'strata.example.com' }, 'service-url', /is not a URL/);
  rejects({ ...MINIMAL, 'service-url': 'ftp://strata.example.com' }, 'service-url', /is not an http\(s\) URL/);
});

test('BAD INPUT - budgets out of range or unreadable, quoting the budget', () => {
  assert.throws(() => parseBudgets('0.9, 1.5'), /`budgets`: "1\.5": a latency target is a fraction of the original latency in \(0, 1\]/);
  assert.throws(() => parseBudgets('0'), /"0": a latency target/);
  assert.throws(() => parseBudgets('0ms'), /"0ms": a latency in milliseconds must be positive/);
  assert.throws(() => parseBudgets('remove:0'), /"remove:0": remove at least one unit/);
  assert.throws(() => parseBudgets('fraction:2'), /"fraction:2": a fraction of the removable units is in \[0, 1\]/);
  assert.throws(() => parseBudgets('fast'), /"fast" is not a budget: write 0\.7 \(latency fraction\), 12ms, remove:3 or fraction:0\.25/);
  assert.throws(() => parseBudgets(' , '), /give at least one budget/);
  assert.throws(() => parseBudgets(Array(33).fill('0.5').join(',')), /give at most 32 budgets, got 33/);
});

test('BAD INPUT - numbers', () => {
  rejects({ ...MINIMAL, samples: '-3' }, 'samples', /"-3" is not a positive integer/);
  rejects({ ...MINIMAL, 'latency-batch': '2.5' }, 'latency-batch', /"2\.5" is not a positive integer/);
  rejects({ ...MINIMAL, 'max-accuracy-drop': '-1' }, 'max-accuracy-drop', /"-1" is not a number of percentage points, 0 or more/);
  rejects({ ...MINIMAL, 'min-speedup': 'fast' }, 'min-speedup', /"fast" is not a positive factor/);
  rejects({ ...MINIMAL, comment: 'maybe' }, 'comment', /"maybe" is not true or false/);
  rejects({ ...MINIMAL, method: 'sglp; drop' }, 'method', /is not a method name/);
});

test('method layermerge is the service enum LAYERMERGE, with latency budgets', () => {
  const i = parseInputs(read({ ...MINIMAL, method: 'layermerge', budgets: '0.8, 12ms' }), WORKSPACE);
  assert.equal(i.method, 'LAYERMERGE');
  assert.deepEqual(i.budgets, [
    { kind: 'latency-fraction', value: 0.8 },
    { kind: 'latency-ms', value: 12 },
  ]);
  assert.equal(parseInputs(read({ ...MINIMAL, method: 'LayerMerge' }), WORKSPACE).method, 'LAYERMERGE');
});

test('BAD INPUT - layermerge with a count of units or a fraction of them as a budget', () => {
  rejects({ ...MINIMAL, method: 'layermerge', budgets: '0.8, remove:3' }, 'budgets', /"remove:3": method layermerge takes latency budgets only/);
  rejects({ ...MINIMAL, method: 'layermerge', budgets: 'fraction:0.25' }, 'budgets', /"fraction:0\.25": method layermerge takes latency budgets only/);
});

test('method layermerge: variant layermerge, refit on and the service\'s quantum unless the layermerge-* inputs say otherwise', () => {
  const defaults = parseInputs(read({ ...MINIMAL, method: 'layermerge' }), WORKSPACE);
  assert.deepEqual(defaults.layerMerge, { variant: 'LAYERMERGE', refit: true, quantumMs: null });
  // what action.yml passes when the workflow leaves them out
  const declared = parseInputs(read({ ...MINIMAL, method: 'layermerge', 'layermerge-variant': 'layermerge', 'layermerge-refit': 'true', 'layermerge-quantum-ms': '' }), WORKSPACE);
  assert.deepEqual(declared.layerMerge, defaults.layerMerge);
  const given = parseInputs(
    read({ ...MINIMAL, method: 'layermerge', 'layermerge-variant': ' merge-only ', 'layermerge-refit': 'false', 'layermerge-quantum-ms': '0.05' }),
    WORKSPACE,
  );
  assert.deepEqual(given.layerMerge, { variant: 'MERGE_ONLY', refit: false, quantumMs: 0.05 });
  assert.equal(parseInputs(read({ ...MINIMAL, method: 'layermerge', 'layermerge-variant': 'LAYER_ONLY' }), WORKSPACE).layerMerge!.variant, 'LAYER_ONLY');
  assert.equal(parseInputs(read({ ...MINIMAL, method: 'layermerge', 'layermerge-refit': 'no' }), WORKSPACE).layerMerge!.refit, false);
});

test('BAD INPUT - layermerge-* values out of range, quoting the value and what is accepted', () => {
  const lm = { ...MINIMAL, method: 'layermerge' };
  rejects({ ...lm, 'layermerge-variant': 'deep' }, 'layermerge-variant', /^input `layermerge-variant`: "deep" is not a LayerMerge variant: layermerge, layer-only or merge-only$/);
  rejects({ ...lm, 'layermerge-refit': 'maybe' }, 'layermerge-refit', /^input `layermerge-refit`: "maybe" is not true or false$/);
  rejects({ ...lm, 'layermerge-quantum-ms': '0' }, 'layermerge-quantum-ms', /^input `layermerge-quantum-ms`: "0" is not a positive number of milliseconds, e.g\. 0\.1$/);
  rejects({ ...lm, 'layermerge-quantum-ms': '-0.1' }, 'layermerge-quantum-ms', /"-0\.1" is not a positive number of milliseconds/);
  rejects({ ...lm, 'layermerge-quantum-ms': '1ms' }, 'layermerge-quantum-ms', /"1ms" is not a positive number of milliseconds/);
  // checked whatever the method: a typo fails at once
  rejects({ ...MINIMAL, 'layermerge-variant': 'deep' }, 'layermerge-variant', /is not a LayerMerge variant/);
});

test('BAD INPUT - layermerge-* set to anything but the default with method sglp is refused, naming the method', () => {
  rejects(
    { ...MINIMAL, 'layermerge-variant': 'merge-only' },
    'layermerge-variant',
    /^input `layermerge-variant`: "merge-only" applies to method layermerge only, and method is sglp: leave it out or set method: layermerge$/,
  );
  rejects({ ...MINIMAL, method: 'sglp', 'layermerge-refit': 'false' }, 'layermerge-refit', /"false" applies to method layermerge only, and method is sglp/);
  rejects({ ...MINIMAL, 'layermerge-quantum-ms': '0.1' }, 'layermerge-quantum-ms', /"0\.1" applies to method layermerge only/);
  // the defaults action.yml fills in are no request at all
  const i = parseInputs(read({ ...MINIMAL, 'layermerge-variant': 'layermerge', 'layermerge-refit': 'true', 'layermerge-quantum-ms': '' }), WORKSPACE);
  assert.equal(i.layerMerge, null);
});
