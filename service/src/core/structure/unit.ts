import type { Dim } from '../onnx/graph.js';

export type UnitKind = 'residual' | 'transformer' | 'attention' | 'mlp' | 'conv' | 'activation' | 'linear';

export interface ConvInfo {
  kernel: number[];
  stride: number[];
  pads: number[];
  dilation: number[];
  groups: number;
  inChannels: number;
  outChannels: number;
  depthwise: boolean;
  /** a BatchNormalization directly after the conv (not folded by the exporter) */
  batchNorm: boolean;
  /** the activation unit that consumes this conv's output, when there is one */
  activation?: string;
}

/** A part of the network a planner can act on: remove it, merge it, or measure it. */
export interface Unit {
  id: string;
  kind: UnitKind;
  /** node names, in topological order */
  nodes: string[];
  /** the tensor the unit reads (the skip's source for residual units) */
  input: string;
  /** the tensor the unit produces */
  output: string;
  removable: boolean;
  /** why the unit cannot be removed, when it cannot */
  reason?: string;
  parameters: number;
  /** multiply-accumulates per sample (batch 1), null when shapes are unknown */
  macs: number | null;
  inputShape: Dim[] | null;
  outputShape: Dim[] | null;
  /** the smallest unit containing this one */
  parent?: string;
  children: string[];
  conv?: ConvInfo;
  /** for activation units: relu, relu6, clip, leakyrelu, hardswish, silu, gelu, sigmoid, … */
  activation?: string;
  /** for residual units */
  skip?: 'identity' | 'projection' | 'other';
  /** for transformer blocks */
  norm?: 'pre' | 'post';
}

export interface Structure {
  units: Unit[];
  warnings: string[];
}
