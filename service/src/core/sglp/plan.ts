/**
 * The SGLP pruning plan: given the segments found on the similarity matrix and an importance score per
 * unit, decide which units to remove to meet a budget.
 *
 * SGLP prunes inside each segment rather than across the whole network, so no segment of similar units
 * is emptied. The rule here:
 * - a segment keeps at least `keepPerSegment` units (non-removable units count as kept), so at most
 *   size − keepPerSegment of its removable units may go;
 * - inside a segment units go least important first;
 * - across segments the next unit removed is the least important of the segments' next candidates,
 *   among segments that may still lose one; this repeats until the budget is met.
 * Since each segment's candidates are taken in ascending order, this removes exactly the globally least
 * important units subject to the per-segment caps. For a count budget that is optimal: it minimises the
 * total importance lost among all plans removing that many units within the caps (a choice under a
 * partition constraint, which greedy solves exactly). For a latency budget it is the same order, stopped
 * as soon as the predicted latency is at or under the target: a heuristic that favours keeping
 * important units over removing the fewest.
 *
 * Ties in importance go to the unit with more latency (more saved for the same loss), then to the
 * earlier unit, so plans are deterministic. Units listed in no segment are never removed.
 */
import { BudgetInfeasibleError, InvalidArgumentError, UnreachableCaseError } from '../errors.js';

export interface SglpUnit {
  id: string;
  removable: boolean;
  /** Latency attributed to the unit, in the same milliseconds as the baseline. */
  latencyMs: number;
  /** Higher = more important. */
  importance: number;
}

export type SglpBudget =
  | { kind: 'remove'; count: number }
  /** Fraction of the removable units to remove, 0..1 (rounded down to a whole count). */
  | { kind: 'fraction'; value: number }
  /** Target total latency in ms. */
  | { kind: 'latency-ms'; value: number }
  /** Target total latency as a fraction of the baseline. */
  | { kind: 'latency-fraction'; value: number };

export interface SglpPlanArgs {
  units: SglpUnit[];
  /** Indices into `units`, one array per segment; each unit in at most one segment. */
  segments: number[][];
  /** Measured whole-model latency. */
  baselineLatencyMs: number;
  budget: SglpBudget;
  /** Units each segment keeps at least; default 1. */
  keepPerSegment?: number;
}

export interface SglpPlan {
  /** Ids of the removed units, in the order the rule picked them. */
  remove: string[];
  /** Baseline minus the latency of the removed units. */
  predictedLatencyMs: number;
  /** Sum of the importance of the removed units. */
  importanceLost: number;
  /** Per segment: its unit ids and the removed ones, both in unit order. */
  perSegment: { units: string[]; removed: string[] }[];
}

/** Latency targets count as met up to this fraction of the baseline, so a sum a rounding error high passes. */
const LATENCY_SLACK = 1e-9;

export function planSglp(args: SglpPlanArgs): SglpPlan {
  const { units, segments, baselineLatencyMs, budget } = args;
  const keep = args.keepPerSegment ?? 1;
  checkUnits(units);
  if (!Number.isFinite(baselineLatencyMs) || baselineLatencyMs < 0) {
    throw new InvalidArgumentError('baselineLatencyMs', `must be a non-negative number, got ${baselineLatencyMs}`);
  }
  if (!Number.isInteger(keep) || keep < 0) {
    throw new InvalidArgumentError('keepPerSegment', `must be a non-negative integer, got ${keep}`);
  }
  checkSegments(segments, units.length);

  const compare = (a: number, b: number): number => {
    const ua = units[a]!;
    const ub = units[b]!;
    return ua.importance - ub.importance || ub.latencyMs - ua.latencyMs || a - b;
  };

  // Each segment's allowed candidates, least important first: its first (size − keep) removable units.
  const allowed: number[] = [];
  for (const segment of segments) {
    const candidates = segment.filter((u) => units[u]!.removable).sort(compare);
    const cap = Math.max(0, Math.min(candidates.length, segment.length - keep));
    allowed.push(...candidates.slice(0, cap));
  }
  // Merging the segments' ascending queues one least-important head at a time is the same as sorting
  // the union of their allowed prefixes.
  const order = allowed.sort(compare);

  const removableCount = units.filter((u) => u.removable).length;
  let take: number;
  switch (budget.kind) {
    case 'remove': {
      if (!Number.isInteger(budget.count) || budget.count < 0) {
        throw new InvalidArgumentError('budget', `count must be a non-negative integer, got ${budget.count}`);
      }
      take = checkCount(budget.count, order.length, keep);
      break;
    }
    case 'fraction': {
      if (!Number.isFinite(budget.value) || budget.value < 0 || budget.value > 1) {
        throw new InvalidArgumentError('budget', `fraction must be between 0 and 1, got ${budget.value}`);
      }
      // Rounded down, with a little slack so that e.g. 0.3 of 10 is 3 despite 0.3·10 = 2.9999….
      const count = Math.floor(budget.value * removableCount + 1e-9);
      take = checkCount(count, order.length, keep, ` (${budget.value} of ${removableCount} removable units)`);
      break;
    }
    case 'latency-ms':
    case 'latency-fraction': {
      const isFraction = budget.kind === 'latency-fraction';
      if (!Number.isFinite(budget.value) || budget.value < 0 || (isFraction && budget.value > 1)) {
        throw new InvalidArgumentError(
          'budget',
          isFraction
            ? `latency fraction must be between 0 and 1, got ${budget.value}`
            : `latency must be a non-negative number of ms, got ${budget.value}`,
        );
      }
      take = latencyCount(order, units, baselineLatencyMs, budget);
      break;
    }
    default:
      throw new UnreachableCaseError(budget);
  }

  const removed = order.slice(0, take);
  const removedSet = new Set(removed);
  let saved = 0;
  let importanceLost = 0;
  for (const u of removed) {
    saved += units[u]!.latencyMs;
    importanceLost += units[u]!.importance;
  }
  return {
    remove: removed.map((u) => units[u]!.id),
    predictedLatencyMs: baselineLatencyMs - saved,
    importanceLost,
    perSegment: segments.map((segment) => {
      const inOrder = [...segment].sort((a, b) => a - b);
      return {
        units: inOrder.map((u) => units[u]!.id),
        removed: inOrder.filter((u) => removedSet.has(u)).map((u) => units[u]!.id),
      };
    }),
  };
}

