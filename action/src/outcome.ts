import { pt, x } from './format.js';

/**
 * What a sweep came to: one row per budget, the best model within the accuracy limit, and the
 * gates. Pure: the service's answer and the files written go in, plain data comes out.
 */

/** A budget as the service echoes it (`Budget`: kind and value). */
export interface ServiceBudget {
  kind: string;
  value: number;
}

/** The fields of a `TradeoffResult` the action asks for. */
export interface TradeoffData {
  baselineLatencyMs: number;
  latencyBatch: number;
  points: TradeoffPointData[];
}

/** A convolution a LayerMerge plan put in place of a block of convolutions (the service's `MergedConv`). */
export interface MergedConvData {
  /** the original convolutions merged into it, in order */
  from: string[];
  kh: number;
  kw: number;
  /** residual Adds folded into its kernel */
  foldedSkips: string[];
  refit: boolean;
}

export interface TradeoffPointData {
  budget: ServiceBudget;
  feasible: boolean;
  reason: string | null;
  artifact: { sha256: string; size: number; url: string } | null;
  plan: { remove: string[]; segments: string[][]; predictedSpeedup: number; importanceLost: number } | null;
  report: {
    removed: string[];
    /** empty for SGLP */
    merged: MergedConvData[];
    parametersBefore: number;
    parametersAfter: number;
    originalMs: number;
    compressedMs: number;
    latencyRatioP10: number;
    latencyRatioP90: number;
    speedup: number;
    accuracyBefore: number | null;
    accuracyAfter: number | null;
    agreement: number | null;
    samples: number | null;
  } | null;
}

export interface ReportRow {
  /** the budget in words: "latency ×0.7", "12 ms", "remove 3", "25% of units" */
  label: string;
  feasible: boolean;
  /** why no plan meets the budget */
  reason: string | null;
  latencyMs: number | null;
  speedup: number | null;
  /** p10–p90 of the interleaved latency pairs, as speed-ups */
  speedupRange: [number, number] | null;
  predictedSpeedup: number | null;
  /** top-1, 0–1 */
  accuracy: number | null;
  /** percentage points against the original; negative is a loss */
  accuracyChangePt: number | null;
  /** top-1 agreement with the original, 0–1 */
  agreement: number | null;
  parameters: number | null;
  removed: string[];
  /** LayerMerge's merged convolutions; empty for SGLP */
  merged: MergedConvData[];
  segments: string[][];
  /** where the compressed model was written, relative to the workspace */
  file: string | null;
}

export type GateName = 'max-accuracy-drop' | 'min-speedup';

export interface GateResult {
  input: GateName;
  limit: number;
  passed: boolean;
  /** a sentence that stands on its own in the log and in the comment */
  message: string;
}

export interface Outcome {
  original: {
    latencyMs: number;
    accuracy: number | null;
    parameters: number | null;
    /** the original's median in each budget's own paired measurement, lowest and highest */
    pairedMs: [number, number] | null;
  };
  rows: ReportRow[];
  /** index into rows of the fastest model within the accuracy limit */
  best: number | null;
  gates: GateResult[];
}

export interface Limits {
  maxAccuracyDrop: number | null;
  minSpeedup: number | null;
}

/** Below this, two accuracy changes are the same (float noise in 1 − a/b). */
const EPSILON = 1e-9;

export function budgetLabel(b: ServiceBudget): string {
  switch (b.kind) {
    case 'LATENCY_FRACTION':
      return `latency ×${trim(b.value)}`;
    case 'LATENCY_MS':
      return `${trim(b.value)} ms`;
    case 'REMOVE':
      return `remove ${trim(b.value)}`;
    case 'FRACTION':
      return `${trim(b.value * 100)}% of units`;
    default:
      return `${b.kind.toLowerCase()} ${trim(b.value)}`;
  }
}

/** A budget as a file-name part: latency-0.7, 12ms, remove-3, fraction-0.25. */
export function budgetSlug(b: ServiceBudget): string {
  const v = trim(b.value);
  switch (b.kind) {
    case 'LATENCY_FRACTION':
      return `latency-${v}`;
    case 'LATENCY_MS':
      return `${v}ms`;
    case 'REMOVE':
      return `remove-${v}`;
    case 'FRACTION':
      return `fraction-${v}`;
    default:
      return `${b.kind.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${v}`;
  }
}

function trim(v: number): string {
  return String(Number(v.toPrecision(6)));
}

/**
 * @param files the written model per point (null where the point is infeasible), same order as the points
 */
