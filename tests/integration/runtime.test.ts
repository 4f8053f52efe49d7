import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { StrataError } from '../../service/src/core/errors.js';
import { decodeModel, encodeModel } from '../../service/src/core/onnx/codec.js';
import { encodeNpz } from '../../service/src/core/data/npy.js';
import { openDataset } from '../../service/src/runtime/dataset.js';
import { availableProviders, createSession } from '../../service/src/runtime/session.js';
import {
  aggregateTrace,
  compareLatency,
  measureLatency,
  profileNodes,
  quantile,
  randomFeeds,
  summarize,
  toFloat16Bits,
  type LatencyStats,
} from '../../service/src/runtime/latency.js';
import { evaluate } from '../../service/src/runtime/evaluate.js';

/** The repository root, found from this file so the test runs from source (tsx) and compiled (dist/). */
function repoRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json'))) {
    const up = dirname(d);
    if (up === d) throw new Error('package.json not found above the test file');
    d = up;
  }
  return d;
}

const ROOT = repoRoot();
const MODELS = ['resnet20', 'mobilenetv2', 'vgg', 'vit'] as const;
const modelPath = (name: string): string => join(ROOT, 'tests', 'fixtures', 'models', `${name}.onnx`);
const EVAL_DATA = join(ROOT, 'tests', 'fixtures', 'data', 'fmnist-eval-1000.npz');

/** Skips (with the reason) only when a fixture file is absent. */
function needs(...paths: string[]): { skip: string | false } {
  const missing = paths.filter((p) => !existsSync(p));
  return { skip: missing.length > 0 ? `fixture not generated yet: ${missing.map((p) => p.slice(ROOT.length + 1)).join(', ')}` : false };
}

