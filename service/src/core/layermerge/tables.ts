/**
 * The two LayerMerge tables as strata stores and exchanges them, the latency signature of a candidate
 * (what its standalone timing model computes; equal signatures are timed once), and the planner that
 * turns tables and a budget into blocks.
 *
 * The latency model is additive with one measured constant: predicted = rest + Σ T(block), where T is a
 * block's standalone kernel time (merged conv, the residual Adds it leaves at its end, the activation
 * it keeps) and rest is the kernel time of what the blocks do not cover — head, pooling, layout
 * reorders — in a profile of the original. Both are converted to the wall clock of the network by the
 * original's wall/kernel ratio from the same runs (per-run overhead, and on a loaded machine the waits
 * for a CPU, stretch a run roughly in proportion to its work: measured, the overhead of a compressed
 * ResNet-20 shrank with it instead of staying constant), and standalone block times are calibrated by
 * how the original's own blocks compare with the same nodes in the network's profile. The
 * plan's total therefore equals the measured original for the unchanged network by construction, and
 * the error of the additivity assumption shows when an emitted model is measured (compress, bench).
 */
import { BudgetInfeasibleError, InvalidArgumentError } from '../errors.js';
import type { Candidate, Chain } from './chain.js';
import { type LayerMergeVariant, solveLayerMerge } from './dp.js';
import type { ExtractedChain } from './extract.js';

/** Stable id of a candidate within its chain: block and kept layers. */
export function candidateKey(c: Pick<Candidate, 'i' | 'j' | 'kept'>): string {
  return `${c.i}-${c.j}:${c.kept.join('.')}`;
}

/** What a candidate's timing model computes, as a string: equal strings time equally. */
export function latencySignature(x: ExtractedChain, c: Candidate, batch: number): string {
  const parts: string[] = [`b${batch}`, `in${c.cin}x${c.inH}x${c.inW}`];
  if (!c.identity) {
    parts.push(`conv${c.cin}>${c.cout}:${c.kh}x${c.kw}:s${c.stride.join('x')}:p${c.pads.join('.')}:d${c.dilation.join('x')}:g${c.group}`);
  }
  for (const n of blockAdds(x.chain, c)) {
    const r = x.chain.residuals[n]!;
    const from = x.chain.layers[r.start]!;
    const p = r.projection;
    parts.push(
      `add${from.spec.cin}x${from.inH}x${from.inW}` +
        (p ? `:proj${p.cin}>${p.cout}:${p.kh}x${p.kw}:s${p.stride.join('x')}:p${p.pads.join('.')}:g${p.group}` : ''),
    );
  }
  const act = c.activationAtEnd ? x.activations[c.j] : undefined;
  if (act) parts.push(`act:${act.kind}`);
  return parts.join('|');
}

/**
 * Residuals ending at the block's end that it does not fold: their Adds run right after the block's
 * conv (innermost first), so the block's timing includes them.
 */
export function blockAdds(chain: Chain, c: Pick<Candidate, 'i' | 'j'>): number[] {
  const out: number[] = [];
  chain.residuals.forEach((r, n) => {
    if (r.end === c.j && r.start < c.i) out.push(n);
  });
  return out.sort((a, b) => chain.residuals[b]!.start - chain.residuals[a]!.start);
}

export interface SignatureTiming {
  /** median over timed runs of the summed kernel time (not yet converted to wall clock) */
  ms: number;
  p10: number;
  p90: number;
  runs: number;
}

export interface LatencyTableDoc {
  format: 'strata-layermerge-latency';
  version: 1;
  provider: string;
  threads: number | null;
  host: string;
  batch: number;
  /** end-to-end median of the original model at `batch` */
  originalMs: number;
  /** median summed kernel time of the original in the same runs */
  originalKernelMs: number;
  /** the part of it spent in the chain's nodes (the rest: head, pooling, layout reorders) */
  chainKernelMs: number;
  /**
   * standalone kernel ms → wall-clock ms of the network: (chainKernelMs / Σ the original's own block
   * entries) × (originalMs / originalKernelMs)
   */
  wallPerKernelMs: number;
  /** the network outside the blocks, wall-clock ms; with the original's own blocks it sums to originalMs */
  restMs: number;
  signatures: Record<string, SignatureTiming>;
  /** candidate key → its signature (absent: the candidate computes nothing and costs 0) */
  entries: Record<string, string | null>;
}

