/**
 * The action's report renderer: plain data in, markdown out. Checks the table's figures, the
 * Mermaid block against the grammar GitHub's renderer parses, the marker, the comment size cap
 * and the gate messages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateOutcome, type Limits, type MergedConvData, type TradeoffData, type TradeoffPointData } from '../../action/src/outcome.js';
import { COMMENT_MARKER, GITHUB_COMMENT_LIMIT, renderReport, type ReportData } from '../../action/src/report.js';

interface PointSpec {
  kind?: string;
  value: number;
  speedup: number;
  accuracy: number | null;
  removed: string[];
  merged?: MergedConvData[];
  segments?: string[][];
  ms?: number;
  params?: number;
}

const SEGMENTS = [['conv0'], ['residual0', 'residual1', 'residual2'], ['residual3', 'residual4', 'residual5', 'linear0']];

function point(p: PointSpec): TradeoffPointData {
  return {
    budget: { kind: p.kind ?? 'LATENCY_FRACTION', value: p.value },
    feasible: true,
    reason: null,
    artifact: { sha256: 'a'.repeat(64), size: 1000, url: `/artifacts/${'a'.repeat(64)}` },
    plan: { remove: p.removed, segments: p.segments ?? SEGMENTS, predictedSpeedup: p.speedup * 0.98, importanceLost: 0.01 },
    report: {
      removed: p.removed,
      merged: p.merged ?? [],
      parametersBefore: 272_474,
      parametersAfter: p.params ?? 272_474 - 10_000 * p.removed.length,
      originalMs: 12.4,
      compressedMs: p.ms ?? 12.4 / p.speedup,
      latencyRatioP10: 0.95 / p.speedup,
      latencyRatioP90: 1.05 / p.speedup,
      speedup: p.speedup,
      accuracyBefore: p.accuracy === null ? null : 0.919,
      accuracyAfter: p.accuracy,
      agreement: p.accuracy === null ? 0.97 : 0.98,
      samples: 512,
    },
  };
}

function infeasible(value: number, reason: string): TradeoffPointData {
  return { budget: { kind: 'LATENCY_MS', value }, feasible: false, reason, artifact: null, plan: null, report: null };
}

function sweep(points: TradeoffPointData[]): TradeoffData {
  return { baselineLatencyMs: 12.4, latencyBatch: 32, points };
}

function report(points: TradeoffPointData[], limits: Limits = { maxAccuracyDrop: null, minSpeedup: null }, over: Partial<ReportData> = {}): ReportData {
  const files = points.map((p) => (p.feasible ? `strata-models/classifier-${p.budget.kind === 'REMOVE' ? 'remove' : 'latency'}-${p.budget.value}.onnx` : null));
  return {
    model: 'models/classifier.onnx',
    method: 'SGLP',
    evalData: 'data/calibration.npz',
    evalSamples: 512,
    latencyBatch: 32,
    outcome: evaluateOutcome(sweep(points), files, limits),
    runUrl: 'https://github.com/acme/models/actions/runs/42',
    commit: '0123456789abcdef0123456789abcdef01234567',
    ...over,
  };
}

const THREE = [
  point({ value: 0.9, speedup: 1.12, accuracy: 0.918, removed: ['residual1'] }),
  point({ value: 0.7, speedup: 1.43, accuracy: 0.913, removed: ['residual1', 'residual4'] }),
  point({ value: 0.5, speedup: 2.05, accuracy: 0.85, removed: ['residual1', 'residual2', 'residual4', 'residual5'] }),
];

function tableRows(md: string): string[][] {
  return md
    .split('\n')
    .filter((l) => l.startsWith('| ') && !l.startsWith('| :--') && !l.startsWith('| model'))
    .map((l) =>
      l
        .slice(2, -2)
        .split(' | ')
        .map((c) => c.trim()),
    );
}

function mermaidBlocks(md: string): string[][] {
  const blocks: string[][] = [];
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```mermaid') continue;
    const end = lines.indexOf('```', i + 1);
    assert.ok(end > i, 'the mermaid fence is closed');
    blocks.push(lines.slice(i + 1, end).map((l) => l.trim()));
    i = end;
  }
  return blocks;
}

/** Mermaid's xychart lexer: numbers have no exponent, strings end at the next double quote. */
const MERMAID_NUMBER = /^[+-]?(?:\d+(?:\.\d+)?|\.\d+)$/;

