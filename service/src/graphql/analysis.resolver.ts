import 'reflect-metadata';
import { Arg, Mutation, Query, Resolver } from 'type-graphql';
import { AnalysisInput, CompressInput, LayerMergeTablesInput, PlanInput, SegmentsInput, StructureInput, TradeoffInput } from './analysis.input.js';
import type { Services } from './context.js';
import { JobType, jobView } from './job.type.js';

/**
 * Each analysis is a job: the query answers at once with the job, which is already SUCCEEDED
 * when the same inputs were asked for before. Poll job(id) or subscribe to jobUpdated(id).
 */
@Resolver()
export class AnalysisResolver {
  constructor(private readonly services: Services) {}

  @Query(() => JobType, { description: "the model's units (residual and transformer blocks, convolutions, activations) and what can be removed" })
  structure(@Arg('input', () => StructureInput) input: StructureInput): JobType {
    return jobView(this.services.analysis.structure(input));
  }

  @Query(() => JobType, { description: 'CKA similarity between every pair of layers over calibration data' })
  similarity(@Arg('input', () => AnalysisInput) input: AnalysisInput): JobType {
    return jobView(this.services.analysis.similarity(input));
  }

  @Query(() => JobType, { description: 'Fisher optimal segmentation of the layers by CKA similarity' })
  segments(@Arg('input', () => SegmentsInput) input: SegmentsInput): JobType {
    return jobView(this.services.analysis.segments(input));
  }

  @Query(() => JobType, {
    description: "LayerMerge's latency and importance tables: every candidate block's measured latency and its importance on the calibration data",
  })
  layerMergeTables(@Arg('input', () => LayerMergeTablesInput) input: LayerMergeTablesInput): JobType {
    return jobView(this.services.analysis.layerMergeTables(input));
  }

  @Query(() => JobType, { description: 'a prune plan for a method and a budget (a latency budget the model cannot reach fails BUDGET_INFEASIBLE)' })
  plan(@Arg('input', () => PlanInput) input: PlanInput): JobType {
    return jobView(this.services.analysis.plan(input));
  }

  @Query(() => JobType, { description: 'plans for several budgets, each applied and measured: the latency/accuracy trade-off' })
  tradeoff(@Arg('input', () => TradeoffInput) input: TradeoffInput): JobType {
    return jobView(this.services.analysis.tradeoff(input));
  }

  @Mutation(() => JobType, { description: 'applies a plan; the result holds the compressed model (download its artifact url) and its measurements' })
  compress(@Arg('input', () => CompressInput) input: CompressInput): JobType {
    return jobView(this.services.analysis.compress(input));
  }
}