const readModel = (name: string): Uint8Array => new Uint8Array(readFileSync(modelPath(name)));

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-runtime-test-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function assertStrataError(err: unknown, code: string, ...fragments: string[]): true {
  assert.ok(err instanceof StrataError, `expected StrataError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  for (const f of fragments) assert.ok(err.message.includes(f), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(f)}`);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Sessions

test('a session exposes the fixture model signature and runs it', needs(modelPath('resnet20')), async () => {
  const session = await createSession(readModel('resnet20'), { threads: 1, optimization: 'basic' });
  try {
    assert.equal(session.provider, 'cpu');
    assert.equal(session.inputs.length, 1);
    assert.equal(session.inputs[0]?.name, 'input');
    assert.equal(session.inputs[0]?.dtype, 'float32');
    assert.equal(typeof session.inputs[0]?.dims[0], 'string', 'dynamic batch axis');
    assert.deepEqual(session.inputs[0]?.dims.slice(1), [1, 28, 28]);
    assert.equal(session.outputs[0]?.name, 'logits');
    assert.equal(session.outputs[0]?.dims[1], 10);
    const out = await session.run(randomFeeds(session.inputs, { [session.inputs[0]?.dims[0] as string]: 3 }));
    assert.deepEqual(out.logits?.dims, [3, 10]);
  } finally {
    await session.release();
  }
});

test('unknown and missing providers, and broken models, fail with domain errors', needs(modelPath('resnet20')), async () => {
  const bytes = readModel('resnet20');
  await assert.rejects(createSession(bytes, { provider: 'bogus' as never }), (err) =>
    assertStrataError(err, 'BAD_USER_INPUT', "unknown execution provider 'bogus'", 'cpu, cuda, tensorrt, webgpu'),
  );
  assert.ok(availableProviders().includes('cpu'));
  if (!availableProviders().includes('cuda')) {
    await assert.rejects(createSession(bytes, { provider: 'cuda' }), (err) =>
      assertStrataError(err, 'RUNTIME_UNAVAILABLE', "'cuda' is not available", 'cpu', 'ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci'),
    );
  }
  await assert.rejects(createSession(bytes.subarray(0, 1000)), (err) =>
    assertStrataError(err, 'INVALID_MODEL', 'onnxruntime cannot load the model: Failed to load model because protobuf parsing failed'),
  );
  await assert.rejects(createSession(bytes, { threads: -1 }), (err) => assertStrataError(err, 'BAD_USER_INPUT', 'threads'));
});

// ---------------------------------------------------------------------------------------------
// Latency

test('quantiles and summaries match hand-computed values (numpy linear interpolation)', () => {
  const s = summarize([10, 1, 4, 3, 2]);
  assert.equal(s.medianMs, 3);
  assert.equal(s.meanMs, 4);
  assert.ok(Math.abs(s.p10Ms - 1.4) < 1e-12);
  assert.ok(Math.abs(s.p90Ms - 7.6) < 1e-12);
  assert.equal(s.minMs, 1);
  assert.equal(s.maxMs, 10);
  assert.equal(s.madMs, 1); // |x − 3| = 7, 2, 1, 0, 1
  assert.equal(s.runs, 5);
  assert.equal(quantile([5], 0.9), 5);
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
});

function assertSane(s: LatencyStats, runs: number): void {
  assert.equal(s.runs, runs);
  for (const v of Object.values(s)) assert.ok(Number.isFinite(v) && v >= 0, `${JSON.stringify(s)}`);
  assert.ok(s.minMs <= s.p10Ms && s.p10Ms <= s.medianMs && s.medianMs <= s.p90Ms && s.p90Ms <= s.maxMs, JSON.stringify(s));
  assert.ok(s.minMs <= s.meanMs && s.meanMs <= s.maxMs);
  assert.ok(s.madMs <= s.maxMs - s.minMs);
}

test('measureLatency counts its runs and orders its statistics', needs(modelPath('resnet20')), async () => {
  const session = await createSession(readModel('resnet20'), { threads: 1 });
  try {
    const feeds = randomFeeds(session.inputs, { [session.inputs[0]?.dims[0] as string]: 1 });
    assertSane(await measureLatency(session, feeds, { warmup: 2, runs: 15 }), 15);
    // A budget already spent still times one run.
    assertSane(await measureLatency(session, feeds, { warmup: 5, runs: 50, maxSeconds: 1e-6 }), 1);
    await assert.rejects(measureLatency(session, feeds, { runs: 0 }), (err) => assertStrataError(err, 'BAD_USER_INPUT', 'runs'));
  } finally {
    await session.release();
  }
});

test('compareLatency interleaves pairs and reports a per-pair ratio', needs(modelPath('resnet20'), modelPath('vgg')), async () => {
  const a = await createSession(readModel('resnet20'), { threads: 1 });
  const b = await createSession(readModel('vgg'), { threads: 1 });
  try {
    const feeds = randomFeeds(a.inputs, { [a.inputs[0]?.dims[0] as string]: 1 });
    const feedsB = randomFeeds(b.inputs, { [b.inputs[0]?.dims[0] as string]: 1 });
    const order: string[] = [];
    const spy = (s: typeof a, tag: string) => ({ run: (f: Parameters<typeof a.run>[0]) => (order.push(tag), s.run(f)) });
    const cmp = await compareLatency(spy(a, 'A'), spy(b, 'B'), feeds, feedsB, { warmup: 1, pairs: 7 });
    assert.equal(cmp.pairs, 7);
    assertSane(cmp.a, 7);
    assertSane(cmp.b, 7);
    assert.ok(Number.isFinite(cmp.ratio) && cmp.ratio > 0);
    assert.ok(cmp.ratioP10 <= cmp.ratio && cmp.ratio <= cmp.ratioP90);
    // warm-up A B, then pairs alternating which model goes first
    assert.equal(order.join(''), 'AB' + 'AB' + 'BA' + 'AB' + 'BA' + 'AB' + 'BA' + 'AB');
  } finally {
    await a.release();
    await b.release();
  }
});

test('aggregateTrace takes per-run sums, drops warm-up runs and strips the suffix', () => {
  const run = (ts: number, dur: number) => ({ cat: 'Session', name: 'model_run', ts, dur });
  const node = (name: string, ts: number, dur: number, op = 'Conv') => ({ cat: 'Node', name: `${name}_kernel_time`, ts, dur, args: { op_name: op } });
  const events = [
    run(0, 100),
    node('/a/Conv', 10, 9000),
    run(200, 100),
    node('/a/Conv', 210, 40),
    node('/loop/Add', 220, 5, 'Add'),
    node('/loop/Add', 230, 7, 'Add'),
    run(400, 100),
    node('/a/Conv', 410, 60),
    node('/loop/Add', 420, 1, 'Add'),
    run(600, 100),
    node('/a/Conv', 610, 50),
    node('/loop/Add', 620, 2, 'Add'),
    { cat: 'Node', name: '/a/Conv_fence_before', ts: 611, dur: 3 },
  ];
  const out = aggregateTrace(events, 1);
  assert.deepEqual([...out.keys()].sort(), ['/a/Conv', '/loop/Add']);
  assert.deepEqual(out.get('/a/Conv'), { ms: 0.05, opType: 'Conv' });
  assert.ok(Math.abs((out.get('/loop/Add')?.ms ?? NaN) - 0.002) < 1e-12); // per-run sums 12, 1, 2 µs
  assert.equal(out.get('/loop/Add')?.opType, 'Add');
});

const profileDirs = (): string[] => readdirSync(tmpdir()).filter((f) => f.startsWith('strata-profile-'));

for (const name of MODELS) {
  test(`profileNodes (no optimization) names exactly the ONNX nodes of ${name}`, needs(modelPath(name)), async () => {
    const bytes = readModel(name);
    const graph = decodeModel(bytes).graph?.node ?? [];
    const opOf = new Map(graph.map((n) => [n.name ?? '', n.op_type ?? '']));
    const session = await createSession(bytes);
    const feeds = randomFeeds(session.inputs, { [session.inputs[0]?.dims[0] as string]: 2 });
    await session.release();
    const before = profileDirs();
    const timings = await profileNodes(bytes, feeds, { runs: 3, optimization: 'disabled' });
    assert.deepEqual(profileDirs(), before, 'the trace and its folder are removed');
    for (const [node, t] of timings) {
      assert.ok(opOf.has(node), `profiled node '${node}' is not in the graph`);
      assert.equal(t.opType, opOf.get(node), node);
      assert.ok(Number.isFinite(t.ms) && t.ms >= 0);
    }
    // Constant nodes become initializers when onnxruntime loads the graph, so they never run.
    const executable = graph.filter((n) => n.op_type !== 'Constant').map((n) => n.name);
    assert.deepEqual([...timings.keys()].sort(), executable.sort());
  });
}

test('profileNodes with basic optimization keeps the ONNX names of convolutions', needs(modelPath('resnet20')), async () => {
  const bytes = readModel('resnet20');
  const graph = decodeModel(bytes).graph?.node ?? [];
  const convs = new Set(graph.filter((n) => n.op_type === 'Conv').map((n) => n.name));
  const feeds = randomFeeds([{ name: 'input', dtype: 'float32', dims: [1, 1, 28, 28] }]);
  const timings = await profileNodes(bytes, feeds, { runs: 3 });
  const profiledConvs = [...timings].filter(([, t]) => t.opType === 'Conv').map(([n]) => n);
  assert.ok(profiledConvs.length > 0);
  for (const n of profiledConvs) assert.ok(convs.has(n), `'${n}' is not a Conv of the graph`);
  assert.ok([...timings.values()].some((t) => t.ms > 0));
});

test('randomFeeds is deterministic, standard normal for floats, and needs every symbol bound', () => {
  const inputs = [
    { name: 'x', dtype: 'float32', dims: ['batch', 100, 100] as (string | number)[] },
    { name: 'ids', dtype: 'int64', dims: ['batch', 5] as (string | number)[] },
  ];
  const a = randomFeeds(inputs, { batch: 2 }, 7);
  const b = randomFeeds(inputs, { batch: 2 }, 7);
  const c = randomFeeds(inputs, { batch: 2 }, 8);
  assert.deepEqual(a.x?.dims, [2, 100, 100]);
  assert.deepEqual(a.x?.data, b.x?.data);
  assert.notDeepEqual(a.x?.data, c.x?.data);
  const x = a.x?.data as Float32Array;
  const mean = x.reduce((s, v) => s + v, 0) / x.length;
  const sd = Math.sqrt(x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length);
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(sd - 1) < 0.03, `mean ${mean}, sd ${sd}`);
  assert.ok(a.ids?.data instanceof BigInt64Array);
  assert.ok([...(a.ids?.data as BigInt64Array)].every((v) => v >= 0n && v < 8n));
  assert.throws(() => randomFeeds(inputs, {}), (err) => assertStrataError(err, 'BAD_USER_INPUT', "symbolic dimension 'batch'"));
});

