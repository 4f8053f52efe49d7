/**
 * What a LayerMerge plan adds to plan.json: the blocks that tile the chain, with enough to check the
 * plan against the model it is applied to (the chain's layer ids) and, for refit blocks, the fitted
 * weights themselves, so that applying a plan needs neither the calibration data nor a solver.
 */
import { InvalidArgumentError } from '../errors.js';
import type { Candidate } from './chain.js';
import type { LayerMergeVariant } from './dp.js';

export interface PlanBlockWeights {
  /** cout × cin/group × kh × kw, little-endian float32, base64 */
  weight: string;
  /** cout, little-endian float32, base64 */
  bias: string;
}

/** One block (i, j] of the plan over chain positions; k = 0 when the block is the identity. */
export interface PlanBlock extends Pick<Candidate, 'i' | 'j' | 'k' | 'kh' | 'kw' | 'kept'> {
  /** their conv unit ids */
  keptIds: string[];
  /** conv unit ids replaced by identity */
  removedIds: string[];
  /** activation unit ids removed (inside the block) */
  removedActivations: string[];
  /** residual Adds folded into the merged conv */
  foldedSkips: string[];
  /** the block leaves the graph as it was */
  unchanged: boolean;
  latencyMs: number;
  importance: number;
  /** ‖y − y₀‖/‖y₀‖ of the block's output on the calibration data (exact merge, or refit when `refit`) */
  fidelity: number;
  refit: boolean;
  /** the refit's relative error on the calibration rows, before (exact merge) and after */
  fit?: { before: number; after: number; solver: 'cholesky' | 'cg' };
  weights?: PlanBlockWeights;
}

export interface LayerMergePlanSection {
  variant: LayerMergeVariant;
  quantumMs: number;
  /** latency of the network outside the blocks (see core/layermerge/tables.ts) */
  restMs: number;
  budgetMs: number;
  refit: boolean;
  maxKernel: number | null;
  /** conv unit ids of the chain, in order: a plan applies only to a model with this chain */
  chain: string[];
  blocks: PlanBlock[];
}

const VARIANTS: readonly LayerMergeVariant[] = ['layermerge', 'layer-only', 'merge-only'];

function isIntArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => Number.isInteger(x));
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/** Checks what applying a LayerMerge plan reads; `parameter` names the plan in messages. */
export function validateLayerMergeSection(value: unknown, parameter: string): LayerMergePlanSection {
  const s = value as Partial<LayerMergePlanSection> | null | undefined;
  if (!s || typeof s !== 'object') throw new InvalidArgumentError(parameter, 'a LayerMerge plan needs its "layermerge" section (variant, chain, blocks)');
  if (!VARIANTS.includes(s.variant as LayerMergeVariant)) throw new InvalidArgumentError(parameter, `layermerge.variant must be one of ${VARIANTS.join(', ')}`);
  if (!isStringArray(s.chain) || s.chain.length === 0) throw new InvalidArgumentError(parameter, 'layermerge.chain must list the chain\'s conv unit ids');
  if (!Array.isArray(s.blocks)) throw new InvalidArgumentError(parameter, 'layermerge.blocks must be a list');
  let at = 0;
  s.blocks.forEach((b: Partial<PlanBlock>, n) => {
    const where = `layermerge.blocks[${n}]`;
    if (!b || typeof b !== 'object' || !Number.isInteger(b.i) || !Number.isInteger(b.j) || !isIntArray(b.kept)) {
      throw new InvalidArgumentError(parameter, `${where} needs integer i, j and a list of kept layers`);
    }
    if (b.i !== at || b.j! <= b.i! || b.j! > s.chain!.length) {
      throw new InvalidArgumentError(parameter, `${where} is (${b.i}, ${b.j}]; blocks must tile positions 0..${s.chain!.length} in order`);
    }
    at = b.j!;
    if (b.weights !== undefined && (typeof b.weights.weight !== 'string' || typeof b.weights.bias !== 'string')) {
      throw new InvalidArgumentError(parameter, `${where}.weights must hold base64 "weight" and "bias"`);
    }
  });
  if (at !== s.chain.length) throw new InvalidArgumentError(parameter, `layermerge.blocks end at position ${at}, the chain has ${s.chain.length} layers`);
  return s as LayerMergePlanSection;
}
