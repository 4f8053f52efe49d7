/**
 * Times solveLayerMerge on a ResNet-34-sized problem: the 33-conv ResNet-34 chain run through
 * enumerateCandidates (so the table has the shape the candidate rules really produce), a latency per
 * entry from a compute + memory-traffic model calibrated so the unmerged network takes ~199 ms
 * (146 ms is then the published 1.36× speed-up target), and a synthetic importance exp(Δacc/100) that drops with every conv and
 * activation removed. T0 = 146 ms, Δ = 0.1 ms. Prints one JSON object.
 *
 *   npx tsx bench/layermerge-dp.bench.ts [runs]
 */
import { type Chain, type ChainLayer, enumerateCandidates } from '../service/src/core/layermerge/chain.js';
import type { ConvSpec } from '../service/src/core/layermerge/conv.js';
import { type TableEntry, solveLayerMerge } from '../service/src/core/layermerge/dp.js';
import { BudgetInfeasibleError } from '../service/src/core/errors.js';
import { rng } from '../tests/helpers/random.js';

const BUDGET_MS = 146;
const QUANTUM_MS = 0.1;
const ORIGINAL_MS = BUDGET_MS * 1.36;
const BATCH = 128;
const WARMUP = 20;


function conv(cin: number, cout: number, k: number, s: number): ConvSpec {
  const p = (k - 1) / 2;
  return {
    cin,
    cout,
    kh: k,
    kw: k,
    stride: [s, s],
    pads: [p, p, p, p],
    dilation: [1, 1],
    group: 1,
    weight: new Float32Array(0),
    bias: new Float32Array(0),
  };
}

function resnet34(): Chain {
  const layers: ChainLayer[] = [{ id: 'stem', spec: conv(3, 64, 7, 2), inH: 224, inW: 224, activationAfter: true }];
  const residuals: Chain['residuals'] = [];
  let c = 64;
  let hw = 56;
  const stages: Array<[number, number]> = [
    [3, 64],
    [4, 128],
    [6, 256],
    [3, 512],
  ];
  stages.forEach(([blocks, width], stage) => {
    for (let b = 0; b < blocks; b++) {
      const stride = b === 0 && stage > 0 ? 2 : 1;
      const start = layers.length;
      layers.push({ id: `l${stage + 1}.${b}.conv1`, spec: conv(c, width, 3, stride), inH: hw, inW: hw, activationAfter: true });
      hw /= stride;
      layers.push({ id: `l${stage + 1}.${b}.conv2`, spec: conv(width, width, 3, 1), inH: hw, inW: hw, activationAfter: true });
      residuals.push(
        stride === 1 && c === width
          ? { start, end: start + 2, skip: 'identity' }
          : { start, end: start + 2, skip: 'projection', projection: conv(c, width, 1, stride) },
      );
      c = width;
    }
  });
  return { layers, residuals };
}

function percentile(sorted: readonly number[], p: number): number {
  const at = (sorted.length - 1) * p;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

function round(v: number, digits = 4): number {
  return Number(v.toFixed(digits));
}

const runs = Math.max(50, Number(process.argv[2] ?? 200) || 200);
const chain = resnet34();
const candidates = enumerateCandidates(chain);
const random = rng(2024);

// Latency = launch + compute (FLOPs) + memory traffic (reading the input map, writing the output map),
// the traffic being what removing a layer saves even when merging grows the kernel. Compute and traffic
// get 60% / 40% of the original network's time.
const launchMs = 0.05;
const flops = candidates.map((c) => (c.identity ? 0 : 2 * BATCH * c.cout * (c.cin / c.group) * c.kh * c.kw * c.outH * c.outW));
const bytes = candidates.map((c) => (c.identity ? 0 : 4 * BATCH * (c.cin * c.inH * c.inW + c.cout * c.outH * c.outW)));
const singles = candidates.map((c, n) => ({ c, n })).filter(({ c }) => c.j === c.i + 1 && c.kept.length === 1);
const spare = ORIGINAL_MS - singles.length * launchMs;
const msPerFlop = (0.6 * spare) / singles.reduce((s, { n }) => s + flops[n]!, 0);
const msPerByte = (0.4 * spare) / singles.reduce((s, { n }) => s + bytes[n]!, 0);
const entries: Array<TableEntry & { kept: number }> = candidates.map((c, n) => {
  const removedConvs = c.j - c.i - c.kept.length;
  const drop = (0.6 * removedConvs + 0.25 * c.removedActivations.length) * (0.5 + random());
  return {
    i: c.i,
    j: c.j,
    k: c.k,
    kept: c.kept.length,
    latencyMs: c.identity ? 0 : (launchMs + flops[n]! * msPerFlop + bytes[n]! * msPerByte) * (0.95 + 0.1 * random()),
    importance: Math.exp(-drop / 100),
  };
});

const positions = chain.layers.length;
const solve = (variant: 'layermerge' | 'layer-only' | 'merge-only'): ReturnType<typeof solveLayerMerge> =>
  solveLayerMerge({ positions, entries, budgetMs: BUDGET_MS, quantumMs: QUANTUM_MS, variant });

for (let w = 0; w < WARMUP; w++) solve('layermerge');
const times: number[] = [];
for (let r = 0; r < runs; r++) {
  const t0 = performance.now();
  solve('layermerge');
  times.push(performance.now() - t0);
}
const sorted = [...times].sort((a, b) => a - b);
const mean = times.reduce((s, v) => s + v, 0) / times.length;
const sd = Math.sqrt(times.reduce((s, v) => s + (v - mean) ** 2, 0) / (times.length - 1));

const plans = Object.fromEntries(
  (['layermerge', 'layer-only', 'merge-only'] as const).map((v) => {
    try {
      const p = solve(v);
      return [v, { blocks: p.blocks.length, totalLatencyMs: round(p.totalLatencyMs), totalImportance: round(p.totalImportance, 6) }];
    } catch (err) {
      if (err instanceof BudgetInfeasibleError) return [v, { infeasible: err.message }];
      throw err;
    }
  }),
);

console.log(
  JSON.stringify(
    {
      benchmark: 'solveLayerMerge',
      problem: {
        convolutions: positions,
        entries: entries.length,
        budgetMs: BUDGET_MS,
        quantumMs: QUANTUM_MS,
        budgetCells: Math.round(BUDGET_MS / QUANTUM_MS),
        originalLatencyMs: round(
          entries.filter((e) => e.j === e.i + 1 && e.kept === 1).reduce((s, e) => s + e.latencyMs, 0),
          2,
        ),
      },
      runs,
      warmup: WARMUP,
      ms: {
        median: round(percentile(sorted, 0.5)),
        p10: round(percentile(sorted, 0.1)),
        p90: round(percentile(sorted, 0.9)),
        min: round(sorted[0]!),
        max: round(sorted[sorted.length - 1]!),
        mean: round(mean),
        stdev: round(sd),
      },
      plans,
      node: process.version,
    },
    null,
    2,
  ),
);
