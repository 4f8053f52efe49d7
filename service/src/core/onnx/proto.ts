import protobuf from 'protobufjs';
import Long from 'long';
import { ONNX_PROTO } from './onnx-schema.js';

// protobufjs represents int64 as Long only when it can find the `long` package; make it
// explicit so dims and attribute ints above 2^53 never silently lose precision.
protobuf.util.Long = Long;
protobuf.configure();

const root = protobuf.parse(ONNX_PROTO, { keepCase: true }).root;

export const ModelProtoType = root.lookupType('onnx.ModelProto');
export const TensorProtoType = root.lookupType('onnx.TensorProto');
export const NodeProtoType = root.lookupType('onnx.NodeProto');

/** int64 as protobufjs gives it back. */
export type Int64 = number | Long;

export function int64ToNumber(v: Int64 | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

export interface StringStringEntry {
  key?: string;
  value?: string;
}

export interface OperatorSetId {
  domain?: string;
  version?: Int64;
}

export interface Dimension {
  dim_value?: Int64;
  dim_param?: string;
  denotation?: string;
  value?: 'dim_value' | 'dim_param';
}

export interface TensorShape {
  dim?: Dimension[];
}

export interface TypeProto {
  tensor_type?: { elem_type?: number; shape?: TensorShape };
  sequence_type?: unknown;
  map_type?: unknown;
  optional_type?: unknown;
  sparse_tensor_type?: unknown;
  denotation?: string;
  value?: string;
}

export interface ValueInfo {
  name?: string;
  type?: TypeProto;
  doc_string?: string;
}

export interface TensorProto {
  dims?: Int64[];
  data_type?: number;
  segment?: unknown;
  float_data?: number[];
  int32_data?: number[];
  string_data?: Uint8Array[];
  int64_data?: Int64[];
  name?: string;
  doc_string?: string;
  raw_data?: Uint8Array;
  external_data?: StringStringEntry[];
  data_location?: number;
  double_data?: number[];
  uint64_data?: Int64[];
}

export interface AttributeProto {
  name?: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
}

export interface NodeProto {
  input?: string[];
  output?: string[];
  name?: string;
  op_type?: string;
  domain?: string;
  attribute?: AttributeProto[];
  doc_string?: string;
}

export interface GraphProto {
  node?: NodeProto[];
  name?: string;
  initializer?: TensorProto[];
  sparse_initializer?: unknown[];
  doc_string?: string;
  input?: ValueInfo[];
  output?: ValueInfo[];
  value_info?: ValueInfo[];
}

export interface ModelProto {
  ir_version?: Int64;
  opset_import?: OperatorSetId[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: Int64;
  doc_string?: string;
  graph?: GraphProto;
  metadata_props?: StringStringEntry[];
  training_info?: unknown[];
  functions?: unknown[];
}

export const AttributeType = {
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
} as const;
