import { InvalidArgumentError } from '../errors.js';
import { cloneModel, pruneDead, rewire, sortNodes } from '../onnx/edit.js';
import { GraphIndex } from '../onnx/graph.js';
import type { ModelProto } from '../onnx/proto.js';
import type { Unit } from '../structure/unit.js';

export interface RemovalResult {
  model: ModelProto;
  removedNodes: number;
  removedInitializers: number;
}

/**
 * Replaces each unit by its input: every reader of the unit's output reads its input instead
 * (for a residual block, the skip carries through), then whatever no output depends on any more —
 * the unit's nodes and weights — is dropped. The graph keeps its inputs and outputs.
 */
export function removeUnits(model: ModelProto, units: Unit[]): RemovalResult {
  for (const u of units) {
    if (!u.removable) throw new InvalidArgumentError('remove', `unit ${u.id} cannot be removed: ${u.reason ?? 'not removable'}`);
  }
  const out = cloneModel(model);
  const idx = new GraphIndex(out.graph ?? {});
  // chains of removed units (A: x→y, B: y→z) resolve to the first surviving source
  const replaced = new Map<string, string>();
  const resolve = (t: string): string => {
    let cur = t;
    for (let guard = 0; replaced.has(cur) && guard < 100_000; guard++) cur = replaced.get(cur)!;
    return cur;
  };
  const ordered = [...units].sort((a, b) => rankOf(idx, a.output) - rankOf(idx, b.output));
  for (const u of ordered) {
    const source = resolve(u.input);
    rewire(out, u.output, source);
    replaced.set(u.output, source);
  }
  const { removedNodes, removedInitializers } = pruneDead(out);
  sortNodes(out);
  new GraphIndex(out.graph ?? {}).validate();
  return { model: out, removedNodes, removedInitializers };
}

function rankOf(idx: GraphIndex, tensor: string): number {
  const p = idx.producer.get(tensor);
  return p === undefined ? -1 : idx.rank[p]!;
}