function parseXyChart(block: string[]): { title: string; categories: string[]; yRange: [number, number]; line: number[] } {
  assert.equal(block[0], 'xychart-beta');
  const title = /^title "([^"]*)"$/.exec(block[1] ?? '');
  assert.ok(title, `title line: ${block[1]}`);
  const xAxis = /^x-axis "([^"]*)" \[(.*)\]$/.exec(block[2] ?? '');
  assert.ok(xAxis, `x-axis line: ${block[2]}`);
  const categories = [...xAxis[2]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
  assert.equal(xAxis[2]!.replace(/"[^"]*"/g, '').replace(/[\s,]/g, ''), '', 'only quoted categories between the brackets');
  const yAxis = /^y-axis "([^"]*)" (\S+) --> (\S+)$/.exec(block[3] ?? '');
  assert.ok(yAxis, `y-axis line: ${block[3]}`);
  assert.match(yAxis[2]!, MERMAID_NUMBER);
  assert.match(yAxis[3]!, MERMAID_NUMBER);
  const line = /^line \[(.*)\]$/.exec(block[4] ?? '');
  assert.ok(line, `line series: ${block[4]}`);
  const values = line[1]!.split(',').map((v) => v.trim());
  for (const v of values) assert.match(v, MERMAID_NUMBER);
  assert.equal(block.length, 5);
  assert.ok(!block.join('\n').includes('%%'), 'no %% (a Mermaid comment) anywhere');
  return { title: title[1]!, categories, yRange: [Number(yAxis[2]), Number(yAxis[3])], line: values.map(Number) };
}

test('the report opens with the marker that later runs find the comment by', () => {
  const md = renderReport(report(THREE));
  assert.equal(md.split('\n')[0], COMMENT_MARKER);
  assert.equal(COMMENT_MARKER, '<!-- strata-report -->');
});

test('the table has the original and every budget: latency, speed-up, accuracy, change, parameters, units removed', () => {
  const rows = tableRows(renderReport(report(THREE)));
  assert.deepEqual(rows, [
    ['original', '12.4', '1.00×', '91.90%', '—', '272,474', '—'],
    ['latency ×0.9', '11.1', '1.12×', '91.80%', '−0.10 pt', '262,474', '1'],
    ['latency ×0.7', '8.67', '1.43×', '91.30%', '−0.60 pt', '252,474', '2'],
    ['**latency ×0.5** ★', '6.05', '2.05×', '85.00%', '−6.90 pt', '232,474', '4'],
  ]);
});

test('the best model is the fastest within max-accuracy-drop, and the headline names it and its file', () => {
  const md = renderReport(report(THREE, { maxAccuracyDrop: 1, minSpeedup: null }));
  const rows = tableRows(md);
  assert.equal(rows[2]![0], '**latency ×0.7** ★');
  assert.match(md, /\*\*Best: latency ×0\.7\*\*, \*\*1\.43×\*\* faster at batch 32, accuracy 91\.90% → 91\.30% \(−0\.60 pt\), 2 units removed: `strata-models\/classifier-latency-0\.7\.onnx`/);
});

test('a budget no plan meets gets a row and its reason, escaped', () => {
  const md = renderReport(report([...THREE, infeasible(0.01, 'cannot reach 0.01 ms <script>alert(1)</script> | at best 4.2 ms')]));
  const rows = tableRows(md);
  assert.deepEqual(rows[4], ['0.01 ms', '—', '—', '—', '—', '—', 'not met']);
  assert.match(md, /- 0\.01 ms is not met: cannot reach 0\.01 ms &lt;script&gt;alert\(1\)&lt;\/script&gt; \\\| at best 4\.2 ms/);
  assert.ok(!md.includes('<script>'));
});

