/**
 * The network as LayerMerge sees it: a chain of convolutions with positions between them, plus
 * residual skips over stretches of the chain; and the enumeration of the blocks a plan may use.
 *
 * Positions. With L convolutions (layers[0..L−1]) there are positions 0..L: position p sits just before
 * layers[p] (p = 0 is the chain input, p = L its output). The activation at position p ≥ 1 is the one
 * after layers[p−1] (`activationAfter`). A block (i, j] covers layers i..j−1: the activations at
 * positions i+1..j−1 are removed, the one at j (if the original has one) stays.
 *
 * Residuals. A ResidualSpan {start: s, end: e} takes its skip from the input of layers[s] (position s)
 * and adds it to the output of layers[e−1] (position e, before that position's activation); its branch
 * is layers s..e−1. A block must lie inside the branch (s ≤ i, j ≤ e) or cover the whole residual block
 * (i ≤ s, e ≤ j; the skip is then folded into the merged kernel) or not touch it (j ≤ s or e ≤ i).
 *
 * Inside a block a subset C of the convs is kept and merged, the others are replaced by identity:
 * - a conv must be kept when it changes the shape (cin ≠ cout, stride > 1, or padding that changes the
 *   spatial size), since identity cannot stand in for it;
 * - strides: a block may extend past a strided conv only when every later conv in the block is 1×1 along
 *   the strided axis (the composition then stays exact and the merged kernel keeps the k formula below);
 *   a block with a larger kernel after a stride would need the dilated-kernel rule, which inflates the
 *   kernel by the stride, so such blocks are not offered;
 * - a kept conv inside a folded residual must be centred (odd kernel, symmetric "same" padding) so the
 *   skip lines up with its centre tap; a folded residual whose branch convs are all removed contributes
 *   x + x (it is still linear, and the merge reproduces it);
 * - a position where the map changes between two convs without a conv (pooling, a concat, …) or where a
 *   layer sets `barrierAfter` cannot lie inside a block.
 * Merged kernel size k = Σ_{c∈C} k_c − |C| + 1 (per axis, in taps of the merged dilation). Among subsets
 * giving the same merged conv (kernel, dilation, groups) the one with the largest Σ‖W‖₁ is kept, as in the
 * official LayerMerge tables; ties keep the subset that keeps earlier convs. The empty subset (k = 0, the
 * block becomes the identity) is offered only where the block's input and output shapes match and no
 * residual is folded (a folded skip would make it a scaling, not the identity).
 */
import { InvalidArgumentError } from '../errors.js';
import { type ConvShape, type ConvSpec, convOutputShape, isDepthwise, l1Norm, validateConvSpec } from './conv.js';
import { type BorderBand, type MergeStep, composeShapes, mergeSteps, stepsBorderBand } from './merge.js';

export interface ChainLayer {
  id: string;
  /** Shapes and kernel; the weights may be empty (shape-only), then every subset has Σ‖W‖₁ = 0. */
  spec: ConvSpec;
  inH: number;
  inW: number;
  /** An activation follows this conv in the original. */
  activationAfter: boolean;
  /** Something other than a linear chain sits after this conv; no block may span it. */
  barrierAfter?: boolean;
}

export interface ResidualSpan {
  /** Position the skip is taken from (input of layers[start]). */
  start: number;
  /** Position the skip is added at (output of layers[end − 1]). */
  end: number;
  skip: 'identity' | 'projection';
  /** The projection conv of a 'projection' skip, BatchNorm folded; may be shape-only for enumeration. */
  projection?: ConvSpec;
}

export interface Chain {
  layers: ChainLayer[];
  residuals: ResidualSpan[];
}

export interface Candidate {
  /** Block (i, j] over positions 0..L. */
  i: number;
  j: number;
  /** Merged kernel size (max of kh, kw; they are equal for square kernels); 0 for the identity. */
  k: number;
  kh: number;
  kw: number;
  /** Indices of the layers kept and merged, ascending. */
  kept: number[];
  /** Indices of the layers replaced by identity. */
  removed: number[];
  /** Every kept conv (and folded skip) is depthwise, so the merged conv is. */
  depthwise: boolean;
  /** No conv kept: the block is the identity. */
  identity: boolean;
  cin: number;
  cout: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  stride: [number, number];
  pads: [number, number, number, number];
  dilation: [number, number];
  group: number;
  /** Σ‖W‖₁ over the kept convs. */
  l1: number;
  /** Indices into chain.residuals of the skips folded into the merged conv. */
  foldedResiduals: number[];
  /** Positions strictly inside the block whose activation the block removes. */
  removedActivations: number[];
  /** The original has an activation at position j, which the block keeps. */
  activationAtEnd: boolean;
  /** Where the merged conv may differ from the kept convs run with their own zero padding. */
  band: BorderBand;
  exactEverywhere: boolean;
}

