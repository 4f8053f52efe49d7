import 'reflect-metadata';
import { Field, Float, Int, ObjectType } from 'type-graphql';
import type { SegmentsResult, SimilarityResult } from '../jobs/job.js';
import { CkaEstimatorEnum, SegmentCostEnum, UnitKindEnum } from './enums.type.js';

@ObjectType('Layer', { description: 'a unit SGLP orders and compares (the outermost units, activations aside)' })
export class LayerType {
  @Field(() => String)
  id!: string;

  @Field(() => UnitKindEnum)
  kind!: string;
}

@ObjectType('SimilarityResult', { description: 'CKA similarity between every pair of layers' })
export class SimilarityResultType {
  kind!: 'similarity';

  @Field(() => [LayerType])
  layers!: LayerType[];

  @Field(() => [[Float]], { description: 'matrix[i][j]: CKA of layers i and j, in layer order' })
  matrix!: number[][];

  @Field(() => CkaEstimatorEnum)
  estimator!: string;

  @Field(() => Int)
  samples!: number;

  @Field(() => Int)
  batches!: number;

  @Field(() => [String], { description: 'layers whose output was constant over the data' })
  degenerate!: string[];
}

@ObjectType('SegmentLayer')
export class SegmentLayerType extends LayerType {
  @Field(() => Boolean)
  removable!: boolean;
}

@ObjectType('SegmentsResult', { description: 'Fisher optimal segmentation of the layers by CKA similarity' })
export class SegmentsResultType {
  kind!: 'segments';

  @Field(() => [SegmentLayerType])
  layers!: SegmentLayerType[];

  @Field(() => [[Float]])
  matrix!: number[][];

  @Field(() => [[String]], { description: 'layer ids, segment by segment, in order' })
  segments!: string[][];

  @Field(() => Int)
  k!: number;

  @Field(() => String, { description: 'how k was chosen: given, elbow, …' })
  kRule!: string;

  @Field(() => SegmentCostEnum)
  cost!: string;

  @Field(() => [Float], { description: 'optimal cost for k = 1, 2, …' })
  costCurve!: number[];
}

export function similarityView(r: SimilarityResult): SimilarityResultType {
  return {
    kind: 'similarity',
    layers: r.units,
    matrix: r.matrix,
    estimator: r.estimator,
    samples: r.samples,
    batches: r.batches,
    degenerate: r.degenerate,
  };
}

export function segmentsView(r: SegmentsResult): SegmentsResultType {
  return { kind: 'segments', layers: r.units, matrix: r.matrix, segments: r.segments, k: r.k, kRule: r.kRule, cost: r.cost, costCurve: r.costCurve };
}
