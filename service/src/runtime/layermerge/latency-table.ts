/**
 * The LayerMerge latency table, measured: every candidate block is built as a standalone model (its
 * merged conv with random weights at the real input shape and batch, the residual Adds it leaves at
 * its end, the activation it keeps) and timed in onnxruntime on the target provider.
 *
 * Timing is onnxruntime's per-kernel profile, not wall clock around run(): a standalone model pays for
 * converting its input and output to and from onnxruntime's blocked layout and for copying the output
 * back to JavaScript, which inside the network happen once at most, not per block. So each run's
 * figure is the sum of its kernels minus the layout reorders and the pass-throughs that put the input
 * and skips into that layout (see blockModel). The models of a group run side by side in one session, so every run
 * times each of them and drift on a shared machine touches all alike; the figure is the median over
 * runs. Equal signatures are timed once, and a cache keyed by (signature, provider, threads,
 * host) carries timings across models and runs (exportable as JSON).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { cpus, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, StrataError } from '../../core/errors.js';
import type { Candidate } from '../../core/layermerge/chain.js';
import type { ExtractedChain } from '../../core/layermerge/extract.js';
import { LAYOUT_PASS_PREFIX, activationTemplate, blockModel, combineModels, withWeights, type ActivationTemplate } from '../../core/layermerge/standalone.js';
import {
  type LatencyTableDoc,
  type SignatureTiming,
  baselineKeys,
  blockAdds,
  candidateKey,
  entryLatency,
  latencySignature,
} from '../../core/layermerge/tables.js';
import { encodeModel } from '../../core/onnx/codec.js';
import type { ModelProto } from '../../core/onnx/proto.js';
import { quantile, randomFeeds, type TraceEvent } from '../latency.js';
import { createSession, type SessionOptions } from '../session.js';

export interface LatencyTableOptions {
  batch: number;
  session?: SessionOptions;
  /** timed runs per group; default 25 */
  rounds?: number;
  warmup?: number;
  /** models timed side by side in one session; default 16 */
  group?: number;
  cache?: LatencyCache;
  onProgress?(done: number, total: number): void;
}

/** Identifies the machine a timing belongs to: timings from another CPU say nothing here. */
export function hostId(): string {
  const list = cpus();
  return `${hostname()}/${list[0]?.model.trim() ?? 'unknown cpu'}/${list.length} cpus`;
}

interface CacheDoc {
  format: 'strata-layermerge-latency-cache';
  version: 1;
  entries: Record<string, SignatureTiming>;
}

/** Signature timings keyed by (signature, provider, threads, host). */
export class LatencyCache {
  private readonly map = new Map<string, SignatureTiming>();

  static key(signature: string, provider: string, threads: number | null, host: string): string {
    return `${provider}|t${threads ?? 'auto'}|${host}|${signature}`;
  }

  get(key: string): SignatureTiming | undefined {
    return this.map.get(key);
  }

  set(key: string, timing: SignatureTiming): void {
    this.map.set(key, timing);
  }

  get size(): number {
    return this.map.size;
  }

  toJSON(): CacheDoc {
    return { format: 'strata-layermerge-latency-cache', version: 1, entries: Object.fromEntries(this.map) };
  }

  static fromJSON(value: unknown): LatencyCache {
    const doc = value as Partial<CacheDoc> | null;
    if (!doc || doc.format !== 'strata-layermerge-latency-cache' || doc.version !== 1 || typeof doc.entries !== 'object' || doc.entries === null) {
      throw new InvalidArgumentError('cache', 'not a strata LayerMerge latency cache (format "strata-layermerge-latency-cache", version 1)');
    }
    const cache = new LatencyCache();
    for (const [k, v] of Object.entries(doc.entries)) {
      if (v && typeof v.ms === 'number' && Number.isFinite(v.ms)) cache.set(k, v);
    }
    return cache;
  }
}

interface Job {
  signature: string;
  model: ModelProto;
}

const PREFIX = 'sig';

/**
 * Per-run kernel time of each combined sub-model (by the `sig<n>/` prefix of the event's name), the
 * layout reorders and skip pass-throughs left out; the first `skipRuns` runs are warm-up.
 */
