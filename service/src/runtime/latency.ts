/**
 * Wall-clock latency of whole runs and onnxruntime's per-node kernel times. Figures are robust
 * summaries (medians, percentiles, MAD) because single runs on a shared machine are noisy.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { InvalidArgumentError, StrataError } from '../core/errors.js';
import { createSession, type Feeds, type Optimization } from './session.js';

/** Anything that runs a model on feeds: a strata Session or a bare onnxruntime session. */
export interface Runnable {
  run(feeds: Feeds): Promise<unknown>;
}

export interface LatencyStats {
  medianMs: number;
  meanMs: number;
  p10Ms: number;
  p90Ms: number;
  minMs: number;
  maxMs: number;
  /** Median absolute deviation from the median, unscaled (multiply by 1.4826 for a normal-equivalent sigma). */
  madMs: number;
  runs: number;
}

export interface LatencyOptions {
  warmup?: number;
  runs?: number;
  /** Stops early once warm-up and timed runs together have taken this long; at least one run is always timed. */
  maxSeconds?: number;
}

export interface LatencyComparison {
  a: LatencyStats;
  b: LatencyStats;
  /** Median over pairs of (A ms / B ms): above 1 means A is slower. */
  ratio: number;
  ratioP10: number;
  ratioP90: number;
  pairs: number;
}

/** Quantile with linear interpolation between order statistics (numpy's default method). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (pos - lo);
}

export function summarize(samplesMs: readonly number[]): LatencyStats {
  const sorted = [...samplesMs].sort((x, y) => x - y);
  const median = quantile(sorted, 0.5);
  const deviations = sorted.map((v) => Math.abs(v - median)).sort((x, y) => x - y);
  return {
    medianMs: median,
    meanMs: sorted.reduce((s, v) => s + v, 0) / sorted.length,
    p10Ms: quantile(sorted, 0.1),
    p90Ms: quantile(sorted, 0.9),
    minMs: sorted[0] ?? NaN,
    maxMs: sorted[sorted.length - 1] ?? NaN,
    madMs: quantile(deviations, 0.5),
    runs: sorted.length,
  };
}

function checkCount(parameter: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new InvalidArgumentError(parameter, `must be an integer ≥ ${min}, got ${value}`);
  }
}

async function timeRun(session: Runnable, feeds: Feeds): Promise<number> {
  const t0 = process.hrtime.bigint();
  await session.run(feeds);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export async function measureLatency(session: Runnable, feeds: Feeds, options: LatencyOptions = {}): Promise<LatencyStats> {
  const { warmup = 10, runs = 50, maxSeconds } = options;
  checkCount('warmup', warmup, 0);
  checkCount('runs', runs, 1);
  if (maxSeconds !== undefined && !(maxSeconds > 0)) {
    throw new InvalidArgumentError('maxSeconds', `must be positive, got ${maxSeconds}`);
  }
  const deadline = maxSeconds === undefined ? undefined : process.hrtime.bigint() + BigInt(Math.round(maxSeconds * 1e9));
  const overTime = (): boolean => deadline !== undefined && process.hrtime.bigint() >= deadline;
  for (let i = 0; i < warmup && !overTime(); i++) await session.run(feeds);
  const samples: number[] = [];
  do samples.push(await timeRun(session, feeds));
  while (samples.length < runs && !overTime());
  return summarize(samples);
}

/**
 * Times two models in alternation so that drift in machine load (thermal state, other tenants)
 * hits both alike; the order within a pair alternates too, so neither model always runs on the
 * caches the other just warmed.
 */
export async function compareLatency(
  sessionA: Runnable,
  sessionB: Runnable,
  feedsA: Feeds,
  feedsB: Feeds,
  options: { warmup?: number; pairs?: number } = {},
): Promise<LatencyComparison> {
  const { warmup = 10, pairs = 30 } = options;
  checkCount('warmup', warmup, 0);
  checkCount('pairs', pairs, 1);
  for (let i = 0; i < warmup; i++) {
    await sessionA.run(feedsA);
    await sessionB.run(feedsB);
  }
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < pairs; i++) {
    if (i % 2 === 0) {
      a.push(await timeRun(sessionA, feedsA));
      b.push(await timeRun(sessionB, feedsB));
    } else {
      b.push(await timeRun(sessionB, feedsB));
      a.push(await timeRun(sessionA, feedsA));
    }
  }
  const ratios = a.map((ms, i) => ms / (b[i] as number)).sort((x, y) => x - y);
  return {
    a: summarize(a),
    b: summarize(b),
    ratio: quantile(ratios, 0.5),
    ratioP10: quantile(ratios, 0.1),
    ratioP90: quantile(ratios, 0.9),
    pairs,
  };
}

