/**
 * Applies LayerMerge blocks to an ONNX graph. A block (i, j] becomes one Conv reading the value at
 * position i (or nothing, for an identity block); whatever read the block's result — the output of
 * layer j − 1, or of the outermost residual Add it covers — reads the new conv instead. The block's
 * old convolutions, the activations inside it, the Adds and projections of the skips it folds are
 * then unreachable and pruned with their weights. The activation at position j and any skip the
 * block lies inside stay, since they read the replaced tensor. Inputs and outputs keep their names.
 *
 * Blocks are applied right to left: a block's input tensor may be the previous block's result, and
 * rewiring that result later also rewires the later block's new conv.
 */
import { InvalidArgumentError } from '../errors.js';
import { addInitializer, cloneModel, freshName, pruneDead, rewire, sortNodes } from '../onnx/edit.js';
import { GraphIndex } from '../onnx/graph.js';
import type { ModelProto, NodeProto } from '../onnx/proto.js';
import { AttributeType } from '../onnx/proto.js';
import { makeFloatTensor } from '../onnx/tensor.js';
import { checkBlock, mergeCandidate } from './chain.js';
import { type ConvSpec, validateConvSpec } from './conv.js';
import { type ExtractedChain, replacedTensor } from './extract.js';

export interface BlockChoice {
  i: number;
  j: number;
  /** layer indices kept and merged */
  kept: readonly number[];
  /**
   * Weights to use instead of the exact merge of the kept convs (a least-squares refit); must have the
   * merged conv's geometry.
   */
  spec?: ConvSpec;
}

export interface EmittedBlock {
  i: number;
  j: number;
  /** the tensor that now carries the block's result */
  tensor: string;
  /** the tensor it replaced */
  replaced: string;
  /** the new Conv node's name; absent for an identity block */
  node?: string;
}

export interface EmitResult {
  model: ModelProto;
  blocks: EmittedBlock[];
  removedNodes: number;
  removedInitializers: number;
}

/** A block that keeps its one conv and folds nothing leaves the graph as it is. */
export function blockIsNoop(x: ExtractedChain, b: BlockChoice): boolean {
  if (b.spec !== undefined) return false;
  if (b.j - b.i !== 1 || b.kept.length !== 1 || b.kept[0] !== b.i) return false;
  return !x.chain.residuals.some((r) => r.start >= b.i && r.end <= b.j);
}

function intsAttr(name: string, values: readonly number[]) {
  return { name, type: AttributeType.INTS, ints: [...values] };
}

/** The Conv node (and its initializers' values) for a merged spec. */
export function convNode(name: string, input: string, output: string, weight: string, bias: string, spec: ConvSpec): NodeProto {
  return {
    op_type: 'Conv',
    domain: '',
    name,
    input: [input, weight, bias],
    output: [output],
    attribute: [
      intsAttr('kernel_shape', [spec.kh, spec.kw]),
      intsAttr('strides', spec.stride),
      intsAttr('pads', spec.pads),
      intsAttr('dilations', spec.dilation),
      { name: 'group', type: AttributeType.INT, i: spec.group },
    ],
  };
}

export function emitLayerMerge(model: ModelProto, x: ExtractedChain, blocks: readonly BlockChoice[]): EmitResult {
  const L = x.chain.layers.length;
  const sorted = [...blocks].sort((a, b) => a.i - b.i);
  sorted.forEach((b, n) => {
    checkBlock(x.chain, b.i, b.j, b.kept);
    const prev = sorted[n - 1];
    if (prev && prev.j > b.i) {
      throw new InvalidArgumentError('blocks', `(${prev.i}, ${prev.j}] and (${b.i}, ${b.j}] overlap`);
    }
    if (b.j > L) throw new InvalidArgumentError('blocks', `(${b.i}, ${b.j}] is past the chain's ${L} layers`);
  });
  const out = cloneModel(model);
  const emitted: EmittedBlock[] = [];
  for (const b of [...sorted].reverse()) {
    if (blockIsNoop(x, b)) continue;
    const input = x.layers[b.i]!.input;
    const replaced = replacedTensor(x, b.i, b.j);
    const merged = b.spec ?? mergeCandidate(x.chain, { i: b.i, j: b.j, kept: [...b.kept] });
    if (merged === null) {
      rewire(out, replaced, input);
      emitted.push({ i: b.i, j: b.j, tensor: input, replaced });
      continue;
    }
    validateConvSpec(merged, `blocks (${b.i}, ${b.j}].spec`);
    const reference = b.spec === undefined ? null : mergeCandidate(x.chain, { i: b.i, j: b.j, kept: [...b.kept] });
    if (reference !== null) {
      const same =
        reference.cin === merged.cin &&
        reference.cout === merged.cout &&
        reference.kh === merged.kh &&
        reference.kw === merged.kw &&
        reference.group === merged.group &&
        reference.stride.every((v, k) => v === merged.stride[k]) &&
        reference.pads.every((v, k) => v === merged.pads[k]) &&
        reference.dilation.every((v, k) => v === merged.dilation[k]);
      if (!same) throw new InvalidArgumentError(`blocks (${b.i}, ${b.j}].spec`, 'does not have the merged convolution\'s geometry');
    }
    const base = `strata/layermerge/${x.layers[b.i]!.id}-${x.layers[b.j - 1]!.id}`;
    const name = freshName(out, base);
    const weight = freshName(out, `${base}/weight`);
    const bias = freshName(out, `${base}/bias`);
    addInitializer(out, makeFloatTensor(weight, [merged.cout, merged.cin / merged.group, merged.kh, merged.kw], merged.weight));
    addInitializer(out, makeFloatTensor(bias, [merged.cout], merged.bias));
    const tensor = freshName(out, `${base}/output`);
    rewire(out, replaced, tensor);
    out.graph!.node!.push(convNode(name, input, tensor, weight, bias, merged));
    emitted.push({ i: b.i, j: b.j, tensor, replaced, node: name });
  }
  const { removedNodes, removedInitializers } = pruneDead(out);
  sortNodes(out);
  new GraphIndex(out.graph ?? {}).validate();
  return { model: out, blocks: emitted.reverse(), removedNodes, removedInitializers };
}
