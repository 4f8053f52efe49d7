import 'reflect-metadata';
import { Field, Float, Int, ObjectType } from 'type-graphql';
import type { ArtifactRef, CompressionReport, CompressResult, TradeoffResult } from '../jobs/job.js';
import { BudgetType, budgetView, PlanResultType, planDocumentView } from './plan.type.js';

@ObjectType('Artifact', { description: 'a stored file, downloadable with GET <url> (same bearer token as the API)' })
export class ArtifactType {
  @Field(() => String)
  sha256!: string;

  @Field(() => Float)
  size!: number;

  @Field(() => String, { description: 'path on this server: /artifacts/<sha256>' })
  url!: string;
}

@ObjectType('MergedConv', { description: 'a convolution a LAYERMERGE plan put in place of a block of the conv chain' })
export class MergedConvType {
  @Field(() => Int, { description: 'the block (i, j] over chain positions' })
  i!: number;

  @Field(() => Int)
  j!: number;

  @Field(() => [String], { description: 'the original convolutions merged into it, in order' })
  from!: string[];

  @Field(() => Int)
  kh!: number;

  @Field(() => Int)
  kw!: number;

  @Field(() => [String], { description: 'residual Adds folded into its kernel' })
  foldedSkips!: string[];

  @Field(() => Boolean, { description: 'its weights were refit by least squares' })
  refit!: boolean;
}

@ObjectType('CompressionReport', { description: 'a compressed model measured against its original' })
export class CompressionReportType {
  @Field(() => [String], { description: 'ids of the units removed (LAYERMERGE: convolutions and activations)' })
  removed!: string[];

  @Field(() => [MergedConvType], { description: 'LAYERMERGE: the merged convolutions; empty for SGLP' })
  merged!: MergedConvType[];

  @Field(() => Int)
  removedNodes!: number;

  @Field(() => Float)
  parametersBefore!: number;

  @Field(() => Float)
  parametersAfter!: number;

  @Field(() => Int)
  latencyBatch!: number;

  @Field(() => Float)
  originalMs!: number;

  @Field(() => Float)
  compressedMs!: number;

  @Field(() => Float, { description: 'compressed ÷ original: the median of interleaved pairs; below 1 is faster' })
  latencyRatio!: number;

  @Field(() => Float)
  latencyRatioP10!: number;

  @Field(() => Float)
  latencyRatioP90!: number;

  @Field(() => Float)
  speedup!: number;

  @Field(() => Float, { description: 'the ratio the plan predicted' })
  predictedRatio!: number;

  @Field(() => Float, { nullable: true, description: 'top-1 accuracy on the evaluation data; null without labelled data' })
  accuracyBefore!: number | null;

  @Field(() => Float, { nullable: true })
  accuracyAfter!: number | null;

  @Field(() => Float, { nullable: true, description: 'top-1 agreement with the original' })
  agreement!: number | null;

  @Field(() => Float, { nullable: true })
  meanKl!: number | null;

  @Field(() => Int, { nullable: true })
  samples!: number | null;
}

@ObjectType('CompressResult')
export class CompressResultType {
  kind!: 'compress';

  @Field(() => ArtifactType, { description: 'the compressed model' })
  artifact!: ArtifactType;

  @Field(() => CompressionReportType)
  report!: CompressionReportType;
}

@ObjectType('TradeoffPoint', { description: 'one budget of a sweep: its plan, applied and measured, or why no plan meets it' })
export class TradeoffPointType {
  @Field(() => BudgetType)
  budget!: BudgetType;

  @Field(() => Boolean)
  feasible!: boolean;

  @Field(() => String, { nullable: true })
  reason!: string | null;

  @Field(() => PlanResultType, { nullable: true })
  plan!: PlanResultType | null;

  @Field(() => ArtifactType, { nullable: true })
  artifact!: ArtifactType | null;

  @Field(() => CompressionReportType, { nullable: true })
  report!: CompressionReportType | null;
}

@ObjectType('TradeoffResult', { description: 'plans for several budgets from one analysis, each compressed and measured' })
export class TradeoffResultType {
  kind!: 'tradeoff';

  @Field(() => Float)
  baselineLatencyMs!: number;

  @Field(() => Int)
  latencyBatch!: number;

  @Field(() => [TradeoffPointType])
  points!: TradeoffPointType[];
}

export function artifactView(a: ArtifactRef): ArtifactType {
  return { sha256: a.sha256, size: a.size, url: `/artifacts/${a.sha256}` };
}

function reportView(r: CompressionReport): CompressionReportType {
  // reports stored before LayerMerge have no `merged`: they merged nothing
  return { ...r, merged: r.merged ?? [] };
}

export function compressView(r: CompressResult): CompressResultType {
  return { kind: 'compress', artifact: artifactView(r.artifact), report: reportView(r.report) };
}

export function tradeoffView(r: TradeoffResult): TradeoffResultType {
  return {
    kind: 'tradeoff',
    baselineLatencyMs: r.baselineLatencyMs,
    latencyBatch: r.latencyBatch,
    points: r.points.map((p) =>
      p.feasible
        ? { budget: budgetView(p.budget), feasible: true, reason: null, plan: planDocumentView(p.plan), artifact: artifactView(p.artifact), report: reportView(p.report) }
        : { budget: budgetView(p.budget), feasible: false, reason: p.reason, plan: null, artifact: null, report: null },
    ),
  };
}