export interface EnumerateOptions {
  /** Largest merged kernel (taps per axis) offered; default unbounded. */
  maxKernel?: number;
  /** Offer the empty subset where it is valid; default true. */
  allowIdentity?: boolean;
}

interface Shape {
  c: number;
  h: number;
  w: number;
}

interface ChainInfo {
  L: number;
  inShape: Shape[];
  outShape: Shape[];
  /** barrier[p] for positions 1..L−1 */
  barrier: boolean[];
  removable: boolean[];
  centred: boolean[];
  l1: number[];
}

function sameShape(a: Shape, b: Shape): boolean {
  return a.c === b.c && a.h === b.h && a.w === b.w;
}

function isCentred(spec: ConvSpec): boolean {
  return (
    spec.kh % 2 === 1 &&
    spec.kw % 2 === 1 &&
    spec.pads[0] === (spec.dilation[0] * (spec.kh - 1)) / 2 &&
    spec.pads[2] === spec.pads[0] &&
    spec.pads[1] === (spec.dilation[1] * (spec.kw - 1)) / 2 &&
    spec.pads[3] === spec.pads[1]
  );
}

function analyseChain(chain: Chain): ChainInfo {
  const L = chain.layers.length;
  if (L === 0) throw new InvalidArgumentError('chain.layers', 'needs at least one convolution');
  const ids = new Set<string>();
  const inShape: Shape[] = [];
  const outShape: Shape[] = [];
  const removable: boolean[] = [];
  const centred: boolean[] = [];
  const l1: number[] = [];
  chain.layers.forEach((layer, m) => {
    const where = `chain.layers[${m}]`;
    if (ids.has(layer.id)) throw new InvalidArgumentError(where, `duplicate id '${layer.id}'`);
    ids.add(layer.id);
    validateConvSpec(layer.spec, `${where}.spec`, { shapeOnly: true });
    for (const [name, v] of [
      ['inH', layer.inH],
      ['inW', layer.inW],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`${where}.${name}`, `must be a positive integer, got ${v}`);
    }
    const out = convOutputShape(layer.spec, layer.inH, layer.inW);
    if (out.h < 1 || out.w < 1) {
      throw new InvalidArgumentError(where, `kernel does not fit its ${layer.inH}×${layer.inW} input`);
    }
    const sIn = { c: layer.spec.cin, h: layer.inH, w: layer.inW };
    const sOut = { c: layer.spec.cout, h: out.h, w: out.w };
    inShape.push(sIn);
    outShape.push(sOut);
    removable.push(sameShape(sIn, sOut) && layer.spec.stride[0] === 1 && layer.spec.stride[1] === 1);
    centred.push(isCentred(layer.spec));
    l1.push(l1Norm(layer.spec));
  });
  const barrier: boolean[] = [false];
  for (let p = 1; p < L; p++) {
    barrier.push(chain.layers[p - 1]!.barrierAfter === true || !sameShape(outShape[p - 1]!, inShape[p]!));
  }
  barrier.push(false);

  chain.residuals.forEach((r, n) => {
    const where = `chain.residuals[${n}]`;
    if (!Number.isInteger(r.start) || !Number.isInteger(r.end) || r.start < 0 || r.end > L || r.start >= r.end) {
      throw new InvalidArgumentError(where, `needs integer positions 0 ≤ start < end ≤ ${L}, got (${r.start}, ${r.end}]`);
    }
    const from = inShape[r.start]!;
    const to = outShape[r.end - 1]!;
    if (r.skip === 'identity') {
      if (!sameShape(from, to)) {
        throw new InvalidArgumentError(
          where,
          `identity skip joins ${from.c}×${from.h}×${from.w} to ${to.c}×${to.h}×${to.w}; the shapes must match`,
        );
      }
    } else {
      const p = r.projection;
      if (p === undefined) throw new InvalidArgumentError(where, 'a projection skip needs its projection conv');
      validateConvSpec(p, `${where}.projection`, { shapeOnly: true });
      const po = convOutputShape(p, from.h, from.w);
      if (p.cin !== from.c || p.cout !== to.c || po.h !== to.h || po.w !== to.w) {
        throw new InvalidArgumentError(
          where,
          `projection maps ${p.cin}×${from.h}×${from.w} to ${p.cout}×${po.h}×${po.w}, the branch to ${to.c}×${to.h}×${to.w}`,
        );
      }
    }
    chain.residuals.forEach((q, k) => {
      if (k <= n) return;
      const nested = (r.start <= q.start && q.end <= r.end) || (q.start <= r.start && r.end <= q.end);
      const disjoint = r.end <= q.start || q.end <= r.start;
      if (r.start === q.start && r.end === q.end) {
        throw new InvalidArgumentError(where, `duplicates chain.residuals[${k}]`);
      }
      if (!nested && !disjoint) {
        throw new InvalidArgumentError(where, `partially overlaps chain.residuals[${k}]; skips must nest or be disjoint`);
      }
    });
  });
  return { L, inShape, outShape, barrier, removable, centred, l1 };
}

