import { InvalidArgumentError, StrataError } from '../../core/errors.js';
import { mergeCandidate } from '../../core/layermerge/chain.js';
import type { ConvSpec } from '../../core/layermerge/conv.js';
import { type BlockChoice, emitLayerMerge } from '../../core/layermerge/emit.js';
import { extractChain } from '../../core/layermerge/extract.js';
import { validateLayerMergeSection } from '../../core/layermerge/plan-section.js';
import { encodeModel } from '../../core/onnx/codec.js';
import { declaredShapes } from '../../core/onnx/graph.js';
import { bindInputShapes, modelSignature } from '../../core/onnx/io.js';
import type { ModelProto } from '../../core/onnx/proto.js';
import type { PlanDocument } from '../../core/plan/plan.js';
import { discoverStructure } from '../../core/structure/discover.js';
import type { CompressResult } from '../analysis/compress.js';
import { datasetInputShapes } from '../analysis/model-context.js';
import type { Dataset } from '../dataset.js';
import type { LoadedModel } from '../model-file.js';
import { probeShapes } from '../shape-probe.js';

function floats(text: string, expected: number, what: string): Float32Array {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.byteLength !== expected * 4) {
    throw new InvalidArgumentError('--plan', `${what} holds ${bytes.byteLength / 4} values, the merged conv needs ${expected}`);
  }
  const out = new Float32Array(expected);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

function parameterCount(m: ModelProto): number {
  return (m.graph?.initializer ?? []).reduce((a, t) => a + (t.dims ?? []).reduce<number>((x, d) => x * Number(d), 1), 0);
}

/**
 * Applies a LayerMerge plan to the model it was made for: the chain is extracted again (same rules,
 * same shapes) and must match the plan's, then every block that changes something is emitted, with
 * the plan's refit weights where it carries them.
 */
export async function applyLayerMergePlan(loaded: LoadedModel, plan: PlanDocument, dataset?: Dataset): Promise<CompressResult> {
  if (plan.inputs.modelSha256 !== loaded.sha256) {
    throw new StrataError(
      'BAD_USER_INPUT',
      `the plan was made for another model (sha256 ${plan.inputs.modelSha256.slice(0, 12)}…, this one is ${loaded.sha256.slice(0, 12)}…)`,
    );
  }
  const section = validateLayerMergeSection(plan.layermerge, '--plan');
  const inputShapes = dataset ? datasetInputShapes(loaded.model, dataset, 1) : bindInputShapes(modelSignature(loaded.model).inputs, new Map(), 1);
  const shapes = declaredShapes(loaded.model);
  for (const [k, v] of await probeShapes(loaded.model, inputShapes)) shapes.set(k, v);
  const { units } = discoverStructure(loaded.model, shapes);
  const x = extractChain(loaded.model, units, shapes);
  const ids = x.chain.layers.map((l) => l.id);
  if (ids.join(',') !== section.chain.join(',')) {
    throw new StrataError('BAD_USER_INPUT', `the plan's conv chain (${section.chain.length} layers) is not this model's (${ids.length} layers)`);
  }
  const choices: BlockChoice[] = section.blocks.map((b, n) => {
    const choice: BlockChoice = { i: b.i, j: b.j, kept: b.kept };
    if (!b.weights) return choice;
    const geometry = mergeCandidate(x.chain, { i: b.i, j: b.j, kept: [...b.kept] });
    if (!geometry) throw new InvalidArgumentError('--plan', `layermerge.blocks[${n}] carries weights for an identity block`);
    const spec: ConvSpec = {
      ...geometry,
      weight: floats(b.weights.weight, geometry.weight.length, `layermerge.blocks[${n}].weights.weight`),
      bias: floats(b.weights.bias, geometry.cout, `layermerge.blocks[${n}].weights.bias`),
    };
    return { ...choice, spec };
  });
  const r = emitLayerMerge(loaded.model, x, choices);
  return {
    bytes: encodeModel(r.model),
    removed: plan.remove,
    removedNodes: r.removedNodes,
    removedInitializers: r.removedInitializers,
    parametersBefore: parameterCount(loaded.model),
    parametersAfter: parameterCount(r.model),
  };
}
