import 'reflect-metadata';
import { Field, Float, GraphQLISODateTime, ID, Int, ObjectType } from 'type-graphql';
import type { DatasetRecord } from '../store/registry.js';

@ObjectType('DatasetArray')
export class DatasetArrayType {
  @Field(() => String)
  name!: string;

  @Field(() => String, { description: 'NumPy dtype' })
  dtype!: string;

  @Field(() => [Int])
  shape!: number[];
}

@ObjectType('Dataset', { description: 'a registered NumPy data set (.npz with one array per model input and optional labels, or a .npy)' })
export class DatasetType {
  @Field(() => ID)
  id!: string;

  @Field(() => String)
  name!: string;

  @Field(() => String)
  sha256!: string;

  @Field(() => Float, { description: 'bytes' })
  size!: number;

  @Field(() => GraphQLISODateTime)
  createdAt!: Date;

  @Field(() => String)
  source!: string;

  @Field(() => String, { description: '"npz" or "npy"' })
  format!: string;

  @Field(() => Int)
  samples!: number;

  @Field(() => Boolean)
  hasLabels!: boolean;

  @Field(() => [DatasetArrayType])
  arrays!: DatasetArrayType[];
}

export function datasetView(r: DatasetRecord): DatasetType {
  return {
    id: r.id,
    name: r.name,
    sha256: r.sha256,
    size: r.size,
    createdAt: new Date(r.createdAt),
    source: r.source,
    format: r.format,
    samples: r.samples,
    hasLabels: r.hasLabels,
    arrays: r.arrays.map((a) => ({ name: a.name, dtype: a.dtype, shape: [...a.shape] })),
  };
}
