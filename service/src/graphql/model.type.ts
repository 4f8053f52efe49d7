import 'reflect-metadata';
import { Field, Float, GraphQLISODateTime, ID, Int, ObjectType } from 'type-graphql';
import type { Dim } from '../core/onnx/graph.js';
import type { TensorSignature } from '../core/onnx/io.js';
import type { ModelRecord } from '../store/registry.js';

@ObjectType('TensorSignature', { description: 'a model input or output as the file declares it' })
export class TensorSignatureType {
  @Field(() => String)
  name!: string;

  @Field(() => String, { description: "onnxruntime's element type: float32, int64, …" })
  dtype!: string;

  @Field(() => [String], { description: 'sizes, or the names of symbolic dimensions ("?" when unnamed)' })
  dims!: string[];
}

@ObjectType('Model', { description: 'a registered ONNX model' })
export class ModelType {
  @Field(() => ID)
  id!: string;

  @Field(() => String)
  name!: string;

  @Field(() => String, { description: 'sha256 of the stored file: its address in /artifacts' })
  sha256!: string;

  @Field(() => Float, { description: 'bytes' })
  size!: number;

  @Field(() => GraphQLISODateTime)
  createdAt!: Date;

  @Field(() => String, { description: '"upload" or "file" (registered by server-side path)' })
  source!: string;

  @Field(() => [TensorSignatureType])
  inputs!: TensorSignatureType[];

  @Field(() => [TensorSignatureType])
  outputs!: TensorSignatureType[];

  @Field(() => Int, { nullable: true, description: 'the ai.onnx opset' })
  opset!: number | null;

  @Field(() => Int)
  nodes!: number;

  @Field(() => String)
  producer!: string;

  @Field(() => [String], { description: 'operators strata runs but does not look inside, and the like' })
  warnings!: string[];
}

export function dimText(d: Dim): string {
  return d === null ? '?' : String(d);
}

function signatureView(s: TensorSignature): TensorSignatureType {
  return { name: s.name, dtype: s.dtype, dims: s.dims.map(dimText) };
}

export function modelView(r: ModelRecord): ModelType {
  return {
    id: r.id,
    name: r.name,
    sha256: r.sha256,
    size: r.size,
    createdAt: new Date(r.createdAt),
    source: r.source,
    inputs: r.inputs.map(signatureView),
    outputs: r.outputs.map(signatureView),
    opset: r.opset,
    nodes: r.nodes,
    producer: r.producer,
    warnings: r.warnings,
  };
}
