import { InvalidArgumentError } from '../errors.js';
import { type LayerMergePlanSection, validateLayerMergeSection } from '../layermerge/plan-section.js';
import type { SglpBudget } from '../sglp/plan.js';

/** A prune plan as strata writes and reads it (plan.json). */
export interface PlanDocument {
  format: 'strata-plan';
  version: 1;
  method: 'sglp' | 'layermerge';
  budget: SglpBudget;
  /** ids of the units removed */
  remove: string[];
  predictedLatencyMs: number;
  baselineLatencyMs: number;
  /** batch size the latencies were measured at */
  latencyBatch: number;
  importanceLost: number;
  /** SGLP: the segments (unit ids) the plan pruned inside */
  segments: string[][];
  importance: Record<string, number>;
  importanceMeasure: string;
  unitLatencyMs: Record<string, number>;
  /** LayerMerge: the blocks that tile the conv chain (absent from SGLP plans) */
  layermerge?: LayerMergePlanSection;
  /** what the plan was computed from, so it can be reproduced and checked before it is applied */
  inputs: {
    modelSha256: string;
    dataSha256: string;
    options: Record<string, unknown>;
  };
}

/** Parses --budget-ms / --budget / --remove into one budget; exactly one must be given. */
export function parseBudget(o: { budgetMs?: string; budget?: string; remove?: string }): SglpBudget {
  const given = [o.budgetMs, o.budget, o.remove].filter((x) => x !== undefined);
  if (given.length !== 1) {
    throw new InvalidArgumentError('budget', 'give exactly one of --budget-ms <ms>, --budget <fraction of the measured latency, 0–1> or --remove <count>');
  }
  if (o.budgetMs !== undefined) {
    const v = Number(o.budgetMs);
    if (!(v > 0)) throw new InvalidArgumentError('--budget-ms', `must be a positive number of milliseconds, got "${o.budgetMs}"`);
    return { kind: 'latency-ms', value: v };
  }
  if (o.budget !== undefined) {
    const v = Number(o.budget);
    if (!(v > 0 && v <= 1)) throw new InvalidArgumentError('--budget', `must be a fraction of the original latency in (0, 1], got "${o.budget}"`);
    return { kind: 'latency-fraction', value: v };
  }
  const n = Number(o.remove);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('--remove', `must be a whole number of units, got "${o.remove}"`);
  return { kind: 'remove', count: n };
}

/** Checks a parsed plan.json has what applying it needs. */
export function validatePlan(value: unknown): PlanDocument {
  const p = value as Partial<PlanDocument> | null;
  if (!p || typeof p !== 'object' || p.format !== 'strata-plan') {
    throw new InvalidArgumentError('--plan', 'not a strata plan (expected a JSON document with "format": "strata-plan", as `strata plan -o` writes)');
  }
  if (p.version !== 1) throw new InvalidArgumentError('--plan', `plan version ${String(p.version)} is not supported; this strata reads version 1`);
  if (p.method !== 'sglp' && p.method !== 'layermerge') {
    throw new InvalidArgumentError('--plan', `method "${String(p.method)}" cannot be applied by this strata (supported: sglp, layermerge)`);
  }
  if (p.method === 'layermerge') validateLayerMergeSection(p.layermerge, '--plan');
  if (!Array.isArray(p.remove) || !p.remove.every((x) => typeof x === 'string')) {
    throw new InvalidArgumentError('--plan', '"remove" must be a list of unit ids');
  }
  if (!p.inputs || typeof p.inputs.modelSha256 !== 'string') throw new InvalidArgumentError('--plan', 'the plan does not say which model it was made for (inputs.modelSha256)');
  return p as PlanDocument;
}
