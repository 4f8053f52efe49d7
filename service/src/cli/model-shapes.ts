import type { Dim } from '../core/onnx/graph.js';
import { bindInputShapes, modelSignature, parseShapeOption } from '../core/onnx/io.js';
import type { ModelProto } from '../core/onnx/proto.js';
import { tensorShapes } from '../runtime/shape-probe.js';

/** Collects repeated --shape options. */
export function collectShape(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function givenShapes(options: string[] | undefined): Map<string, number[]> {
  return new Map((options ?? []).map(parseShapeOption));
}

/**
 * Shapes of every tensor for a model: measured by one run at the bound input shapes, on top
 * of what the file declares. A lone symbolic batch dimension is bound to 1 so figures are per
 * sample.
 */
export async function resolveShapes(
  model: ModelProto,
  shapeOptions: string[] | undefined,
): Promise<{ shapes: Map<string, Dim[]>; inputShapes: Map<string, number[]> }> {
  const inputShapes = bindInputShapes(modelSignature(model).inputs, givenShapes(shapeOptions), 1);
  return { shapes: await tensorShapes(model, inputShapes), inputShapes };
}