/** Which residuals a block folds, or null when the block cuts through one (or spans a barrier). */
function coveredResiduals(chain: Chain, info: ChainInfo, i: number, j: number): number[] | null {
  for (let p = i + 1; p < j; p++) if (info.barrier[p]) return null;
  const covered: number[] = [];
  for (let n = 0; n < chain.residuals.length; n++) {
    const r = chain.residuals[n]!;
    if (j <= r.start || r.end <= i) continue;
    if (i <= r.start && r.end <= j) covered.push(n);
    else if (!(r.start <= i && j <= r.end)) return null;
  }
  return covered;
}

/** The stride rule: after a conv strided along an axis, later convs of the block are 1×1 along it. */
function strideRuleHolds(chain: Chain, i: number, j: number): boolean {
  let stridedH = false;
  let stridedW = false;
  for (let m = i; m < j; m++) {
    const s = chain.layers[m]!.spec;
    if ((stridedH && s.kh > 1) || (stridedW && s.kw > 1)) return false;
    stridedH ||= s.stride[0] > 1;
    stridedW ||= s.stride[1] > 1;
  }
  return true;
}

function gcd(a: number, b: number): number {
  let x = a;
  let y = b;
  while (y !== 0) {
    const t = x % y;
    x = y;
    y = t;
  }
  return x;
}

interface SubsetState {
  extH: number;
  extW: number;
  /** gcd of the dilations of kept convs wider than 1 along each axis (0: none yet) */
  dilH: number;
  dilW: number;
  group: number;
  l1: number;
  kept: number[];
}

/**
 * Steps (kept convs and folded residuals) of a block with the given kept set, for merging or for the
 * border band. Covered residuals are found outermost first so nested ones end up inside their parent.
 */
export function blockSteps(chain: Chain, i: number, j: number, kept: readonly number[]): MergeStep[] {
  const keep = new Set(kept);
  const build = (from: number, to: number, exclude: number | null): MergeStep[] => {
    const steps: MergeStep[] = [];
    let m = from;
    while (m < to) {
      let outer: number | null = null;
      chain.residuals.forEach((r, n) => {
        if (n === exclude || r.start !== m || r.end > to || r.end > j || r.start < i) return;
        if (outer === null || r.end > chain.residuals[outer]!.end) outer = n;
      });
      if (outer !== null) {
        const r: ResidualSpan = chain.residuals[outer]!;
        const branch = build(r.start, r.end, outer);
        if (r.skip === 'identity') {
          steps.push({ kind: 'residual', skip: 'identity', branch });
        } else {
          if (r.projection === undefined) throw new InvalidArgumentError(`chain.residuals[${outer}]`, 'missing projection');
          steps.push({ kind: 'residual', skip: 'projection', projection: r.projection, branch });
        }
        m = r.end;
        continue;
      }
      if (keep.has(m)) steps.push({ kind: 'conv', spec: chain.layers[m]!.spec });
      m++;
    }
    return steps;
  };
  return build(i, j, null);
}

/**
 * Every block (i, j] a plan may use, with one candidate per distinct merged conv, following the rules in
 * the file comment. Ordered by i, then j, then k.
 */
