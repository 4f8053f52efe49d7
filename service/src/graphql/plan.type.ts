import 'reflect-metadata';
import { GraphQLJSONObject } from 'graphql-scalars';
import { Field, Float, Int, ObjectType } from 'type-graphql';
import type { PlanDocument } from '../core/plan/plan.js';
import type { SglpBudget } from '../core/sglp/plan.js';
import type { PlanResult } from '../jobs/job.js';
import { BudgetKindEnum, PlanMethodEnum } from './enums.type.js';

@ObjectType('Budget')
export class BudgetType {
  @Field(() => BudgetKindEnum)
  kind!: string;

  @Field(() => Float, { description: 'a fraction, milliseconds, or a count, as the kind says' })
  value!: number;
}

@ObjectType('UnitFigure', { description: 'a number about one unit' })
export class UnitFigureType {
  @Field(() => String)
  unit!: string;

  @Field(() => Float)
  value!: number;
}

@ObjectType('PlanResult', { description: 'a prune plan: which units to remove, and what that is predicted to save and cost' })
export class PlanResultType {
  kind!: 'plan';

  @Field(() => PlanMethodEnum)
  method!: string;

  @Field(() => BudgetType)
  budget!: BudgetType;

  @Field(() => [String], { description: 'ids of the units removed' })
  remove!: string[];

  @Field(() => Float)
  predictedLatencyMs!: number;

  @Field(() => Float, { description: 'the measured latency of the original model' })
  baselineLatencyMs!: number;

  @Field(() => Float, { description: 'baseline ÷ predicted' })
  predictedSpeedup!: number;

  @Field(() => Int, { description: 'the batch size latencies were measured at' })
  latencyBatch!: number;

  @Field(() => Float)
  importanceLost!: number;

  @Field(() => String)
  importanceMeasure!: string;

  @Field(() => [[String]])
  segments!: string[][];

  @Field(() => [UnitFigureType])
  importance!: UnitFigureType[];

  @Field(() => [UnitFigureType])
  unitLatencyMs!: UnitFigureType[];

  @Field(() => GraphQLJSONObject, { description: 'the plan as plan.json: what `strata compress --plan` and `compress(input: {planDocument})` read' })
  document!: PlanDocument;
}

export function budgetView(b: SglpBudget): BudgetType {
  return b.kind === 'remove' ? { kind: b.kind, value: b.count } : { kind: b.kind, value: b.value };
}

function figures(r: Record<string, number>): UnitFigureType[] {
  return Object.entries(r).map(([unit, value]) => ({ unit, value }));
}

export function planDocumentView(p: PlanDocument): PlanResultType {
  return {
    kind: 'plan',
    method: p.method,
    budget: budgetView(p.budget),
    remove: p.remove,
    predictedLatencyMs: p.predictedLatencyMs,
    baselineLatencyMs: p.baselineLatencyMs,
    predictedSpeedup: p.predictedLatencyMs > 0 ? p.baselineLatencyMs / p.predictedLatencyMs : 0,
    latencyBatch: p.latencyBatch,
    importanceLost: p.importanceLost,
    importanceMeasure: p.importanceMeasure,
    segments: p.segments,
    importance: figures(p.importance),
    unitLatencyMs: figures(p.unitLatencyMs),
    document: p,
  };
}

export function planView(r: PlanResult): PlanResultType {
  return planDocumentView(r.plan);
}
