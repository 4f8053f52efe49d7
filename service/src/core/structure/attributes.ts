import type { AttributeProto, NodeProto } from '../onnx/proto.js';
import { int64ToNumber } from '../onnx/proto.js';

export function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

export function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = attr(node, name);
  return a ? (a.ints ?? []).map(int64ToNumber) : undefined;
}

export function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a && a.i !== undefined ? int64ToNumber(a.i) : fallback;
}

export function attrFloat(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a && a.f !== undefined ? a.f : fallback;
}

export function attrString(node: NodeProto, name: string): string | undefined {
  const a = attr(node, name);
  return a?.s ? new TextDecoder().decode(a.s) : undefined;
}
