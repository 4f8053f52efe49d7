/**
 * The LayerMerge surrogate problem, solved exactly: pick blocks (i, j] tiling positions 0..L, one table
 * entry per block, maximizing Σ importance subject to Σ latency ≤ budget.
 *
 *   M[0][t] = 0;  M[j][t] = max over entries e = (i, j, k) of M[i][t − c_e] + I_e,
 *
 * with c_e = ⌈T_e / Δ⌉ and t up to ⌊T0 / Δ⌋. Rounding each latency up (not down, as a plain int()
 * would) means Σ T_e ≤ Σ c_e·Δ ≤ T0 for every plan the table admits, so the returned plan really fits
 * the budget; the price is that a plan within Δ per block of the budget can be missed. Both roundings
 * forgive 1e-9 of a quantum so that a latency or budget that is a multiple of Δ only up to float noise
 * (0.30000000000000004 ms at Δ = 0.1 ms) counts as that multiple; the plan's total can therefore exceed
 * the budget by at most 1e-9·Δ per block, far below any measurable time.
 *
 * M[j][·] is non-decreasing in t (M[0] is constant), so the answer is M[L][⌊T0/Δ⌋] and backtracking
 * from there recovers the plan. Among plans with equal importance the one with the smaller true latency
 * is kept.
 */
import { BudgetInfeasibleError, InvalidArgumentError, UnreachableCaseError } from '../errors.js';

export interface TableEntry {
  i: number;
  j: number;
  /** merged kernel size; 0 for an identity block */
  k: number;
  latencyMs: number;
  /** additive; larger is better */
  importance: number;
  /**
   * How many of the block's j − i convs the entry keeps (the rest are replaced by identity). Needed by
   * the 'layer-only' and 'merge-only' variants.
   */
  kept?: number;
}

/**
 * 'layermerge': every entry. 'layer-only': entries keeping at most one conv (no merging, only conv and
 * activation removal). 'merge-only': entries keeping all j − i convs of their block (no conv removal,
 * only activation removal and merging, as in the predecessor method).
 */
export type LayerMergeVariant = 'layermerge' | 'layer-only' | 'merge-only';

export interface SolveArgs<E extends TableEntry> {
  /** L: the chain has positions 0..L */
  positions: number;
  entries: readonly E[];
  budgetMs: number;
  /** Δ, default 0.1 ms */
  quantumMs?: number;
  variant?: LayerMergeVariant;
}

export interface LayerMergePlan<E extends TableEntry> {
  /** the chosen entries, in position order */
  blocks: E[];
  totalLatencyMs: number;
  totalImportance: number;
}

const QUANTUM_SLACK = 1e-9;
/** (L + 1)·(cells + 1) above this would need hundreds of MB; a coarser quantum gives the same plans. */
const MAX_TABLE_CELLS = 50_000_000;

/** Latency in quanta, rounded up (see the file comment for the slack). */
export function latencyQuanta(latencyMs: number, quantumMs: number): number {
  return Math.max(0, Math.ceil(latencyMs / quantumMs - QUANTUM_SLACK));
}

/** Budget in quanta, rounded down. */
export function budgetQuanta(budgetMs: number, quantumMs: number): number {
  return Math.floor(budgetMs / quantumMs + QUANTUM_SLACK);
}

function admits(variant: LayerMergeVariant, e: TableEntry, index: number): boolean {
  switch (variant) {
    case 'layermerge':
      return true;
    case 'layer-only':
    case 'merge-only': {
      const kept = e.kept;
      if (kept === undefined || !Number.isInteger(kept) || kept < 0 || kept > e.j - e.i) {
        throw new InvalidArgumentError(
          `entries[${index}].kept`,
          `variant '${variant}' needs each entry's kept count (0..${e.j - e.i}), got ${kept}`,
        );
      }
      return variant === 'layer-only' ? kept <= 1 : kept === e.j - e.i;
    }
    default:
      throw new UnreachableCaseError(variant);
  }
}

/**
 * The three tables are ~1 MB for a ResNet-sized problem; allocating them per call made the garbage
 * collector a visible share of the run time, so tables up to RETAIN_CELLS are kept between calls and
 * grown on demand (larger ones are allocated per call so that one huge solve does not pin its memory).
 * Solving is synchronous, so one set of buffers is never in use twice at once.
 */
const RETAIN_CELLS = 1 << 20;

interface Tables {
  best: Float64Array;
  bestLatency: Float64Array;
  choice: Int32Array;
}

function allocate(cells: number): Tables {
  return { best: new Float64Array(cells), bestLatency: new Float64Array(cells), choice: new Int32Array(cells) };
}

let scratch: Tables = allocate(0);

function tables(size: number): Tables {
  if (size > RETAIN_CELLS) return allocate(size);
  if (scratch.best.length < size) scratch = allocate(Math.min(RETAIN_CELLS, Math.max(size, 2 * scratch.best.length)));
  return scratch;
}

function roundForMessage(v: number): number {
  return Number.parseFloat(v.toPrecision(12));
}