export function enumerateCandidates(chain: Chain, options: EnumerateOptions = {}): Candidate[] {
  const maxKernel = options.maxKernel ?? Infinity;
  if (!(maxKernel >= 1)) throw new InvalidArgumentError('maxKernel', `must be at least 1, got ${maxKernel}`);
  const allowIdentity = options.allowIdentity ?? true;
  const info = analyseChain(chain);
  const out: Candidate[] = [];

  for (let i = 0; i < info.L; i++) {
    for (let j = i + 1; j <= info.L; j++) {
      const covered = coveredResiduals(chain, info, i, j);
      if (covered === null || !strideRuleHolds(chain, i, j)) continue;
      const inCovered = new Array<boolean>(j - i).fill(false);
      let projGroup = 0;
      let foldable = true;
      for (const n of covered) {
        const r = chain.residuals[n]!;
        for (let m = r.start; m < r.end; m++) inCovered[m - i] = true;
        if (r.skip === 'projection') {
          const p = r.projection!;
          projGroup = gcd(projGroup, p.group);
          // A folded projection adds at the centre tap, which needs the branch stride to be the projection's.
          let sh = 1;
          let sw = 1;
          for (let m = r.start; m < r.end; m++) {
            sh *= chain.layers[m]!.spec.stride[0];
            sw *= chain.layers[m]!.spec.stride[1];
          }
          if (sh !== p.stride[0] || sw !== p.stride[1] || p.kh !== 1 || p.kw !== 1 || p.pads.some((v) => v > 0)) {
            foldable = false;
          }
        }
      }
      if (!foldable) continue;

      let states = new Map<string, SubsetState>([
        ['0,0,0,0,0', { extH: 0, extW: 0, dilH: 0, dilW: 0, group: 0, l1: 0, kept: [] }],
      ]);
      for (let m = i; m < j; m++) {
        const s = chain.layers[m]!.spec;
        const canKeep = !inCovered[m - i] || info.centred[m]!;
        const canRemove = info.removable[m]!;
        const next = new Map<string, SubsetState>();
        const offer = (st: SubsetState): void => {
          const key = `${st.extH},${st.extW},${st.dilH},${st.dilW},${st.group}`;
          const have = next.get(key);
          if (have === undefined || st.l1 > have.l1) next.set(key, st);
        };
        for (const st of states.values()) {
          if (canKeep) {
            const extH = st.extH + (s.kh > 1 ? s.dilation[0] * (s.kh - 1) : 0);
            const extW = st.extW + (s.kw > 1 ? s.dilation[1] * (s.kw - 1) : 0);
            const dilH = s.kh > 1 ? gcd(st.dilH, s.dilation[0]) : st.dilH;
            const dilW = s.kw > 1 ? gcd(st.dilW, s.dilation[1]) : st.dilW;
            const kh = extH / (dilH || 1) + 1;
            const kw = extW / (dilW || 1) + 1;
            if (kh <= maxKernel && kw <= maxKernel) {
              offer({ extH, extW, dilH, dilW, group: gcd(st.group, s.group), l1: st.l1 + info.l1[m]!, kept: [...st.kept, m] });
            }
          }
          if (canRemove) offer(st);
        }
        states = next;
        if (states.size === 0) break;
      }

      const inS = info.inShape[i]!;
      const outS = info.outShape[j - 1]!;
      const removedActivations: number[] = [];
      for (let p = i + 1; p < j; p++) if (chain.layers[p - 1]!.activationAfter) removedActivations.push(p);
      const activationAtEnd = chain.layers[j - 1]!.activationAfter;

      const best = new Map<string, Candidate>();
      for (const st of states.values()) {
        const keptSet = new Set(st.kept);
        const removed: number[] = [];
        for (let m = i; m < j; m++) if (!keptSet.has(m)) removed.push(m);
        const base = { i, j, kept: st.kept, removed, removedActivations, activationAtEnd, l1: st.l1, foldedResiduals: covered };
        let cand: Candidate;
        if (st.kept.length === 0) {
          if (!allowIdentity || covered.length > 0 || !sameShape(inS, outS)) continue;
          cand = {
            ...base,
            k: 0,
            kh: 0,
            kw: 0,
            depthwise: false,
            identity: true,
            cin: inS.c,
            cout: outS.c,
            inH: inS.h,
            inW: inS.w,
            outH: outS.h,
            outW: outS.w,
            stride: [1, 1],
            pads: [0, 0, 0, 0],
            dilation: [1, 1],
            group: inS.c,
            band: { top: 0, left: 0, bottom: 0, right: 0 },
            exactEverywhere: true,
          };
        } else {
          let shape: ConvShape = chain.layers[st.kept[0]!]!.spec;
          for (let n = 1; n < st.kept.length; n++) shape = composeShapes(shape, chain.layers[st.kept[n]!]!.spec);
          const group = projGroup === 0 ? shape.group : gcd(shape.group, projGroup);
          const merged = { ...shape, group };
          const outHW = convOutputShape(merged, inS.h, inS.w);
          const band = stepsBorderBand(blockSteps(chain, i, j, st.kept));
          cand = {
            ...base,
            k: Math.max(merged.kh, merged.kw),
            kh: merged.kh,
            kw: merged.kw,
            depthwise: isDepthwise(merged),
            identity: false,
            cin: merged.cin,
            cout: merged.cout,
            inH: inS.h,
            inW: inS.w,
            outH: outHW.h,
            outW: outHW.w,
            stride: merged.stride,
            pads: merged.pads,
            dilation: merged.dilation,
            group,
            band,
            exactEverywhere: band.top === 0 && band.left === 0 && band.bottom === 0 && band.right === 0,
          };
        }
        const key = `${cand.kh}x${cand.kw}/${cand.dilation.join('x')}/${cand.group}`;
        const have = best.get(key);
        if (have === undefined || cand.l1 > have.l1) best.set(key, cand);
      }
      const list = [...best.values()].sort((a, b) => a.k - b.k || a.kh - b.kh || a.group - b.group);
      out.push(...list);
    }
  }
  return out;
}

