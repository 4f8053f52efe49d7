import 'reflect-metadata';
import { Field, Float, Int, ObjectType } from 'type-graphql';
import type { Unit } from '../core/structure/unit.js';
import type { StructureResult } from '../jobs/job.js';
import { UnitKindEnum } from './enums.type.js';
import { dimText } from './model.type.js';

@ObjectType('ConvInfo')
export class ConvInfoType {
  @Field(() => [Int])
  kernel!: number[];

  @Field(() => [Int])
  stride!: number[];

  @Field(() => [Int])
  pads!: number[];

  @Field(() => [Int])
  dilation!: number[];

  @Field(() => Int)
  groups!: number;

  @Field(() => Int)
  inChannels!: number;

  @Field(() => Int)
  outChannels!: number;

  @Field(() => Boolean)
  depthwise!: boolean;

  @Field(() => Boolean, { description: 'a BatchNormalization directly after the conv' })
  batchNorm!: boolean;

  @Field(() => String, { nullable: true, description: 'the activation unit consuming the output' })
  activation!: string | null;
}

@ObjectType('Unit', { description: 'a part of the network a planner can act on: a residual or transformer block, a convolution, an activation, a linear layer' })
export class UnitType {
  @Field(() => String)
  id!: string;

  @Field(() => UnitKindEnum)
  kind!: string;

  @Field(() => Boolean)
  removable!: boolean;

  @Field(() => String, { nullable: true, description: 'why the unit cannot be removed' })
  reason!: string | null;

  @Field(() => Float)
  parameters!: number;

  @Field(() => Float, { nullable: true, description: 'multiply-accumulates per sample; null when shapes are unknown' })
  macs!: number | null;

  @Field(() => [String], { nullable: true })
  inputShape!: string[] | null;

  @Field(() => [String], { nullable: true })
  outputShape!: string[] | null;

  @Field(() => String, { nullable: true, description: 'the smallest unit containing this one' })
  parent!: string | null;

  @Field(() => [String])
  children!: string[];

  @Field(() => [String], { description: 'ONNX node names, in topological order' })
  nodes!: string[];

  @Field(() => ConvInfoType, { nullable: true })
  conv!: ConvInfoType | null;

  @Field(() => String, { nullable: true, description: 'for activations: relu, silu, gelu, …' })
  activation!: string | null;

  @Field(() => String, { nullable: true, description: 'for residual blocks: identity, projection or other' })
  skip!: string | null;

  @Field(() => String, { nullable: true, description: 'for transformer blocks: pre or post' })
  norm!: string | null;
}

@ObjectType('InputShape')
export class InputShapeType {
  @Field(() => String)
  input!: string;

  @Field(() => [Int])
  dims!: number[];
}

@ObjectType('StructureResult')
export class StructureResultType {
  kind!: 'structure';

  @Field(() => [UnitType])
  units!: UnitType[];

  @Field(() => [String])
  warnings!: string[];

  @Field(() => [InputShapeType], { description: 'the input shapes the structure was measured at' })
  inputShapes!: InputShapeType[];
}

export function unitView(u: Unit): UnitType {
  return {
    id: u.id,
    kind: u.kind,
    removable: u.removable,
    reason: u.reason ?? null,
    parameters: u.parameters,
    macs: u.macs,
    inputShape: u.inputShape?.map(dimText) ?? null,
    outputShape: u.outputShape?.map(dimText) ?? null,
    parent: u.parent ?? null,
    children: u.children,
    nodes: u.nodes,
    conv: u.conv ? { ...u.conv, activation: u.conv.activation ?? null } : null,
    activation: u.activation ?? null,
    skip: u.skip ?? null,
    norm: u.norm ?? null,
  };
}

export function structureView(r: StructureResult): StructureResultType {
  return { kind: 'structure', units: r.units.map(unitView), warnings: r.warnings, inputShapes: r.inputShapes };
}
