import 'reflect-metadata';
import { GraphQLJSONObject } from 'graphql-scalars';
import { Field, Float, ID, InputType, Int } from 'type-graphql';
import type { ImportanceMeasure } from '../core/importance/measures.js';
import type { LayerMergeVariant } from '../core/layermerge/dp.js';
import type { SegmentCost } from '../core/segment/fisher.js';
import type { HsicEstimator } from '../core/similarity/cka.js';
import { DEFAULTS } from '../jobs/analysis.service.js';
import type { PlanMethod } from '../jobs/job.js';
import { CkaEstimatorEnum, ImportanceMeasureEnum, LayerMergeVariantEnum, PlanMethodEnum, SegmentCostEnum } from './enums.type.js';

@InputType('ShapeInput')
export class ShapeInput {
  @Field(() => String, { description: 'a model input name' })
  input!: string;

  @Field(() => [Int])
  dims!: number[];
}

@InputType('StructureInput')
export class StructureInput {
  @Field(() => ID)
  model!: string;

  @Field(() => ID, { nullable: true, description: 'bind input shapes from this data set' })
  dataset?: string | null;

  @Field(() => [ShapeInput], { nullable: true, description: 'or bind them here; a lone symbolic batch dimension is bound to 1' })
  shapes?: ShapeInput[] | null;
}

@InputType('AnalysisInput', { description: 'a model and calibration data, and how CKA is estimated over it' })
export class AnalysisInput {
  @Field(() => ID)
  model!: string;

  @Field(() => ID, { description: 'calibration data set' })
  dataset!: string;

  @Field(() => Int, { nullable: true, description: 'use the first n samples (default: all)' })
  samples?: number | null;

  @Field(() => Int, { nullable: true, defaultValue: DEFAULTS.batchSize, description: 'CKA is estimated per batch and accumulated' })
  batchSize?: number | null;

  @Field(() => CkaEstimatorEnum, { nullable: true, defaultValue: DEFAULTS.estimator })
  estimator?: HsicEstimator | null;
}

@InputType('SegmentsInput')
export class SegmentsInput extends AnalysisInput {
  @Field(() => Int, { nullable: true, description: 'number of segments (default: the elbow of the optimal cost curve)' })
  k?: number | null;

  @Field(() => SegmentCostEnum, { nullable: true, defaultValue: DEFAULTS.cost })
  cost?: SegmentCost | null;
}

@InputType('BudgetInput', { description: 'set exactly one field' })
export class BudgetInput {
  @Field(() => Float, { nullable: true, description: 'target latency as a fraction of the measured original, in (0, 1]' })
  latencyFraction?: number | null;

  @Field(() => Float, { nullable: true, description: 'target latency in milliseconds, at latencyBatch' })
  latencyMs?: number | null;

  @Field(() => Int, { nullable: true, description: 'remove this many units' })
  remove?: number | null;

  @Field(() => Float, { nullable: true, description: 'remove this fraction of the removable units, in [0, 1]' })
  fraction?: number | null;
}

const LM = DEFAULTS.layerMerge;

@InputType('LayerMergeOptionsInput', { description: 'options of method LAYERMERGE, as `strata plan --method layermerge` takes them' })
export class LayerMergeOptionsInput {
  @Field(() => LayerMergeVariantEnum, { nullable: true, defaultValue: LM.variant })
  variant?: LayerMergeVariant | null;

  @Field(() => Float, { nullable: true, defaultValue: LM.quantumMs, description: 'latency quantum of the DP, in milliseconds' })
  quantumMs?: number | null;

  @Field(() => Boolean, {
    nullable: true,
    defaultValue: LM.refit,
    description: 'refit merged convolutions by least squares on the calibration data (scored in the tables, emitted in the plan); false keeps the exact merge, at a far larger accuracy cost',
  })
  refit?: boolean | null;

  @Field(() => Int, { nullable: true, defaultValue: LM.maxKernel, description: 'largest merged kernel considered' })
  maxKernel?: number | null;

  @Field(() => Float, { nullable: true, defaultValue: LM.ridge, description: 'ridge of the refit, relative to the mean Gram diagonal (with refit only)' })
  ridge?: number | null;
}

@InputType('PlanOptionsInput')
export class PlanOptionsInput extends SegmentsInput {
  @Field(() => PlanMethodEnum, { nullable: true, defaultValue: DEFAULTS.method })
  method?: PlanMethod | null;

  @Field(() => ImportanceMeasureEnum, { nullable: true, defaultValue: DEFAULTS.importance, description: 'SGLP only' })
  importance?: ImportanceMeasure | null;

  @Field(() => Int, { nullable: true, defaultValue: DEFAULTS.keepPerSegment, description: 'SGLP only: units each segment keeps at least' })
  keepPerSegment?: number | null;

  @Field(() => Int, { nullable: true, defaultValue: DEFAULTS.latencyBatch, description: 'batch size latency is measured and budgeted at' })
  latencyBatch?: number | null;

  @Field(() => LayerMergeOptionsInput, { nullable: true, description: 'method LAYERMERGE only (its defaults when left out)' })
  layerMerge?: LayerMergeOptionsInput | null;
}

@InputType('PlanInput')
export class PlanInput extends PlanOptionsInput {
  @Field(() => BudgetInput, { description: 'LAYERMERGE takes latencyFraction or latencyMs' })
  budget!: BudgetInput;
}

@InputType('TradeoffInput')
export class TradeoffInput extends PlanOptionsInput {
  @Field(() => [BudgetInput], { description: '1 to 32 budgets, each planned from the same analysis (LAYERMERGE: latency budgets)' })
  budgets!: BudgetInput[];

  @Field(() => ID, { nullable: true, description: 'labelled data each compressed model is evaluated on' })
  evalDataset?: string | null;
}

@InputType('LayerMergeTablesInput', { description: 'a model and calibration data, and what LayerMerge tables are measured with (as `strata tables`)' })
export class LayerMergeTablesInput {
  @Field(() => ID)
  model!: string;

  @Field(() => ID, { description: 'calibration data set' })
  dataset!: string;

  @Field(() => Int, { nullable: true, description: 'use the first n samples (default: all)' })
  samples?: number | null;

  @Field(() => Int, { nullable: true, defaultValue: DEFAULTS.batchSize, description: 'batch size of the importance passes' })
  batchSize?: number | null;

  @Field(() => Int, { nullable: true, defaultValue: DEFAULTS.latencyBatch, description: 'batch size latencies are measured at' })
  latencyBatch?: number | null;

  @Field(() => Int, { nullable: true, defaultValue: LM.maxKernel, description: 'largest merged kernel considered' })
  maxKernel?: number | null;

  @Field(() => Boolean, { nullable: true, defaultValue: LM.refit, description: 'also refit merged convolutions by least squares and score the refits; false scores the exact merges only' })
  refit?: boolean | null;

  @Field(() => Float, { nullable: true, defaultValue: LM.ridge, description: 'ridge of the refit, relative to the mean Gram diagonal (with refit only)' })
  ridge?: number | null;
}

@InputType('CompressInput', { description: 'give plan or planDocument' })
export class CompressInput {
  @Field(() => ID)
  model!: string;

  @Field(() => ID, { nullable: true, description: 'the id of a succeeded PLAN job' })
  plan?: string | null;

  @Field(() => GraphQLJSONObject, { nullable: true, description: 'a plan.json, as `strata plan -o` writes it' })
  planDocument?: Record<string, unknown> | null;

  @Field(() => ID, { nullable: true, description: 'labelled data to measure accuracy and agreement on' })
  evalDataset?: string | null;
}