export interface ImportanceEntry {
  key: string;
  /** mean task loss change over the calibration samples (cross-entropy with labels, else KL from the original) */
  deltaLoss: number;
  /** −deltaLoss: additive, higher is better */
  importance: number;
  /** ‖y − y₀‖/‖y₀‖ of the block's output (before the kept activation) against the original's */
  fidelity: number;
  refit?: {
    deltaLoss: number;
    importance: number;
    fidelity: number;
    solver: 'cholesky' | 'cg';
    /** the fit objective on the calibration rows before and after (relative error) */
    fitBefore: number;
    fitAfter: number;
  };
}

export interface ImportanceTableDoc {
  format: 'strata-layermerge-importance';
  version: 1;
  basis: 'cross-entropy' | 'kl';
  description: string;
  samples: number;
  baselineLoss: number;
  /** ridge used for refits, or null when no refit was computed */
  ridge: number | null;
  entries: Record<string, ImportanceEntry>;
  /** candidates not scored because dominatedCandidates() rules them out of every plan */
  dominated: string[];
}

export interface TablesDoc {
  format: 'strata-layermerge-tables';
  version: 1;
  modelSha256: string;
  dataSha256: string;
  chain: { layers: string[]; residuals: string[] };
  candidates: CandidateSummary[];
  latency: LatencyTableDoc;
  importance: ImportanceTableDoc;
}

/** A candidate as the tables document lists it: its block and kept subset, keyed, without weights. */
export interface CandidateSummary
  extends Pick<Candidate, 'i' | 'j' | 'k' | 'kh' | 'kw' | 'kept' | 'removed' | 'removedActivations' | 'foldedResiduals' | 'identity' | 'exactEverywhere'> {
  key: string;
}

export function summarizeCandidate(c: Candidate): CandidateSummary {
  return {
    key: candidateKey(c),
    i: c.i,
    j: c.j,
    k: c.k,
    kh: c.kh,
    kw: c.kw,
    kept: c.kept,
    removed: c.removed,
    removedActivations: c.removedActivations,
    foldedResiduals: c.foldedResiduals,
    identity: c.identity,
    exactEverywhere: c.exactEverywhere,
  };
}

/** A latency table entry's wall-clock time (its signature's kernel time, converted), 0 for a candidate that computes nothing. */
export function entryLatency(t: LatencyTableDoc, key: string): number {
  const sig = t.entries[key];
  if (sig === undefined) throw new InvalidArgumentError('latency table', `has no entry for candidate ${key}`);
  if (sig === null) return 0;
  const s = t.signatures[sig];
  if (!s) throw new InvalidArgumentError('latency table', `has no timing for signature ${sig}`);
  return s.ms * t.wallPerKernelMs;
}

/** The original network as blocks: every conv on its own, nothing folded or removed. */
export function baselineKeys(candidates: readonly Candidate[], L: number): string[] {
  const keys: string[] = [];
  for (let m = 0; m < L; m++) {
    const c = candidates.find((q) => q.i === m && q.j === m + 1 && q.kept.length === 1 && q.kept[0] === m);
    if (!c) throw new InvalidArgumentError('candidates', `layer ${m} has no single-conv block; the original network is not a plan`);
    keys.push(candidateKey(c));
  }
  return keys;
}

/**
 * Candidates no optimal plan needs: a block at least as slow as the original convs of its span (each
 * on its own, nothing removed) can be swapped for them, which every variant allows, and the original
 * convs lose nothing (importance 0, while a changed block's is at most 0 up to sampling noise). Most
 * merges into large kernels are such blocks on CPUs, and they are the most expensive to score.
 */
export function dominatedCandidates(candidates: readonly Candidate[], latency: LatencyTableDoc, L: number): Set<string> {
  const base = baselineKeys(candidates, L).map((k) => entryLatency(latency, k));
  const out = new Set<string>();
  for (const c of candidates) {
    if (c.j - c.i === 1 && c.kept.length === 1) continue;
    let span = 0;
    for (let m = c.i; m < c.j; m++) span += base[m]!;
    if (entryLatency(latency, candidateKey(c)) >= span) out.add(candidateKey(c));
  }
  return out;
}

