import type { Dim } from '../../core/onnx/graph.js';
import { modelSignature } from '../../core/onnx/io.js';
import type { ModelProto } from '../../core/onnx/proto.js';
import { discoverStructure } from '../../core/structure/discover.js';
import type { Structure, Unit } from '../../core/structure/unit.js';
import type { Dataset } from '../dataset.js';
import { tensorShapes } from '../shape-probe.js';

export interface ModelContext {
  structure: Structure;
  shapes: Map<string, Dim[]>;
  /** input name → shape of one sample with batch 1 */
  sampleShapes: Map<string, number[]>;
}

/** Input shapes for batch `batch`, taken from the data set's arrays. */
export function datasetInputShapes(model: ModelProto, dataset: Dataset, batch: number): Map<string, number[]> {
  const sig = modelSignature(model);
  const binding = dataset.validateAgainst(sig.inputs.map((i) => ({ name: i.name, dtype: i.dtype, dims: i.dims.map((d) => d ?? '?') })));
  const shapes = new Map<string, number[]>();
  for (const [inputName, arrayName] of Object.entries(binding.inputs)) {
    const arr = dataset.arrays.find((a) => a.name === arrayName)!;
    shapes.set(inputName, [binding.fixedBatch ?? batch, ...arr.shape.slice(1)]);
  }
  return shapes;
}

/** Structure and per-tensor shapes of a model, with inputs shaped as the data set shapes them. */
export async function modelContext(model: ModelProto, dataset: Dataset): Promise<ModelContext> {
  const sampleShapes = datasetInputShapes(model, dataset, 1);
  const shapes = await tensorShapes(model, sampleShapes);
  return { structure: discoverStructure(model, shapes), shapes, sampleShapes };
}

/**
 * The units SGLP orders, compares and prunes: the outermost units, activations aside (an
 * activation is part of the layer it follows; removing it alone is LayerMerge's business).
 */
export function layerUnits(structure: Structure): Unit[] {
  return structure.units.filter((u) => !u.parent && u.kind !== 'activation');
}