export function kernelTimePerRun(events: readonly TraceEvent[], skipRuns: number, models: number): number[][] {
  const spans = events
    .filter((e) => e.cat === 'Session' && e.name === 'model_run' && typeof e.ts === 'number')
    .map((e) => ({ start: e.ts as number, end: (e.ts as number) + (e.dur ?? 0) }))
    .sort((x, y) => x.start - y.start)
    .slice(skipRuns);
  const perModel = Array.from({ length: models }, () => new Array<number>(spans.length).fill(0));
  const pattern = new RegExp(`^${PREFIX}(\\d+)/`);
  for (const e of events) {
    if (e.cat !== 'Node' || typeof e.ts !== 'number' || !e.name?.endsWith('_kernel_time')) continue;
    const op = e.args?.op_name ?? '';
    if (op.startsWith('Reorder') || e.name.includes(LAYOUT_PASS_PREFIX)) continue;
    const m = pattern.exec(e.name);
    if (!m) continue;
    const model = Number(m[1]);
    const run = spans.findIndex((s) => (e.ts as number) >= s.start && (e.ts as number) <= s.end);
    if (run < 0 || model >= models) continue;
    perModel[model]![run]! += (e.dur ?? 0) / 1000;
  }
  return perModel;
}

/**
 * Per-run kernel time of a profile: in all, and in the nodes `inChain` claims (by the profiled name:
 * the ONNX node's own name, or, for nodes onnxruntime rewrote into its blocked layout, the output
 * tensor the name is derived from).
 */
export function kernelSumPerRun(events: readonly TraceEvent[], inChain: (name: string) => boolean): { total: number[]; chain: number[] } {
  const spans = events
    .filter((e) => e.cat === 'Session' && e.name === 'model_run' && typeof e.ts === 'number')
    .map((e) => ({ start: e.ts as number, end: (e.ts as number) + (e.dur ?? 0) }))
    .sort((x, y) => x.start - y.start);
  const total = new Array<number>(spans.length).fill(0);
  const chain = new Array<number>(spans.length).fill(0);
  for (const e of events) {
    if (e.cat !== 'Node' || typeof e.ts !== 'number' || !e.name?.endsWith('_kernel_time')) continue;
    const run = spans.findIndex((s) => (e.ts as number) >= s.start && (e.ts as number) <= s.end);
    if (run < 0) continue;
    const ms = (e.dur ?? 0) / 1000;
    total[run]! += ms;
    if (inChain(e.name.slice(0, -'_kernel_time'.length))) chain[run]! += ms;
  }
  return { total, chain };
}

/** Names under which the chain's nodes can appear in a profile of the original model. */
function chainNames(model: ModelProto, x: ExtractedChain): (name: string) => boolean {
  const nodes = new Set<string>();
  for (const l of x.layers) {
    nodes.add(l.convNode);
    if (l.batchNormNode) nodes.add(l.batchNormNode);
  }
  for (const a of x.activations) for (const n of a?.nodes ?? []) nodes.add(n);
  for (const r of x.residuals) {
    nodes.add(r.addNode);
    for (const n of r.projectionNodes) nodes.add(n);
  }
  const tensors = new Set<string>();
  (model.graph?.node ?? []).forEach((n, i) => {
    const name = n.name && n.name.length > 0 ? n.name : `${n.op_type}#${i}`;
    if (nodes.has(name)) for (const o of n.output ?? []) tensors.add(o);
  });
  return (name) => nodes.has(name) || tensors.has(name) || (name.endsWith('_nchwc') && tensors.has(name.slice(0, -'_nchwc'.length)));
}

function timingOf(samples: number[]): SignatureTiming {
  const sorted = [...samples].sort((a, b) => a - b);
  return { ms: quantile(sorted, 0.5), p10: quantile(sorted, 0.1), p90: quantile(sorted, 0.9), runs: sorted.length };
}

/**
 * Times a group of models side by side in one session (see combineModels): every run executes each of
 * them once, so they are interleaved by construction and drift on a shared machine touches them alike.
 * One session also means one thread pool: separate sessions would leave their idle pool threads
 * spinning while the next session runs, which on a small machine inflates whichever model runs next.
 */
