import type { Unit } from '../../core/structure/unit.js';
import { measureLatency, profileNodes, randomFeeds, type LatencyStats } from '../latency.js';
import { createSession, type SessionOptions } from '../session.js';

export interface UnitLatency {
  baseline: LatencyStats;
  /** unit id → estimated ms of the whole-model median attributable to it */
  unitMs: Record<string, number>;
  /** share of the profiled kernel time that no unit owns (pooling, reshapes, heads, …) */
  unattributedFraction: number;
}

/**
 * Per-unit latency: onnxruntime's profiler gives each node's kernel time (at 'basic'
 * optimization so nodes keep their ONNX names); a unit's share of the profiled total, times the
 * end-to-end median at full optimization, is its latency. Sharing out the measured end-to-end
 * figure keeps Σ units ≤ baseline, which kernel sums measured at another optimization level would
 * not guarantee.
 */
export async function unitLatencies(
  modelBytes: Uint8Array,
  units: Unit[],
  inputShapes: Map<string, number[]>,
  options: { session?: SessionOptions; runs?: number } = {},
): Promise<UnitLatency> {
  const session = await createSession(modelBytes, { optimization: 'all', ...options.session });
  let baseline: LatencyStats;
  const feeds = randomFeeds(session.inputs.map((i) => ({ ...i, dims: inputShapes.get(i.name) ?? i.dims })));
  try {
    baseline = await measureLatency(session, feeds, { warmup: 5, runs: options.runs ?? 30 });
  } finally {
    await session.release();
  }
  const threads = options.session?.threads;
  const profile = await profileNodes(modelBytes, feeds, { runs: 10, optimization: 'basic', ...(threads ? { threads } : {}) });
  let total = 0;
  for (const t of profile.values()) total += t.ms;
  const unitMs: Record<string, number> = {};
  const owned = new Set<string>();
  for (const u of units) {
    let ms = 0;
    for (const n of u.nodes) {
      ms += profile.get(n)?.ms ?? 0;
      owned.add(n);
    }
    unitMs[u.id] = total > 0 ? (ms / total) * baseline.medianMs : 0;
  }
  let unowned = 0;
  for (const [name, t] of profile) if (!owned.has(name)) unowned += t.ms;
  return { baseline, unitMs, unattributedFraction: total > 0 ? unowned / total : 1 };
}