export type LayerMergeBudget = { kind: 'latency-ms'; value: number } | { kind: 'latency-fraction'; value: number };

export interface PlanArgs {
  candidates: readonly Candidate[];
  L: number;
  latency: LatencyTableDoc;
  importance: ImportanceTableDoc;
  budget: LayerMergeBudget;
  quantumMs?: number;
  variant?: LayerMergeVariant;
  /** use refit importances where the table has them */
  refit?: boolean;
}

export interface PlannedBlock {
  candidate: Candidate;
  key: string;
  latencyMs: number;
  importance: number;
  refit: boolean;
}

export interface LayerMergeSolution {
  blocks: PlannedBlock[];
  budgetMs: number;
  predictedLatencyMs: number;
  baselineLatencyMs: number;
  restMs: number;
  totalImportance: number;
}

/**
 * Solves the surrogate problem for a budget. The DP constrains Σ T(block) ≤ budget − rest; an
 * infeasible budget is reported in whole-model milliseconds, rest included.
 */
export function planLayerMerge(a: PlanArgs): LayerMergeSolution {
  const baseline = a.latency.originalMs;
  const rest = a.latency.restMs;
  const budgetMs = a.budget.kind === 'latency-ms' ? a.budget.value : a.budget.value * baseline;
  if (!(budgetMs > 0) || !Number.isFinite(budgetMs)) throw new InvalidArgumentError('budget', `must be a positive latency, got ${budgetMs} ms`);
  const byKey = new Map<string, Candidate>();
  const dominated = new Set(a.importance.dominated);
  const entries = a.candidates.filter((c) => !dominated.has(candidateKey(c))).map((c) => {
    const key = candidateKey(c);
    byKey.set(key, c);
    const imp = a.importance.entries[key];
    if (!imp) throw new InvalidArgumentError('importance table', `has no entry for candidate ${key}`);
    const useRefit = a.refit === true && imp.refit !== undefined && imp.refit.importance > imp.importance;
    return {
      i: c.i,
      j: c.j,
      k: c.k,
      kept: c.kept.length,
      latencyMs: entryLatency(a.latency, key),
      importance: useRefit ? imp.refit!.importance : imp.importance,
      key,
      useRefit,
    };
  });
  let solved;
  try {
    solved = solveLayerMerge({
      positions: a.L,
      entries,
      budgetMs: Math.max(0, budgetMs - rest),
      ...(a.quantumMs !== undefined ? { quantumMs: a.quantumMs } : {}),
      ...(a.variant !== undefined ? { variant: a.variant } : {}),
    });
  } catch (e) {
    if (e instanceof BudgetInfeasibleError) {
      const blocksMin = Number(e.details['minimum']);
      const minimum = Number.parseFloat((blocksMin + rest).toPrecision(6));
      throw new BudgetInfeasibleError(
        `latency budget ${Number.parseFloat(budgetMs.toPrecision(6))} ms is below the minimum reachable latency of ${minimum} ms ` +
          `(${a.variant ?? 'layermerge'}: the fastest blocks take ${Number.parseFloat(blocksMin.toPrecision(6))} ms with the ${a.quantumMs ?? 0.1} ms quantum, ` +
          `plus ${Number.parseFloat(rest.toPrecision(6))} ms for the rest of the network; the original measures ${Number.parseFloat(baseline.toPrecision(6))} ms)`,
        { minimum, unit: 'ms', minimumFraction: minimum / baseline, restMs: rest, variant: a.variant ?? 'layermerge' },
      );
    }
    throw e;
  }
  const blocks = solved.blocks.map((e) => ({
    candidate: byKey.get(e.key)!,
    key: e.key,
    latencyMs: e.latencyMs,
    importance: e.importance,
    refit: e.useRefit,
  }));
  return {
    blocks,
    budgetMs,
    predictedLatencyMs: rest + solved.totalLatencyMs,
    baselineLatencyMs: baseline,
    restMs: rest,
    totalImportance: solved.totalImportance,
  };
}
