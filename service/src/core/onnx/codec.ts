import { InvalidModelError } from '../errors.js';
import { ModelProtoType, type ModelProto, type GraphProto, int64ToNumber } from './proto.js';

export interface DecodeLimits {
  /** Largest accepted model, in bytes (protobuf itself caps a message at 2 GiB). */
  maxBytes: number;
  /** Most nodes in the main graph plus every nested subgraph. */
  maxNodes: number;
  /** Deepest nesting of subgraphs (If/Loop/Scan bodies). */
  maxGraphDepth: number;
}

export const DEFAULT_DECODE_LIMITS: DecodeLimits = {
  maxBytes: 2 ** 31 - 1,
  maxNodes: 1_000_000,
  maxGraphDepth: 16,
};

/**
 * Bytes → ModelProto. Every failure is an InvalidModelError that says what was wrong: truncated
 * input, bytes that are not protobuf, a protobuf that is not an ONNX model, limits exceeded.
 */
export function decodeModel(bytes: Uint8Array, limits: Partial<DecodeLimits> = {}): ModelProto {
  const lim = { ...DEFAULT_DECODE_LIMITS, ...limits };
  if (bytes.byteLength === 0) throw new InvalidModelError('the model file is empty; expected an ONNX ModelProto (.onnx)');
  if (bytes.byteLength > lim.maxBytes) {
    throw new InvalidModelError(`the model is ${bytes.byteLength} bytes; at most ${lim.maxBytes} are accepted`, {
      size: bytes.byteLength,
      limit: lim.maxBytes,
    });
  }
  let model: ModelProto;
  try {
    model = ModelProtoType.decode(bytes) as unknown as ModelProto;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    const truncated = /index out of range/.test(why);
    throw new InvalidModelError(
      truncated
        ? `the model file is truncated or corrupt (protobuf decoding ran past the end: ${why}); expected a complete ONNX ModelProto`
        : `the bytes are not an ONNX model (protobuf decoding failed: ${why})`,
      { cause: why },
    );
  }
  checkIsOnnx(model);
  checkLimits(model.graph!, lim, 0, { nodes: 0 });
  return model;
}

function checkIsOnnx(model: ModelProto): void {
  const missing: string[] = [];
  if (model.ir_version === undefined || int64ToNumber(model.ir_version) <= 0) missing.push('ir_version');
  if (!model.graph) missing.push('graph');
  if (!model.opset_import || model.opset_import.length === 0) missing.push('opset_import');
  if (missing.length > 0) {
    throw new InvalidModelError(
      `the bytes decode as protobuf but not as an ONNX model: missing ${missing.join(', ')}; expected an ONNX ModelProto (.onnx)`,
      { missing },
    );
  }
  const g = model.graph!;
  for (const n of g.node ?? []) {
    if (!n.op_type) throw new InvalidModelError('the model has a node without an op_type; the file is not a valid ONNX model');
  }
  if ((g.output ?? []).length === 0) throw new InvalidModelError('the model graph declares no outputs');
}

function checkLimits(g: GraphProto, lim: DecodeLimits, depth: number, count: { nodes: number }): void {
  if (depth > lim.maxGraphDepth) {
    throw new InvalidModelError(`subgraphs are nested more than ${lim.maxGraphDepth} deep`, { limit: lim.maxGraphDepth });
  }
  count.nodes += (g.node ?? []).length;
  if (count.nodes > lim.maxNodes) {
    throw new InvalidModelError(`the model has more than ${lim.maxNodes} nodes`, { limit: lim.maxNodes });
  }
  for (const n of g.node ?? []) {
    for (const a of n.attribute ?? []) {
      if (a.g) checkLimits(a.g, lim, depth + 1, count);
      for (const sub of a.graphs ?? []) checkLimits(sub, lim, depth + 1, count);
    }
  }
}

/** ModelProto → bytes. Fields that were absent stay absent. */
export function encodeModel(model: ModelProto): Uint8Array {
  return ModelProtoType.encode(model as never).finish();
}