function checkCount(count: number, maximum: number, keep: number, detail = ''): number {
  if (count > maximum) {
    throw new InvalidArgumentError(
      'budget',
      `cannot remove ${count} units${detail}: at most ${maximum} can be removed while each segment keeps ${keep}`,
      { maximum },
    );
  }
  return count;
}

/** How many of `order` to remove: the shortest prefix whose predicted latency meets the target. */
function latencyCount(
  order: number[],
  units: SglpUnit[],
  baseline: number,
  budget: { kind: 'latency-ms' | 'latency-fraction'; value: number },
): number {
  const target = budget.kind === 'latency-fraction' ? budget.value * baseline : budget.value;
  const slack = LATENCY_SLACK * Math.max(baseline, 1);
  let predicted = baseline;
  if (predicted <= target + slack) return 0;
  for (let i = 0; i < order.length; i++) {
    predicted -= units[order[i]!]!.latencyMs;
    if (predicted <= target + slack) return i + 1;
  }
  const minimum = predicted;
  const minimumFraction = minimum / baseline;
  const wanted =
    budget.kind === 'latency-fraction'
      ? `${formatNumber(budget.value)} of the baseline (${formatNumber(target)} ms)`
      : `${formatNumber(target)} ms`;
  throw new BudgetInfeasibleError(
    `latency budget ${wanted} cannot be met: removing every unit the segments allow reaches ` +
      `${formatNumber(minimum)} ms at best (${formatNumber(minimumFraction)} of the ${formatNumber(baseline)} ms baseline)`,
    { minimum, unit: 'ms', minimumFraction, baselineMs: baseline, targetMs: target },
  );
}

/** Up to 3 decimals, without trailing zeros: 12.5, 0.333, 40. */
function formatNumber(value: number): string {
  return String(Number(value.toFixed(3)));
}

function checkUnits(units: SglpUnit[]): void {
  const seen = new Set<string>();
  units.forEach((unit, i) => {
    if (seen.has(unit.id)) throw new InvalidArgumentError('units', `duplicate unit id '${unit.id}'`);
    seen.add(unit.id);
    if (!Number.isFinite(unit.latencyMs) || unit.latencyMs < 0) {
      throw new InvalidArgumentError(
        'units',
        `unit '${unit.id}' (#${i}) has latency ${unit.latencyMs}; expected a non-negative number of ms`,
      );
    }
    if (!Number.isFinite(unit.importance)) {
      throw new InvalidArgumentError(
        'units',
        `unit '${unit.id}' (#${i}) has a non-finite importance (${unit.importance})`,
      );
    }
  });
}

function checkSegments(segments: number[][], count: number): void {
  const seen = new Set<number>();
  segments.forEach((segment, s) => {
    for (const u of segment) {
      if (!Number.isInteger(u) || u < 0 || u >= count) {
        throw new InvalidArgumentError('segments', `segment ${s} names unit index ${u}, outside 0..${count - 1}`);
      }
      if (seen.has(u)) throw new InvalidArgumentError('segments', `unit index ${u} appears in more than one place`);
      seen.add(u);
    }
  });
}