export interface NodeTiming {
  /** Median over the timed runs of the node's kernel time in one run. */
  ms: number;
  opType: string;
}

export interface TraceEvent {
  cat?: string;
  name?: string;
  ts?: number;
  dur?: number;
  args?: { op_name?: string };
}

const KERNEL_SUFFIX = '_kernel_time';

/**
 * Per-node kernel times from onnxruntime's profiler (Chrome trace: one `cat: "Node"` event named
 * `<node name>_kernel_time` per node per run, `dur` in µs; `cat: "Session"` events named `model_run`
 * span each run).
 *
 * Node names: with optimization 'disabled' every profiled name is the ONNX node's own name (Constant
 * nodes never appear: onnxruntime turns them into initializers at load). 'basic' keeps names for
 * plain CNNs (it folds BatchNorm/Add/Mul into the Conv that keeps its name) but can insert nodes
 * of its own, e.g. `Transpose_token_<n>` from the transpose optimizer in attention blocks; those
 * names appear in no ONNX graph. 'extended' fuses Conv+activation into FusedConv under the Conv's
 * name and adds names like `<node>/GatherSliceToSplitFusion`; 'all' also rewrites to the NCHWc
 * layout, naming nodes after tensors (`<tensor>_nchwc`, `ReorderOutput`). Attribute per ONNX node
 * with 'disabled' or 'basic'; time end to end with 'all'.
 */
export async function profileNodes(
  modelBytes: Uint8Array,
  feeds: Feeds,
  options: { runs?: number; warmup?: number; optimization?: Optimization; threads?: number } = {},
): Promise<Map<string, NodeTiming>> {
  const { runs = 20, warmup = 1, optimization = 'basic', threads } = options;
  checkCount('runs', runs, 1);
  checkCount('warmup', warmup, 0);
  const dir = await mkdtemp(join(tmpdir(), 'strata-profile-'));
  try {
    const session = await createSession(modelBytes, {
      optimization,
      profilePrefix: join(dir, 'trace'),
      ...(threads === undefined ? {} : { threads }),
    });
    try {
      for (let i = 0; i < warmup + runs; i++) await session.run(feeds);
    } finally {
      // The profiler is on from session creation; the first runs are recorded too and dropped below.
      session.ort.endProfiling();
      await session.release();
    }
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
    if (files.length !== 1) {
      throw new StrataError('RUNTIME_UNAVAILABLE', `onnxruntime wrote ${files.length} profile files instead of one`);
    }
    const events = JSON.parse(await readFile(join(dir, files[0] as string), 'utf8')) as TraceEvent[];
    return aggregateTrace(events, warmup);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Sums each node's kernel events per run (a node inside a loop runs several times), then takes the median over runs. */
export function aggregateTrace(events: readonly TraceEvent[], skipRuns: number): Map<string, NodeTiming> {
  const spans = events
    .filter((e) => e.cat === 'Session' && e.name === 'model_run' && typeof e.ts === 'number')
    .map((e) => ({ start: e.ts as number, end: (e.ts as number) + (e.dur ?? 0) }))
    .sort((x, y) => x.start - y.start);
  const timed = spans.slice(skipRuns);
  const perNode = new Map<string, { opType: string; perRun: Float64Array }>();
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name?.endsWith(KERNEL_SUFFIX) || typeof e.ts !== 'number') continue;
    const run = timed.findIndex((s) => (e.ts as number) >= s.start && (e.ts as number) <= s.end);
    if (run < 0) continue;
    const name = e.name.slice(0, -KERNEL_SUFFIX.length);
    let entry = perNode.get(name);
    if (!entry) {
      entry = { opType: e.args?.op_name ?? '', perRun: new Float64Array(timed.length) };
      perNode.set(name, entry);
    }
    entry.perRun[run] = (entry.perRun[run] ?? 0) + (e.dur ?? 0) / 1000;
  }
  const out = new Map<string, NodeTiming>();
  for (const [name, { opType, perRun }] of perNode) {
    out.set(name, { ms: quantile([...perRun].sort((x, y) => x - y), 0.5), opType });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Deterministic inputs for timing and profiling

/** mulberry32: tiny, fast, and good enough for test inputs; not for anything statistical. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hashString(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits of a number, rounding to nearest (ties away from zero). */
export function toFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = (mant | 0x800000) >>> (1 - e);
    return sign | ((m + 0x1000) >>> 13);
  }
  // A rounding carry out of the mantissa correctly bumps the exponent.
  return sign | ((e << 10) + ((mant + 0x1000) >>> 13));
}