test('the Mermaid block is an xychart-beta GitHub can parse: speed-up against accuracy, highest accuracy first', () => {
  const blocks = mermaidBlocks(renderReport(report(THREE)));
  assert.equal(blocks.length, 1);
  const chart = parseXyChart(blocks[0]!);
  assert.equal(chart.title, 'Speed-up against top-1 accuracy');
  assert.deepEqual(chart.categories, ['91.90 original', '91.80 latency x0.9', '91.30 latency x0.7', '85.00 latency x0.5']);
  assert.deepEqual(chart.line, [1, 1.12, 1.43, 2.05]);
  assert.equal(chart.yRange[0], 0);
  assert.ok(chart.yRange[1] >= 2.05);
});

test('the chart keeps every point when two budgets land on the same accuracy and label', () => {
  const same = [point({ value: 0.9, speedup: 1.1, accuracy: 0.918, removed: ['residual1'] }), point({ value: 0.9, speedup: 1.1, accuracy: 0.918, removed: ['residual1'] })];
  const chart = parseXyChart(mermaidBlocks(renderReport(report(same)))[0]!);
  assert.equal(new Set(chart.categories).size, 3);
  assert.equal(chart.line.length, 3);
});

test('without labels there is no accuracy: dashes in the table, the chart by budget', () => {
  const unlabelled = [point({ value: 0.9, speedup: 1.1, accuracy: null, removed: ['residual1'] }), point({ value: 0.6, speedup: 1.6, accuracy: null, removed: ['residual1', 'residual2'] })];
  const md = renderReport(report(unlabelled, undefined, { evalSamples: null }));
  assert.deepEqual(tableRows(md)[0], ['original', '12.4', '1.00×', '—', '—', '272,474', '—']);
  assert.deepEqual(tableRows(md)[1]!.slice(3, 5), ['—', '—']);
  assert.match(md, /Accuracy is not measured: `data\/calibration\.npz` has no labels/);
  const chart = parseXyChart(mermaidBlocks(md)[0]!);
  assert.equal(chart.title, 'Speed-up by budget (accuracy not measured)');
  assert.deepEqual(chart.categories, ['original', 'latency x0.9', 'latency x0.6']);
});

test('no budget met: no chart, and the headline says so', () => {
  const md = renderReport(report([infeasible(0.01, 'too fast'), infeasible(0.02, 'too fast')]));
  assert.equal(mermaidBlocks(md).length, 0);
  assert.match(md, /\*\*No budget could be met\.\*\*/);
});

test('plan details: one collapsible block per measured budget, removed units as deleted diff lines in their segments', () => {
  const md = renderReport(report(THREE));
  assert.equal(md.match(/<details>/g)?.length, 3);
  assert.equal(md.match(/<\/details>/g)?.length, 3);
  const block = md.slice(md.indexOf('<summary><b>latency ×0.7</b>'));
  assert.match(block, /^<summary><b>latency ×0\.7<\/b>: 2 units removed, 3 segments, 1\.43×, accuracy −0\.60 pt<\/summary>/);
  const diff = block.slice(block.indexOf('```diff') + 8, block.indexOf('\n```\n'));
  assert.deepEqual(diff.split('\n'), [
    '@@ segment 1 of 3 @@',
    '  conv0',
    '@@ segment 2 of 3 @@',
    '  residual0',
    '- residual1',
    '  residual2',
    '@@ segment 3 of 3 @@',
    '  residual3',
    '- residual4',
    '  residual5',
    '  linear0',
  ]);
});

const MERGED: MergedConvData[] = [
  { from: ['conv11'], kh: 3, kw: 3, foldedSkips: ['add4'], refit: true },
  { from: ['conv13', 'conv14'], kh: 5, kw: 5, foldedSkips: ['add5', 'add6'], refit: false },
];