test('float16 conversion matches IEEE binary16 bit patterns', () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff],
    [65520, 0x7c00],
    [2 ** -24, 0x0001],
    [2 ** -14, 0x0400],
    [1e-9, 0x0000],
    [-0, 0x8000],
    [Infinity, 0x7c00],
    [1 + 2 ** -11 + 2 ** -20, 0x3c01],
  ];
  for (const [v, bits] of cases) assert.equal(toFloat16Bits(v), bits, String(v));
  assert.equal(toFloat16Bits(NaN) & 0x7c00, 0x7c00);
  assert.notEqual(toFloat16Bits(NaN) & 0x3ff, 0);
});

// ---------------------------------------------------------------------------------------------
// Evaluation

/** Rows of logits for the whole data set, computed with a bare onnxruntime session. */
async function referenceLogits(bytes: Uint8Array, batchSize: number): Promise<{ rows: Float32Array[]; labels: number[] }> {
  const session = await ort.InferenceSession.create(bytes);
  const ds = await openDataset(EVAL_DATA);
  const rows: Float32Array[] = [];
  const labels: number[] = [];
  for await (const batch of ds.batches(batchSize)) {
    const x = batch.inputs.input;
    assert.ok(x);
    const out = await session.run({ input: new ort.Tensor('float32', x.data as Float32Array, x.dims) });
    const logits = out.logits?.data as Float32Array;
    for (let i = 0; i < batch.count; i++) rows.push(logits.slice(i * 10, i * 10 + 10));
    for (const l of batch.labels as BigInt64Array) labels.push(Number(l));
  }
  await session.release();
  return { rows, labels };
}