async function timeGroup(jobs: readonly Job[], o: LatencyTableOptions, parent: string): Promise<Map<string, number[]>> {
  const dir = await mkdtemp(join(parent, 'group-'));
  const rounds = o.rounds ?? 25;
  const warmup = o.warmup ?? 3;
  const combined = combineModels(
    jobs.map((j) => j.model),
    PREFIX,
  );
  const session = await createSession(encodeModel(combined), { optimization: 'all', ...o.session, profilePrefix: join(dir, 'trace') });
  try {
    const feeds = randomFeeds(session.inputs);
    for (let r = 0; r < warmup + rounds; r++) await session.run(feeds);
  } finally {
    session.ort.endProfiling();
    await session.release();
  }
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  if (files.length !== 1) throw new StrataError('RUNTIME_UNAVAILABLE', `onnxruntime wrote ${files.length} profile files for one session instead of one`);
  const events = JSON.parse(await readFile(join(dir, files[0]!), 'utf8')) as TraceEvent[];
  const perModel = kernelTimePerRun(events, warmup, jobs.length);
  return new Map(jobs.map((j, n) => [j.signature, perModel[n]!]));
}

/** The timing model of one candidate (null when it computes nothing). */
export function candidateTimingModel(
  model: ModelProto,
  x: ExtractedChain,
  c: Candidate,
  batch: number,
  templates: Map<number, ActivationTemplate>,
): ModelProto | null {
  const adds = blockAdds(x.chain, c).map((n) => {
    const r = x.chain.residuals[n]!;
    const from = x.chain.layers[r.start]!;
    return {
      skip: { c: from.spec.cin, h: from.inH, w: from.inW },
      ...(r.projection ? { projection: withWeights(r.projection, 7 + n) } : {}),
    };
  });
  const act = c.activationAtEnd ? x.activations[c.j] : undefined;
  let template: ActivationTemplate | undefined;
  if (act) {
    template = templates.get(c.j);
    if (!template) {
      template = activationTemplate(model, act.kind, act.nodes, act.input, act.output);
      templates.set(c.j, template);
    }
  }
  return blockModel({
    ...(c.identity
      ? {}
      : {
          conv: withWeights(
            { cin: c.cin, cout: c.cout, kh: c.kh, kw: c.kw, stride: c.stride, pads: c.pads, dilation: c.dilation, group: c.group },
            c.i * 131 + c.j,
          ),
        }),
    input: { c: c.cin, h: c.inH, w: c.inW },
    adds,
    ...(template ? { activation: template } : {}),
    batch,
    opset: model.opset_import,
    layoutPass: true,
  });
}

/**
 * Times every candidate (identical signatures once, cached ones not at all) and the original model,
 * end to end and per kernel, and converts the table to the network's wall clock (see
 * core/layermerge/tables.ts for the model).
 */