export function solveLayerMerge<E extends TableEntry>(args: SolveArgs<E>): LayerMergePlan<E> {
  const L = args.positions;
  const q = args.quantumMs ?? 0.1;
  const variant = args.variant ?? 'layermerge';
  if (!Number.isInteger(L) || L < 1) throw new InvalidArgumentError('positions', `must be a positive integer, got ${L}`);
  if (!Number.isFinite(q) || q <= 0) throw new InvalidArgumentError('quantumMs', `must be a positive number, got ${q}`);
  if (!Number.isFinite(args.budgetMs) || args.budgetMs < 0) {
    throw new InvalidArgumentError('budgetMs', `must be a finite non-negative number, got ${args.budgetMs}`);
  }
  if (variant !== 'layermerge' && variant !== 'layer-only' && variant !== 'merge-only') {
    throw new InvalidArgumentError('variant', `unknown variant '${String(variant)}'`);
  }

  const chosen: number[] = [];
  args.entries.forEach((e, n) => {
    const where = `entries[${n}]`;
    if (!Number.isInteger(e.i) || !Number.isInteger(e.j) || e.i < 0 || e.j > L || e.i >= e.j) {
      throw new InvalidArgumentError(where, `block (${e.i}, ${e.j}] is not within positions 0..${L}`);
    }
    if (!Number.isFinite(e.latencyMs) || e.latencyMs < 0) {
      throw new InvalidArgumentError(`${where}.latencyMs`, `must be a finite non-negative number, got ${e.latencyMs}`);
    }
    if (!Number.isFinite(e.importance)) {
      throw new InvalidArgumentError(`${where}.importance`, `must be finite, got ${e.importance}`);
    }
    if (admits(variant, e, n)) chosen.push(n);
  });

  const B = budgetQuanta(args.budgetMs, q);
  const width = B + 1;
  if ((L + 1) * width > MAX_TABLE_CELLS) {
    throw new InvalidArgumentError(
      'quantumMs',
      `${q} ms splits the ${args.budgetMs} ms budget into ${B} steps, too many for ${L} positions; use a coarser quantum`,
    );
  }

  // Entries grouped by end position (counting sort), with their numbers in typed arrays.
  const E = chosen.length;
  const startOf = new Int32Array(E);
  const cost = new Int32Array(E);
  const gain = new Float64Array(E);
  const lat = new Float64Array(E);
  const source = new Int32Array(E);
  const firstAt = new Int32Array(L + 2);
  for (const n of chosen) firstAt[args.entries[n]!.j + 1]!++;
  for (let j = 1; j <= L + 1; j++) firstAt[j]! += firstAt[j - 1]!;
  const fill = firstAt.slice(0, L + 1);
  for (const n of chosen) {
    const e = args.entries[n]!;
    const at = fill[e.j]!++;
    startOf[at] = e.i;
    cost[at] = latencyQuanta(e.latencyMs, q);
    gain[at] = e.importance;
    lat[at] = e.latencyMs;
    source[at] = n;
  }

  // Cheapest way to reach each position, in quanta and in true latency (for the infeasibility message).
  const minCells = new Float64Array(L + 1).fill(Infinity);
  const minLatency = new Float64Array(L + 1).fill(Infinity);
  minCells[0] = 0;
  minLatency[0] = 0;
  for (let j = 1; j <= L; j++) {
    for (let a = firstAt[j]!; a < firstAt[j + 1]!; a++) {
      const i = startOf[a]!;
      const c = minCells[i]! + cost[a]!;
      if (c < minCells[j]!) minCells[j] = c;
      const t = minLatency[i]! + lat[a]!;
      if (t < minLatency[j]!) minLatency[j] = t;
    }
  }
  if (minCells[L] === Infinity) {
    throw new InvalidArgumentError(
      'entries',
      `no sequence of ${variant === 'layermerge' ? '' : `'${variant}' `}blocks covers positions 0..${L}`,
    );
  }
  if (minCells[L]! > B) {
    const minimum = roundForMessage(minCells[L]! * q);
    throw new BudgetInfeasibleError(
      `latency budget ${args.budgetMs} ms is below the minimum reachable latency of ${minimum} ms ` +
        `(the fastest plan's blocks sum to ${roundForMessage(minLatency[L]!)} ms, each rounded up to the ${q} ms quantum)`,
      { minimum, unit: 'ms', quantumMs: q, unroundedMinimumMs: minLatency[L]!, variant },
    );
  }

  const size = (L + 1) * width;
  const { best, bestLatency, choice } = tables(size);
  best.fill(0, 0, width);
  bestLatency.fill(0, 0, width);
  best.fill(-Infinity, width, size);
  bestLatency.fill(Infinity, width, size);
  choice.fill(-1, 0, size);
  for (let j = 1; j <= L; j++) {
    const dst = j * width;
    for (let a = firstAt[j]!; a < firstAt[j + 1]!; a++) {
      const i = startOf[a]!;
      const c = cost[a]!;
      const g = gain[a]!;
      const l = lat[a]!;
      const from = minCells[i]! + c;
      const shift = i * width - c;
      for (let t = from; t <= B; t++) {
        const cand = best[shift + t]! + g;
        const cur = best[dst + t]!;
        if (cand > cur || (cand === cur && bestLatency[shift + t]! + l < bestLatency[dst + t]!)) {
          best[dst + t] = cand;
          bestLatency[dst + t] = bestLatency[shift + t]! + l;
          choice[dst + t] = a;
        }
      }
    }
  }

  const picked: number[] = [];
  let j = L;
  let t = B;
  while (j > 0) {
    const a = choice[j * width + t]!;
    if (a < 0) throw new Error(`layermerge dp: no choice recorded at position ${j}, cell ${t}`);
    picked.push(a);
    t -= cost[a]!;
    j = startOf[a]!;
  }
  picked.reverse();
  let totalLatencyMs = 0;
  let totalImportance = 0;
  const blocks = picked.map((a) => {
    totalLatencyMs += lat[a]!;
    totalImportance += gain[a]!;
    return args.entries[source[a]!]!;
  });
  return { blocks, totalLatencyMs, totalImportance };
}