/**
 * The merged convolution for a candidate (null for the identity), built from the chain's weights:
 * kept convs composed in float64, residual skips folded, rounded to float32 once.
 */
export function mergeCandidate(chain: Chain, candidate: Pick<Candidate, 'i' | 'j' | 'kept'>): ConvSpec | null {
  const { i, j, kept } = candidate;
  if (!Number.isInteger(i) || !Number.isInteger(j) || i < 0 || j > chain.layers.length || i >= j) {
    throw new InvalidArgumentError('candidate', `block (${i}, ${j}] is outside the chain`);
  }
  for (const m of kept) {
    if (!(m >= i && m < j)) throw new InvalidArgumentError('candidate.kept', `layer ${m} is not in block (${i}, ${j}]`);
  }
  return mergeSteps(blockSteps(chain, i, j, kept), chain.layers[i]!.spec.cin);
}

/**
 * Checks that (i, j] with `kept` is a block the rules in the file comment allow (any kept subset, not
 * only the one enumerateCandidates prefers), so that applying it to a graph cannot cut through a skip,
 * drop a conv that changes the shape, or merge past a stride. Returns the residuals it folds.
 */
export function checkBlock(chain: Chain, i: number, j: number, kept: readonly number[]): number[] {
  const info = analyseChain(chain);
  const where = `block (${i}, ${j}]`;
  if (!Number.isInteger(i) || !Number.isInteger(j) || i < 0 || j > info.L || i >= j) {
    throw new InvalidArgumentError(where, `must satisfy 0 ≤ i < j ≤ ${info.L}`);
  }
  const keep = new Set(kept);
  for (const m of keep) {
    if (!Number.isInteger(m) || m < i || m >= j) throw new InvalidArgumentError(where, `kept layer ${m} is outside the block`);
  }
  const covered = coveredResiduals(chain, info, i, j);
  if (covered === null) throw new InvalidArgumentError(where, 'spans a barrier or cuts through a residual skip');
  if (!strideRuleHolds(chain, i, j)) throw new InvalidArgumentError(where, 'a conv wider than 1×1 follows a strided conv inside it');
  const inCovered = new Set<number>();
  for (const n of covered) {
    const r = chain.residuals[n]!;
    for (let m = r.start; m < r.end; m++) inCovered.add(m);
  }
  for (let m = i; m < j; m++) {
    if (!keep.has(m) && !info.removable[m]) {
      throw new InvalidArgumentError(where, `layer ${chain.layers[m]!.id} changes the shape and must be kept`);
    }
    if (keep.has(m) && inCovered.has(m) && !info.centred[m]) {
      throw new InvalidArgumentError(where, `layer ${chain.layers[m]!.id} is not centred, so a skip cannot be folded over it`);
    }
  }
  if (keep.size === 0 && covered.length > 0) {
    throw new InvalidArgumentError(where, 'removes every conv under a skip; the folded block would scale its input, not pass it through');
  }
  return covered;
}