export async function measureLatencyTable(
  loadedBytes: Uint8Array,
  model: ModelProto,
  x: ExtractedChain,
  candidates: readonly Candidate[],
  inputShapes: Map<string, number[]>,
  o: LatencyTableOptions,
): Promise<LatencyTableDoc> {
  if (!Number.isInteger(o.batch) || o.batch < 1) throw new InvalidArgumentError('batch', `must be a positive integer, got ${o.batch}`);
  const provider = o.session?.provider ?? 'cpu';
  const threads = o.session?.threads ?? null;
  const host = hostId();
  const templates = new Map<number, ActivationTemplate>();
  const entries: Record<string, string | null> = {};
  const signatures: Record<string, SignatureTiming> = {};
  const todo = new Map<string, ModelProto>();
  for (const c of candidates) {
    const m = candidateTimingModel(model, x, c, o.batch, templates);
    const key = candidateKey(c);
    if (!m) {
      entries[key] = null;
      continue;
    }
    const sig = latencySignature(x, c, o.batch);
    entries[key] = sig;
    const cached = o.cache?.get(LatencyCache.key(sig, provider, threads, host));
    if (cached) signatures[sig] = cached;
    else if (!todo.has(sig)) todo.set(sig, m);
  }
  const jobs = [...todo].map(([signature, m]) => ({ signature, model: m }));
  const group = o.group ?? 16;
  const dir = await mkdtemp(join(tmpdir(), 'strata-lm-latency-'));
  // The original runs in slices between the groups, profiled, so that its wall-clock time, its kernel
  // time and the blocks' kernel times all come from the same stretch of time on a machine whose load
  // changes.
  const original = await createSession(loadedBytes, { optimization: 'all', ...o.session, profilePrefix: join(dir, 'original') });
  const wall: { ms: number; timed: boolean }[] = [];
  let profiled = false;
  try {
    const feeds = randomFeeds(original.inputs.map((i) => ({ ...i, dims: inputShapes.get(i.name) ?? i.dims })));
    const groups = Math.max(1, Math.ceil(jobs.length / group));
    const slice = Math.max(5, Math.ceil(40 / (groups + 1)));
    const sample = async (): Promise<void> => {
      for (let k = 0; k < 3 + slice; k++) {
        const t0 = process.hrtime.bigint();
        await original.run(feeds);
        wall.push({ ms: Number(process.hrtime.bigint() - t0) / 1e6, timed: k >= 3 });
      }
    };
    await sample();
    for (let start = 0; start < jobs.length; start += group) {
      o.onProgress?.(start, jobs.length);
      const timed = await timeGroup(jobs.slice(start, start + group), o, dir);
      for (const [sig, runs] of timed) {
        const t = timingOf(runs);
        signatures[sig] = t;
        o.cache?.set(LatencyCache.key(sig, provider, threads, host), t);
      }
      await sample();
    }
    original.ort.endProfiling();
    profiled = true;
  } finally {
    if (!profiled) original.ort.endProfiling();
    await original.release();
  }
  let kernel: { total: number[]; chain: number[] };
  try {
    const file = (await readdir(dir)).find((f) => f.startsWith('original') && f.endsWith('.json'));
    if (!file) throw new StrataError('RUNTIME_UNAVAILABLE', 'onnxruntime wrote no profile for the original model');
    kernel = kernelSumPerRun(JSON.parse(await readFile(join(dir, file), 'utf8')) as TraceEvent[], chainNames(model, x));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  if (kernel.total.length !== wall.length) {
    throw new StrataError('RUNTIME_UNAVAILABLE', `the profile holds ${kernel.total.length} runs of the original, ${wall.length} were made`);
  }
  o.onProgress?.(jobs.length, jobs.length);
  const median = (v: number[]) => quantile([...v].sort((a, b) => a - b), 0.5);
  const originalMs = median(wall.filter((w) => w.timed).map((w) => w.ms));
  const timedRuns = (v: number[]) => v.filter((_, r) => wall[r]!.timed);
  const originalKernelMs = median(timedRuns(kernel.total));
  const chainKernelMs = median(timedRuns(kernel.chain));
  const doc: LatencyTableDoc = {
    format: 'strata-layermerge-latency',
    version: 1,
    provider,
    threads,
    host,
    batch: o.batch,
    originalMs,
    originalKernelMs,
    chainKernelMs,
    wallPerKernelMs: 1,
    restMs: 0,
    signatures,
    entries,
  };
  let blocks = 0;
  for (const key of baselineKeys(candidates, x.chain.layers.length)) blocks += entryLatency(doc, key);
  const wallPerKernel = originalKernelMs > 0 ? originalMs / originalKernelMs : 1;
  // Standalone kernels run a little differently from the same kernels in the network (caches, layout
  // decisions); the original's own blocks measured both ways calibrate that. A calibration far from 1
  // means the profile's names were not attributed to the chain, and is not used.
  const calibration = blocks > 0 ? chainKernelMs / blocks : 1;
  if (calibration > 0.5 && calibration < 2) {
    doc.wallPerKernelMs = wallPerKernel * calibration;
    doc.restMs = (originalKernelMs - chainKernelMs) * wallPerKernel;
  } else {
    doc.wallPerKernelMs = wallPerKernel;
    doc.restMs = originalMs - blocks * wallPerKernel;
  }
  return doc;
}