export function evaluateOutcome(tradeoff: TradeoffData, files: (string | null)[], limits: Limits): Outcome {
  const first = tradeoff.points.find((p) => p.report)?.report ?? null;
  const accuracyBefore = first?.accuracyBefore ?? null;
  const rows = tradeoff.points.map((p, i): ReportRow => {
    const r = p.report;
    const accuracy = r?.accuracyAfter ?? null;
    const before = r?.accuracyBefore ?? null;
    return {
      label: budgetLabel(p.budget),
      feasible: p.feasible && r !== null,
      reason: p.feasible ? null : (p.reason ?? 'no plan meets this budget'),
      latencyMs: r?.compressedMs ?? null,
      speedup: r?.speedup ?? null,
      speedupRange: r ? [1 / r.latencyRatioP90, 1 / r.latencyRatioP10] : null,
      predictedSpeedup: p.plan?.predictedSpeedup ?? null,
      accuracy,
      accuracyChangePt: accuracy !== null && before !== null ? (accuracy - before) * 100 : null,
      agreement: r?.agreement ?? null,
      parameters: r?.parametersAfter ?? null,
      removed: r?.removed ?? p.plan?.remove ?? [],
      merged: r?.merged ?? [],
      segments: p.plan?.segments ?? [],
      file: files[i] ?? null,
    };
  });
  const best = chooseBest(rows, limits.maxAccuracyDrop);
  const paired = tradeoff.points.flatMap((p) => (p.report ? [p.report.originalMs] : []));
  return {
    original: {
      latencyMs: tradeoff.baselineLatencyMs,
      accuracy: accuracyBefore,
      parameters: first?.parametersBefore ?? null,
      pairedMs: paired.length === 0 ? null : [Math.min(...paired), Math.max(...paired)],
    },
    rows,
    best,
    gates: gates(rows, best, limits),
  };
}

/**
 * The fastest measured model whose accuracy drop is within the limit (any model without a
 * limit); among equally fast ones, the one that keeps more accuracy.
 */
export function chooseBest(rows: ReportRow[], maxAccuracyDrop: number | null): number | null {
  let best: number | null = null;
  rows.forEach((row, i) => {
    if (!row.feasible || row.speedup === null) return;
    if (maxAccuracyDrop !== null && !(row.accuracyChangePt !== null && -row.accuracyChangePt <= maxAccuracyDrop + EPSILON)) return;
    if (best === null) return void (best = i);
    const b = rows[best]!;
    const faster = row.speedup > b.speedup! + EPSILON;
    const tie = Math.abs(row.speedup - b.speedup!) <= EPSILON;
    if (faster || (tie && (row.accuracyChangePt ?? -Infinity) > (b.accuracyChangePt ?? -Infinity) + EPSILON)) best = i;
  });
  return best;
}

function gates(rows: ReportRow[], best: number | null, limits: Limits): GateResult[] {
  const out: GateResult[] = [];
  const measured = rows.filter((r) => r.feasible && r.speedup !== null);
  const b = best === null ? null : rows[best]!;
  if (limits.maxAccuracyDrop !== null) {
    const limit = limits.maxAccuracyDrop;
    let message: string;
    if (b) {
      message = `the best model (${b.label}) changes accuracy by ${pt(b.accuracyChangePt!)}, within the allowed drop of ${limit} pt.`;
    } else if (measured.length === 0) {
      message = `no budget could be met, so there is no compressed model within the allowed drop of ${limit} pt.`;
    } else if (measured.every((r) => r.accuracyChangePt === null)) {
      message = `accuracy was not measured (the evaluation data has no labels), so the allowed drop of ${limit} pt cannot be checked.`;
    } else {
      const least = measured.filter((r) => r.accuracyChangePt !== null).reduce((x, y) => (y.accuracyChangePt! > x.accuracyChangePt! ? y : x));
      message = `every compressed model loses more than the allowed ${limit} pt of accuracy; the least loss is ${pt(least.accuracyChangePt!)} (${least.label}).`;
    }
    out.push({ input: 'max-accuracy-drop', limit, passed: b !== null, message });
  }
  if (limits.minSpeedup !== null) {
    const limit = limits.minSpeedup;
    const within = limits.maxAccuracyDrop === null ? '' : ' within the accuracy limit';
    let passed = false;
    let message: string;
    if (!b) {
      message = measured.length === 0 ? `no budget could be met, so no model reaches the required ${x(limit)} speed-up.` : `no model${within}, so none reaches the required ${x(limit)} speed-up.`;
    } else if (b.speedup! + EPSILON >= limit) {
      passed = true;
      message = `the best speed-up${within} is ${x(b.speedup!)} (${b.label}), at least the required ${x(limit)}.`;
    } else {
      message = `the best speed-up${within} is ${x(b.speedup!)} (${b.label}), below the required ${x(limit)}.`;
    }
    out.push({ input: 'min-speedup', limit, passed, message });
  }
  return out;
}
