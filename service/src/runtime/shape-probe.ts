import * as ort from 'onnxruntime-node';
import { cloneModel, addOutputs } from '../core/onnx/edit.js';
import { encodeModel } from '../core/onnx/codec.js';
import { GraphIndex, declaredShapes, type Dim } from '../core/onnx/graph.js';
import type { ModelProto } from '../core/onnx/proto.js';
import { modelSignature } from '../core/onnx/io.js';
import { createSession } from './session.js';
import { zeroTensor } from './tensors.js';

/**
 * Shapes of every intermediate tensor, measured by running the model once on zeros of the
 * bound input shapes with every data tensor exposed as an output. onnxruntime implements every
 * operator's shape logic already; measuring beats re-deriving it for each operator.
 */
export async function probeShapes(model: ModelProto, inputShapes: Map<string, number[]>): Promise<Map<string, Dim[]>> {
  const tapped = cloneModel(model);
  const idx = new GraphIndex(tapped.graph ?? {});
  const names: string[] = [];
  for (const n of idx.nodes) for (const o of n.output ?? []) if (o && !idx.constant.has(o)) names.push(o);
  addOutputs(tapped, names);
  const session = await createSession(encodeModel(tapped), { optimization: 'disabled', threads: 1 });
  try {
    const feeds: Record<string, ort.Tensor> = {};
    for (const inp of modelSignature(model).inputs) {
      feeds[inp.name] = zeroTensor(inp.dtype, inputShapes.get(inp.name) ?? []);
    }
    const result = await session.run(feeds);
    const shapes = new Map<string, Dim[]>();
    for (const [name, dims] of inputShapes) shapes.set(name, dims);
    for (const [name, t] of Object.entries(result)) shapes.set(name, [...t.dims]);
    for (const [name, t] of idx.initializers) shapes.set(name, (t.dims ?? []).map((d) => Number(d)));
    return shapes;
  } finally {
    await session.release();
  }
}

/** What the file declares, overlaid with what one run at the bound input shapes measures. */
export async function tensorShapes(model: ModelProto, inputShapes: Map<string, number[]>): Promise<Map<string, Dim[]>> {
  const shapes = declaredShapes(model);
  for (const [k, v] of await probeShapes(model, inputShapes)) shapes.set(k, v);
  return shapes;
}