test('a LayerMerge plan (no segments): no segments counted; removed convolutions and activations are deleted lines, merged convolutions added ones', () => {
  const removed = ['conv10', 'activation9', 'conv12'];
  const md = renderReport(report([point({ value: 0.8, speedup: 1.2, accuracy: 0.9, removed, merged: MERGED, segments: [] })], undefined, { method: 'LAYERMERGE' }));
  assert.match(md.split('\n')[1]!, /^### strata: `models\/classifier\.onnx`, LAYERMERGE over 1 budget$/);
  const block = md.slice(md.indexOf('<summary>'));
  assert.match(block, /^<summary><b>latency ×0\.8<\/b>: 3 units removed, 2 merged convs, 1\.20×, accuracy −1\.90 pt<\/summary>/);
  const diff = block.slice(block.indexOf('```diff') + 8, block.indexOf('\n```\n'));
  assert.deepEqual(diff.split('\n'), [
    ...removed.map((u) => `- ${u}`),
    '+ 3×3 conv from conv11, folds 1 skip, refit',
    '+ 5×5 conv from conv13+conv14, folds 2 skips',
  ]);
});

test('LayerMerge rows count the units removed and the convolutions merged in one column; the headline and the footnote say so', () => {
  const points = [
    point({ value: 0.8, speedup: 1.2, accuracy: 0.915, removed: ['conv10', 'activation9', 'conv12'], merged: MERGED, segments: [] }),
    point({ value: 0.9, speedup: 1.1, accuracy: 0.918, removed: ['activation9'], merged: [MERGED[0]!], segments: [] }),
    infeasible(0.01, 'too fast'),
  ];
  const md = renderReport(
    report(points, { maxAccuracyDrop: 1, minSpeedup: null }, { method: 'LAYERMERGE', layerMerge: { variant: 'MERGE_ONLY', refit: true, quantumMs: 0.05 } }),
  );
  assert.match(md, /^\| model \| latency \(ms\) \| speed-up \| accuracy \| change \| parameters \| units removed\/merged \|$/m);
  const rows = tableRows(md);
  assert.deepEqual(
    rows.map((r) => r[6]),
    ['—', '3 / 2', '1 / 1', 'not met'],
  );
  assert.match(md, /\*\*Best: latency ×0\.8\*\*, \*\*1\.20×\*\* faster at batch 32, accuracy 91\.90% → 91\.50% \(−0\.40 pt\), 3 units removed, 2 merged convs: /);
  assert.match(md, /Units removed\/merged: convolutions and activations removed, and the convolutions that each stand for a merged block\. LayerMerge variant merge-only, merged convolutions refit by least squares, 0\.05 ms latency quantum\./);
  const exact = renderReport(report(points, undefined, { method: 'LAYERMERGE', layerMerge: { variant: 'LAYERMERGE', refit: false, quantumMs: null } }));
  assert.match(exact, /LayerMerge variant layermerge, exact merges, not refit\. /);
});

test('SGLP rows keep the units removed column alone: no merged count anywhere', () => {
  const md = renderReport(report(THREE));
  assert.match(md, /\| parameters \| units removed \|$/m);
  assert.deepEqual(
    tableRows(md).map((r) => r[6]),
    ['—', '1', '2', '4'],
  );
  assert.doesNotMatch(md, /merged/);
});

test('a failed gate stands out at the top and names the input, the limit and the figure; a passed one is a line', () => {
  const md = renderReport(report(THREE, { maxAccuracyDrop: 1, minSpeedup: 2 }));
  assert.match(md, /> \[!CAUTION\]\n> ❌ \*\*Gate failed: `min-speedup: 2`\*\*: the best speed-up within the accuracy limit is 1\.43× \(latency ×0\.7\), below the required 2\.00×\./);
  assert.match(md, /✅ Gate passed: `max-accuracy-drop: 1`: the best model \(latency ×0\.7\) changes accuracy by −0\.60 pt, within the allowed drop of 1 pt\./);
  assert.ok(md.indexOf('[!CAUTION]') < md.indexOf('| model |'), 'the gates come before the table');
});

test('both gates failing are both listed, each on its own line of the alert', () => {
  const md = renderReport(report(THREE, { maxAccuracyDrop: 0.05, minSpeedup: 1.2 }));
  assert.match(md, /> ❌ \*\*Gate failed: `max-accuracy-drop: 0\.05`\*\*: every compressed model loses more than the allowed 0\.05 pt of accuracy; the least loss is −0\.10 pt \(latency ×0\.9\)\.\n>\n> ❌ \*\*Gate failed: `min-speedup: 1\.2`\*\*: no model within the accuracy limit, so none reaches the required 1\.20× speed-up\./);
  assert.match(md, /\*\*No compressed model is within the accuracy limit\.\*\*/);
});

test('SIZE CAP - huge plan details are cut to fit 65,536 characters, the comment says so, and the table, chart and gates stay whole', () => {
  const units = Array.from({ length: 1500 }, (_, i) => `model.encoder.layers.${i}.residual_block_with_a_long_exported_name`);
  const segments = [units.slice(0, 500), units.slice(500, 1000), units.slice(1000)];
  const points = Array.from({ length: 12 }, (_, i) =>
    point({ value: Number((0.95 - i * 0.05).toFixed(2)), speedup: 1 + i * 0.1, accuracy: 0.919 - i * 0.002, removed: units.filter((_, j) => j % (12 - i + 1) === 0), segments }),
  );
  const data = report(points, { maxAccuracyDrop: 2, minSpeedup: 5 });
  const uncut = renderReport(data, { maxLength: 10_000_000 });
  assert.ok(uncut.length > 4 * GITHUB_COMMENT_LIMIT, `the uncut report is ${uncut.length} characters`);
  assert.ok(!uncut.includes('were cut'));

  const md = renderReport(data);
  assert.ok(md.length <= GITHUB_COMMENT_LIMIT, `${md.length} characters`);
  assert.equal(md.split('\n')[0], COMMENT_MARKER);
  assert.match(md, /> \[!NOTE\]\n> The plan details of \d+ of 12 budgets were cut to fit GitHub's limit of 65,536 characters for a comment; the full report is in the \[job summary of the run\]\(https:\/\/github\.com\/acme\/models\/actions\/runs\/42\)/);
  assert.equal(tableRows(md).length, 13);
  assert.equal(parseXyChart(mermaidBlocks(md)[0]!).line.length, 13);
  assert.match(md, /Gate failed: `min-speedup: 5`/);
  assert.equal(md.match(/<details>/g)?.length ?? 0, md.match(/<\/details>/g)?.length ?? 0, 'every details block is closed');
  assert.equal((md.match(/^```/gm)?.length ?? 0) % 2, 0, 'every code fence is closed');
  assert.match(md, /\(list cut\)/);
});

test('SIZE CAP - any limit is kept, even one smaller than the table', () => {
  const md = renderReport(report(THREE), { maxLength: 600 });
  assert.ok(md.length <= 600, `${md.length} characters`);
  assert.match(md, /were cut to fit/);
});

test('markdown in the model path cannot break out of its code span', () => {
  const md = renderReport(report(THREE, undefined, { model: 'models/`evil`|<b>.onnx' }));
  assert.match(md.split('\n')[1]!, /^### strata: ``models\/`evil`\|<b>\.onnx``, SGLP over 3 budgets$/);
});

test('SIZE CAP - the best model keeps its plan details before the others do', () => {
  const units = Array.from({ length: 300 }, (_, i) => `model.encoder.layers.${i}.block`);
  const segments = [units.slice(0, 100), units.slice(100, 200), units.slice(200)];
  const points = Array.from({ length: 8 }, (_, i) =>
    point({ value: Number((0.9 - i * 0.05).toFixed(2)), speedup: 1 + i * 0.1, accuracy: 0.919 - i * 0.01, removed: units.filter((_, j) => j % (9 - i) === 0), segments }),
  );
  const md = renderReport(report(points), { maxLength: 20_000 });
  assert.ok(md.length <= 20_000);
  assert.equal(md.match(/<details>/g)?.length, 1);
  assert.match(md, /<summary><b>latency ×0\.55<\/b>: 150 units removed/);
  assert.match(md, /The plan details of 7 of 8 budgets were cut to fit GitHub's limit of 20,000 characters/);
  assert.equal(md.match(/\(list cut\)$/gm)?.length, 7);
});