function top1(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if ((row[i] as number) > (row[best] as number)) best = i;
  return best;
}

test('evaluate: accuracy equals an independent top-1 count; a model agrees with itself', needs(modelPath('resnet20'), EVAL_DATA), async () => {
  const bytes = readModel('resnet20');
  const { rows, labels } = await referenceLogits(bytes, 100);
  const expected = rows.filter((r, i) => top1(r) === labels[i]).length / rows.length;

  const session = await createSession(bytes);
  const ds = await openDataset(EVAL_DATA);
  const progress: [number, number][] = [];
  const result = await evaluate(session, ds, { batchSize: 100, reference: session, onProgress: (d, t) => progress.push([d, t]) });
  assert.equal(result.samples, 1000);
  assert.equal(result.outputName, 'logits');
  assert.equal(result.accuracy, expected);
  assert.equal(result.agreement, 1);
  assert.ok(Math.abs(result.meanKl as number) <= 1e-9, `meanKl ${result.meanKl}`);
  assert.ok(Math.abs(result.relativeError as number) <= 1e-9);
  assert.equal(progress.length, 10);
  assert.deepEqual(progress.at(-1), [1000, 1000]);

  const limited = await evaluate(session, ds, { batchSize: 64, limit: 130 });
  assert.equal(limited.samples, 130);
  assert.equal(limited.agreement, undefined);
  assert.equal(limited.meanKl, undefined);
  await session.release();
});

