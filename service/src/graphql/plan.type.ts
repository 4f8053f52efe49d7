import 'reflect-metadata';
import { GraphQLJSONObject } from 'graphql-scalars';
import { Field, Float, Int, ObjectType } from 'type-graphql';
import type { LayerMergePlanSection, PlanBlock } from '../core/layermerge/plan-section.js';
import type { PlanDocument } from '../core/plan/plan.js';
import type { SglpBudget } from '../core/sglp/plan.js';
import type { PlanResult } from '../jobs/job.js';
import { BudgetKindEnum, LayerMergeVariantEnum, PlanMethodEnum } from './enums.type.js';

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

@ObjectType('LayerMergeFit', { description: "a refit's relative error on the calibration rows, before (the exact merge) and after" })
export class LayerMergeFitType {
  @Field(() => Float)
  before!: number;

  @Field(() => Float)
  after!: number;

  @Field(() => String, { description: 'cholesky or cg' })
  solver!: string;
}

@ObjectType('LayerMergeBlock', { description: 'one block (i, j] of the conv chain: the convolutions it keeps become one, the rest go' })
export class LayerMergeBlockType {
  @Field(() => Int, { description: 'the block covers chain positions i+1..j' })
  i!: number;

  @Field(() => Int)
  j!: number;

  @Field(() => Int, { description: 'merged kernel size; 0 when the block becomes the identity' })
  k!: number;

  @Field(() => Int)
  kh!: number;

  @Field(() => Int)
  kw!: number;

  @Field(() => [Int], { description: 'chain positions of the convolutions kept and merged' })
  kept!: number[];

  @Field(() => [String], { description: 'their unit ids' })
  keptIds!: string[];

  @Field(() => [String], { description: 'convolutions replaced by the identity' })
  removedIds!: string[];

  @Field(() => [String], { description: 'activations removed inside the block' })
  removedActivations!: string[];

  @Field(() => [String], { description: 'residual Adds folded into the merged convolution' })
  foldedSkips!: string[];

  @Field(() => Boolean, { description: 'the block leaves the model as it was' })
  unchanged!: boolean;

  @Field(() => Float)
  latencyMs!: number;

  @Field(() => Float)
  importance!: number;

  @Field(() => Float, { description: "relative error of the block's output against the original's on the calibration data" })
  fidelity!: number;

  @Field(() => Boolean, { description: 'the merged convolution carries least-squares refit weights (in the plan document)' })
  refit!: boolean;

  @Field(() => LayerMergeFitType, { nullable: true })
  fit!: LayerMergeFitType | null;
}

@ObjectType('LayerMergePlan', { description: 'what a LAYERMERGE plan does: the blocks that tile the conv chain' })
export class LayerMergePlanType {
  @Field(() => LayerMergeVariantEnum)
  variant!: string;

  @Field(() => Float)
  quantumMs!: number;

  @Field(() => Float, { description: 'latency of the network outside the blocks' })
  restMs!: number;

  @Field(() => Float, { description: 'the budget in milliseconds' })
  budgetMs!: number;

  @Field(() => Boolean)
  refit!: boolean;

  @Field(() => Int, { nullable: true })
  maxKernel!: number | null;

  @Field(() => [String], { description: 'conv unit ids of the chain, in order' })
  chain!: string[];

  @Field(() => [LayerMergeBlockType])
  blocks!: LayerMergeBlockType[];
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

  @Field(() => [[String]], { description: 'SGLP: the segments pruned inside; empty for LAYERMERGE' })
  segments!: string[][];

  @Field(() => [UnitFigureType])
  importance!: UnitFigureType[];

  @Field(() => [UnitFigureType])
  unitLatencyMs!: UnitFigureType[];

  @Field(() => LayerMergePlanType, { nullable: true, description: 'LAYERMERGE: the blocks merged and removed; null for SGLP' })
  layermerge!: LayerMergePlanType | null;

  @Field(() => GraphQLJSONObject, { description: 'the plan as plan.json: what `strata compress --plan` and `compress(input: {planDocument})` read' })
  document!: PlanDocument;
}

export function budgetView(b: SglpBudget): BudgetType {
  return b.kind === 'remove' ? { kind: b.kind, value: b.count } : { kind: b.kind, value: b.value };
}

function figures(r: Record<string, number>): UnitFigureType[] {
  return Object.entries(r).map(([unit, value]) => ({ unit, value }));
}

function blockView(b: PlanBlock): LayerMergeBlockType {
  return {
    i: b.i,
    j: b.j,
    k: b.k,
    kh: b.kh,
    kw: b.kw,
    kept: b.kept,
    keptIds: b.keptIds,
    removedIds: b.removedIds,
    removedActivations: b.removedActivations,
    foldedSkips: b.foldedSkips,
    unchanged: b.unchanged,
    latencyMs: b.latencyMs,
    importance: b.importance,
    fidelity: b.fidelity,
    refit: b.refit,
    // the weights stay in the document: base64 floats are no field to select
    fit: b.fit ?? null,
  };
}

function layerMergeView(s: LayerMergePlanSection): LayerMergePlanType {
  return {
    variant: s.variant,
    quantumMs: s.quantumMs,
    restMs: s.restMs,
    budgetMs: s.budgetMs,
    refit: s.refit,
    maxKernel: s.maxKernel,
    chain: s.chain,
    blocks: s.blocks.map(blockView),
  };
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
    layermerge: p.layermerge ? layerMergeView(p.layermerge) : null,
    document: p,
  };
}

export function planView(r: PlanResult): PlanResultType {
  return planDocumentView(r.plan);
}