/**
 * Feeds for `inputs` with symbolic dimensions bound by `shapeBindings` (e.g. `{ batch: 1 }`).
 * Floats are standard normal, integers uniform in [0, 8), booleans fair coins; the same seed and
 * input name always give the same values.
 */
export function randomFeeds(
  inputs: readonly { name: string; dtype: string; dims: readonly (number | string | null)[] }[],
  shapeBindings: Record<string, number> = {},
  seed = 0,
): Feeds {
  const feeds: Feeds = {};
  for (const input of inputs) {
    const dims = input.dims.map((d) => {
      if (typeof d === 'number') return d;
      const bound = d === null ? undefined : shapeBindings[d];
      if (bound === undefined) {
        throw new InvalidArgumentError(
          'shapeBindings',
          `input '${input.name}' has ${d === null ? 'an unnamed dynamic dimension' : `symbolic dimension '${d}'`} ` +
            `in [${input.dims.map((x) => x ?? '?').join(', ')}] and no size was bound for it`,
        );
      }
      return bound;
    });
    const n = dims.reduce((a, b) => a * b, 1);
    const rand = prng(hashString(input.name, seed));
    const normal = (): number => {
      const u = 1 - rand();
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
    };
    const small = (): number => Math.floor(rand() * 8);
    switch (input.dtype) {
      case 'float32':
        feeds[input.name] = new ort.Tensor('float32', Float32Array.from({ length: n }, normal), dims);
        break;
      case 'float64':
        feeds[input.name] = new ort.Tensor('float64', Float64Array.from({ length: n }, normal), dims);
        break;
      case 'float16':
        feeds[input.name] = new ort.Tensor('float16', Uint16Array.from({ length: n }, () => toFloat16Bits(normal())), dims);
        break;
      case 'int64':
        feeds[input.name] = new ort.Tensor('int64', BigInt64Array.from({ length: n }, () => BigInt(small())), dims);
        break;
      case 'uint64':
        feeds[input.name] = new ort.Tensor('uint64', BigUint64Array.from({ length: n }, () => BigInt(small())), dims);
        break;
      case 'int32':
        feeds[input.name] = new ort.Tensor('int32', Int32Array.from({ length: n }, small), dims);
        break;
      case 'uint32':
        feeds[input.name] = new ort.Tensor('uint32', Uint32Array.from({ length: n }, small), dims);
        break;
      case 'int16':
        feeds[input.name] = new ort.Tensor('int16', Int16Array.from({ length: n }, small), dims);
        break;
      case 'uint16':
        feeds[input.name] = new ort.Tensor('uint16', Uint16Array.from({ length: n }, small), dims);
        break;
      case 'int8':
        feeds[input.name] = new ort.Tensor('int8', Int8Array.from({ length: n }, small), dims);
        break;
      case 'uint8':
        feeds[input.name] = new ort.Tensor('uint8', Uint8Array.from({ length: n }, small), dims);
        break;
      case 'bool':
        feeds[input.name] = new ort.Tensor('bool', Uint8Array.from({ length: n }, () => (rand() < 0.5 ? 1 : 0)), dims);
        break;
      default:
        throw new InvalidArgumentError('inputs', `input '${input.name}' has element type ${input.dtype}, which strata cannot generate`);
    }
  }
  return feeds;
}