test('evaluate against another model matches KL, agreement and relative error computed by plain loops', needs(modelPath('resnet20'), modelPath('vgg'), EVAL_DATA), async () => {
  const model = await referenceLogits(readModel('vgg'), 50);
  const ref = await referenceLogits(readModel('resnet20'), 50);
  let agree = 0;
  let kl = 0;
  let rel = 0;
  for (let s = 0; s < model.rows.length; s++) {
    const y = model.rows[s] as Float32Array;
    const r = ref.rows[s] as Float32Array;
    if (top1(y) === top1(r)) agree++;
    const softmax = (v: Float32Array): number[] => {
      const m = Math.max(...v);
      const e = [...v].map((z) => Math.exp(z - m));
      const sum = e.reduce((a, b) => a + b, 0);
      return e.map((z) => z / sum);
    };
    const p = softmax(r);
    const q = softmax(y);
    kl += p.reduce((acc, pi, i) => acc + (pi > 0 ? pi * Math.log(pi / (q[i] as number)) : 0), 0);
    let d = 0;
    let n = 0;
    for (let i = 0; i < 10; i++) {
      d += ((y[i] as number) - (r[i] as number)) ** 2;
      n += (r[i] as number) ** 2;
    }
    rel += Math.sqrt(d) / Math.sqrt(n);
  }
  const N = model.rows.length;

  const session = await createSession(readModel('vgg'));
  const reference = await createSession(readModel('resnet20'));
  const result = await evaluate(session, await openDataset(EVAL_DATA), { batchSize: 50, reference });
  assert.equal(result.agreement, agree / N);
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 + 1e-9 * Math.abs(b);
  assert.ok(close(result.meanKl as number, kl / N), `meanKl ${result.meanKl} vs ${kl / N}`);
  assert.ok((result.meanKl as number) >= 0);
  assert.ok(close(result.relativeError as number, rel / N), `relativeError ${result.relativeError} vs ${rel / N}`);
  await session.release();
  await reference.release();
});

test('evaluate reads int32 labels and pads the last batch of a model with a fixed batch size', needs(modelPath('resnet20'), EVAL_DATA), async () => {
  const bytes = readModel('resnet20');
  const { rows, labels } = await referenceLogits(bytes, 100);
  const session = await createSession(bytes);

  // The first 200 samples again, with int32 labels.
  const ds = await openDataset(EVAL_DATA);
  const input = new Float32Array(200 * 784);
  const int32Labels = new Int32Array(200);
  for await (const b of ds.batches(200, { limit: 200 })) {
    input.set(b.inputs.input?.data as Float32Array);
    int32Labels.set(Array.from(b.labels as BigInt64Array, Number));
  }
  const path = join(dir, 'int32-labels.npz');
  writeFileSync(path, encodeNpz({ input: { data: input, dtype: 'float32', shape: [200, 1, 28, 28] }, labels: { data: int32Labels, dtype: 'int32', shape: [200] } }));
  const small = await evaluate(session, await openDataset(path), { batchSize: 100 });
  const expected = rows.slice(0, 200).filter((r, i) => top1(r) === labels[i]).length / 200;
  assert.equal(small.accuracy, expected);

  // The same model declaring batch size 7: 1000 = 142 × 7 + 6, so the last batch is padded.
  const fixed = decodeModel(bytes);
  const dim0 = fixed.graph?.input?.[0]?.type?.tensor_type?.shape?.dim?.[0];
  assert.ok(dim0);
  delete dim0.dim_param;
  dim0.dim_value = 7;
  dim0.value = 'dim_value';
  const fixedSession = await createSession(encodeModel(fixed));
  assert.equal(fixedSession.inputs[0]?.dims[0], 7);
  const result = await evaluate(fixedSession, await openDataset(EVAL_DATA), { batchSize: 100 });
  assert.equal(result.samples, 1000);
  const full = rows.filter((r, i) => top1(r) === labels[i]).length / 1000;
  // Batch size changes onnxruntime's blocking, which may flip a near-tie: allow one sample either way.
  assert.ok(Math.abs((result.accuracy as number) - full) <= 0.001, `${result.accuracy} vs ${full}`);
  await session.release();
  await fixedSession.release();
});

test('evaluate reports data sets that do not fit the model', needs(modelPath('resnet20')), async () => {
  const session = await createSession(readModel('resnet20'));
  const path = join(dir, 'wrong.npz');
  writeFileSync(path, encodeNpz({ x: { data: new Float64Array(2 * 784), dtype: 'float64', shape: [2, 1, 28, 28] } }));
  await assert.rejects(evaluate(session, await openDataset(path)), (err) =>
    assertStrataError(err, 'BAD_DATASET', "array 'x' (for model input 'input') is float64 but the model expects float32"),
  );
  await session.release();
});
