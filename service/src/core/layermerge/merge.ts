/**
 * LayerMerge's merge math: turning a run of convolutions with no activation between them into one
 * convolution, and folding BatchNorm and residual skips into it.
 *
 * Composition (per spatial axis; first conv k1, s1, d1, pads p1; second k2, s2, d2, pads p2).
 * Substituting the first conv into the second gives
 *   z[q] = b2 + Σ W2·b1 + Σ_{c,v,u} W2[o,c,v] W1[c,i,u] x[s1·s2·q − (p1 + s1·p2) + s1·d2·v + d1·u]
 * so the merged conv has stride s1·s2, pads p1 + s1·p2 on each side, and taps at offsets
 * s1·d2·v + d1·u. With g the gcd of the tap steps that move (s1·d2 when k2 > 1, d1 when k1 > 1) the
 * taps sit on a grid of dilation g and the kernel spans ((k1−1)·d1 + (k2−1)·s1·d2)/g + 1 taps: k1 + k2 − 1
 * for two undilated stride-1 convs, k1 when the second is 1×1 (strides just multiply), and the
 * "dilated-kernel rule" (W2 upsampled by s1) when a strided conv is followed by a larger one. The output
 * size equals the sequence's for every input size (nested floors agree), so there is nothing to reject
 * on geometry; only mismatched channel counts are refused.
 *
 * Exactness. The formula assumes the intermediate map exists wherever the second conv reads it. The
 * merged conv pads x once, so at intermediate positions that the original filled with padding zeros it
 * instead sees what the first conv would have computed there (its bias plus the taps that still reach x).
 * Hence: outputs whose receptive field in the intermediate map stays inside the map are identical to the
 * original sequence (up to the float32 rounding of the merged weights); outputs that read intermediate
 * padding, a band along each border, may differ. `borderBand` gives that band's width per side; the merge
 * is exact everywhere iff no conv after the first pads (for instance 1×1 convs, or "valid" convs whose
 * padding was moved to the first conv).
 *
 * Everything is computed in float64 and rounded to float32 once, at the end.
 */
import { InvalidArgumentError, UnsupportedModelError } from '../errors.js';
import { type ConvShape, type ConvSpec, validateConvShape, validateConvSpec } from './conv.js';

/** Width, in output rows/columns, of the border region where a merged conv may differ from the sequence. */
export interface BorderBand {
  top: number;
  left: number;
  bottom: number;
  right: number;
}

export interface MergeExactness {
  /** True when the merged conv equals the original sequence at every output position. */
  exactEverywhere: boolean;
  band: BorderBand;
  reason: string;
}

export interface BatchNormParams {
  scale: ArrayLike<number>;
  bias: ArrayLike<number>;
  mean: ArrayLike<number>;
  var: ArrayLike<number>;
  epsilon: number;
}

/** A convolution whose values are kept in float64 while a merge is in progress. */
interface Conv64 extends ConvShape {
  weight: Float64Array;
  bias: Float64Array;
}

function gcd(a: number, b: number): number {
  let x = Math.abs(a);
  let y = Math.abs(b);
  while (y !== 0) {
    const t = x % y;
    x = y;
    y = t;
  }
  return x;
}

function to64(spec: ConvSpec): Conv64 {
  return {
    cin: spec.cin,
    cout: spec.cout,
    kh: spec.kh,
    kw: spec.kw,
    stride: [spec.stride[0], spec.stride[1]],
    pads: [spec.pads[0], spec.pads[1], spec.pads[2], spec.pads[3]],
    dilation: [spec.dilation[0], spec.dilation[1]],
    group: spec.group,
    weight: Float64Array.from(spec.weight),
    bias: Float64Array.from(spec.bias),
  };
}

function to32(c: Conv64): ConvSpec {
  return {
    cin: c.cin,
    cout: c.cout,
    kh: c.kh,
    kw: c.kw,
    stride: [c.stride[0], c.stride[1]],
    pads: [c.pads[0], c.pads[1], c.pads[2], c.pads[3]],
    dilation: [c.dilation[0], c.dilation[1]],
    group: c.group,
    weight: Float32Array.from(c.weight),
    bias: Float32Array.from(c.bias),
  };
}

interface AxisComposition {
  k: number;
  stride: number;
  dilation: number;
  /** merged-kernel index step per tap of the first / second conv */
  step1: number;
  step2: number;
}

function composeAxis(k1: number, s1: number, d1: number, k2: number, s2: number, d2: number): AxisComposition {
  const move1 = k1 > 1 ? d1 : 0;
  const move2 = k2 > 1 ? s1 * d2 : 0;
  const g = gcd(move1, move2) || 1;
  return {
    k: ((k1 - 1) * d1 + (k2 - 1) * s1 * d2) / g + 1,
    stride: s1 * s2,
    dilation: g,
    step1: d1 / g,
    step2: (s1 * d2) / g,
  };
}

/**
 * The geometry of `second ∘ first`. Groups merge to gcd(g1, g2): both contiguous groupings refine that
 * one, so the composition is block-diagonal with gcd(g1, g2) blocks (two depthwise convs stay depthwise,
 * depthwise then dense becomes dense).
 */
export function composeShapes(first: ConvShape, second: ConvShape): ConvShape {
  validateConvShape(first, 'first');
  validateConvShape(second, 'second');
  if (first.cout !== second.cin) {
    throw new InvalidArgumentError(
      'second',
      `expects ${second.cin} input channels but the first convolution produces ${first.cout}`,
    );
  }
  const h = composeAxis(first.kh, first.stride[0], first.dilation[0], second.kh, second.stride[0], second.dilation[0]);
  const w = composeAxis(first.kw, first.stride[1], first.dilation[1], second.kw, second.stride[1], second.dilation[1]);
  const [s1h, s1w] = first.stride;
  return {
    cin: first.cin,
    cout: second.cout,
    kh: h.k,
    kw: w.k,
    stride: [h.stride, w.stride],
    pads: [
      first.pads[0] + s1h * second.pads[0],
      first.pads[1] + s1w * second.pads[1],
      first.pads[2] + s1h * second.pads[2],
      first.pads[3] + s1w * second.pads[3],
    ],
    dilation: [h.dilation, w.dilation],
    group: gcd(first.group, second.group),
  };
}

function compose64(a: Conv64, b: Conv64): Conv64 {
  const shape = composeShapes(a, b);
  const ah = composeAxis(a.kh, a.stride[0], a.dilation[0], b.kh, b.stride[0], b.dilation[0]);
  const aw = composeAxis(a.kw, a.stride[1], a.dilation[1], b.kw, b.stride[1], b.dilation[1]);
  const { cin, cout, kh: K, kw: Kw, group: G } = shape;
  const weight = new Float64Array(cout * (cin / G) * K * Kw);
  const bias = new Float64Array(cout);
  const cinBg = b.cin / b.group;
  const coutBg = b.cout / b.group;
  const cinAg = a.cin / a.group;
  const coutAg = a.cout / a.group;
  const cinRg = cin / G;
  const coutRg = cout / G;
  const aTaps = a.kh * a.kw;
  const bTaps = b.kh * b.kw;
  // Where each (second tap, first tap) pair lands in the merged kernel, computed once.
  const land = new Int32Array(bTaps * aTaps);
  for (let vy = 0; vy < b.kh; vy++) {
    for (let vx = 0; vx < b.kw; vx++) {
      for (let uy = 0; uy < a.kh; uy++) {
        for (let ux = 0; ux < a.kw; ux++) {
          const ty = vy * ah.step2 + uy * ah.step1;
          const tx = vx * aw.step2 + ux * aw.step1;
          land[(vy * b.kw + vx) * aTaps + uy * a.kw + ux] = ty * Kw + tx;
        }
      }
    }
  }
  for (let o = 0; o < cout; o++) {
    const gb = Math.floor(o / coutBg);
    const gr = Math.floor(o / coutRg);
    let bo = b.bias[o]!;
    for (let lc = 0; lc < cinBg; lc++) {
      const c = gb * cinBg + lc;
      const ga = Math.floor(c / coutAg);
      const w2base = (o * cinBg + lc) * bTaps;
      let w2sum = 0;
      for (let v = 0; v < bTaps; v++) w2sum += b.weight[w2base + v]!;
      bo += w2sum * a.bias[c]!;
      for (let li = 0; li < cinAg; li++) {
        const ri = ga * cinAg + li - gr * cinRg;
        const w1base = (c * cinAg + li) * aTaps;
        const rbase = (o * cinRg + ri) * K * Kw;
        for (let v = 0; v < bTaps; v++) {
          const w2 = b.weight[w2base + v]!;
          if (w2 === 0) continue;
          const lbase = v * aTaps;
          for (let u = 0; u < aTaps; u++) {
            weight[rbase + land[lbase + u]!]! += w2 * a.weight[w1base + u]!;
          }
        }
      }
    }
    bias[o] = bo;
  }
  return { ...shape, weight, bias };
}

/** Re-expresses a conv with `group` g as one with G groups, G dividing g (zeros off the finer blocks). */
function regroup(c: Conv64, G: number): Conv64 {
  if (G === c.group) return c;
  const cinG = c.cin / c.group;
  const coutG = c.cout / c.group;
  const cinR = c.cin / G;
  const coutR = c.cout / G;
  const taps = c.kh * c.kw;
  const weight = new Float64Array(c.cout * cinR * taps);
  for (let o = 0; o < c.cout; o++) {
    const g = Math.floor(o / coutG);
    const gr = Math.floor(o / coutR);
    for (let li = 0; li < cinG; li++) {
      const ri = g * cinG + li - gr * cinR;
      const src = (o * cinG + li) * taps;
      const dst = (o * cinR + ri) * taps;
      for (let t = 0; t < taps; t++) weight[dst + t] = c.weight[src + t]!;
    }
  }
  return { ...c, group: G, weight, bias: Float64Array.from(c.bias) };
}

/** Merges a sequence of convs (no activation between them) into one; see the file comment for exactness. */
export function composeConvs(first: ConvSpec, second: ConvSpec): ConvSpec {
  return composeChain([first, second]);
}

/** Merges any number of convs, rounding to float32 only once at the end. */
export function composeChain(specs: readonly ConvSpec[]): ConvSpec {
  const first = specs[0];
  if (first === undefined) throw new InvalidArgumentError('specs', 'needs at least one convolution');
  specs.forEach((s, k) => validateConvSpec(s, `specs[${k}]`));
  let acc = to64(first);
  for (let k = 1; k < specs.length; k++) acc = compose64(acc, to64(specs[k]!));
  return to32(acc);
}

function zeroBand(): BorderBand {
  return { top: 0, left: 0, bottom: 0, right: 0 };
}

/**
 * How the band of possibly-different rows grows through one more conv. `band === null` means the
 * conv reads the block's real input, whose padding the merged conv reproduces exactly. Otherwise an
 * output q reads intermediate rows from s·q − p upward, so it touches the band or the padding iff
 * s·q − p < b, i.e. for the first ⌈(b + p)/s⌉ outputs. The far sides use the same bound; it is exact
 * for stride 1 and an upper bound otherwise (how many rows the floor drops depends on the input size).
 */
export function propagateBand(band: BorderBand | null, spec: ConvShape): BorderBand {
  if (band === null) return zeroBand();
  const [sh, sw] = spec.stride;
  return {
    top: Math.ceil((band.top + spec.pads[0]) / sh),
    left: Math.ceil((band.left + spec.pads[1]) / sw),
    bottom: Math.ceil((band.bottom + spec.pads[2]) / sh),
    right: Math.ceil((band.right + spec.pads[3]) / sw),
  };
}

export function maxBand(a: BorderBand, b: BorderBand): BorderBand {
  return {
    top: Math.max(a.top, b.top),
    left: Math.max(a.left, b.left),
    bottom: Math.max(a.bottom, b.bottom),
    right: Math.max(a.right, b.right),
  };
}

/** Band of a merged chain compared with running the chain with each conv's own zero padding. */
export function chainBorderBand(specs: readonly ConvShape[]): BorderBand {
  if (specs.length === 0) throw new InvalidArgumentError('specs', 'needs at least one convolution');
  let band: BorderBand | null = null;
  specs.forEach((s, k) => {
    validateConvShape(s, `specs[${k}]`);
    const prev = specs[k - 1];
    if (prev !== undefined && prev.cout !== s.cin) {
      throw new InvalidArgumentError(`specs[${k}]`, `expects ${s.cin} input channels, previous conv gives ${prev.cout}`);
    }
    band = propagateBand(band, s);
  });
  return band ?? zeroBand();
}

export function borderBand(first: ConvShape, second: ConvShape): BorderBand {
  return chainBorderBand([first, second]);
}

export function mergeExactness(specs: readonly ConvShape[]): MergeExactness {
  const band = chainBorderBand(specs);
  const exactEverywhere = band.top === 0 && band.left === 0 && band.bottom === 0 && band.right === 0;
  const padded = specs
    .map((s, k) => ({ k, pads: s.pads }))
    .filter(({ k, pads }) => k > 0 && pads.some((p) => p > 0))
    .map(({ k }) => k);
  const reason = exactEverywhere
    ? 'no convolution after the first pads its input, so the merged conv is exact at every output'
    : `convolution${padded.length > 1 ? 's' : ''} ${padded.join(', ')} zero-pad an intermediate map; ` +
      `outputs within ${band.top}/${band.left}/${band.bottom}/${band.right} (top/left/bottom/right) of the border may differ, ` +
      'the interior is exact';
  return { exactEverywhere, band, reason };
}

/** A centred conv reads input position s·q at its centre tap, so a 1×1 path with the same stride lines up. */
function requireCentred(spec: ConvShape, parameter: string, what: string): void {
  const axes: Array<[string, number, number, number, number]> = [
    ['height', spec.kh, spec.dilation[0], spec.pads[0], spec.pads[2]],
    ['width', spec.kw, spec.dilation[1], spec.pads[1], spec.pads[3]],
  ];
  for (const [axis, k, d, pb, pe] of axes) {
    if (k % 2 === 0) {
      throw new UnsupportedModelError(`${parameter}: cannot fold ${what}: even kernel ${k} along ${axis} has no centre tap`);
    }
    const half = (d * (k - 1)) / 2;
    if (pb !== half || pe !== half) {
      throw new UnsupportedModelError(
        `${parameter}: cannot fold ${what}: pads ${pb}/${pe} along ${axis} are not ${half} on both sides, ` +
          'so the centre tap does not line up with the skip path',
      );
    }
  }
}

function foldIdentity64(c: Conv64): Conv64 {
  if (c.cin !== c.cout) {
    throw new UnsupportedModelError(`cannot fold an identity skip into a conv with ${c.cin} inputs and ${c.cout} outputs`);
  }
  if (c.stride[0] !== 1 || c.stride[1] !== 1) {
    throw new UnsupportedModelError(`cannot fold an identity skip into a conv with stride ${c.stride.join('×')}`);
  }
  requireCentred(c, 'spec', 'an identity skip');
  const cinG = c.cin / c.group;
  const centre = ((c.kh - 1) / 2) * c.kw + (c.kw - 1) / 2;
  const taps = c.kh * c.kw;
  const weight = Float64Array.from(c.weight);
  for (let o = 0; o < c.cout; o++) {
    const li = o % cinG;
    weight[(o * cinG + li) * taps + centre]! += 1;
  }
  return { ...c, weight, bias: Float64Array.from(c.bias) };
}

function addProjection64(c: Conv64, p: Conv64): Conv64 {
  if (p.kh !== 1 || p.kw !== 1 || p.pads.some((v) => v !== 0) || p.dilation[0] !== 1 || p.dilation[1] !== 1) {
    throw new UnsupportedModelError('projection: only an unpadded 1×1 projection can be folded into the centre tap');
  }
  if (p.cin !== c.cin || p.cout !== c.cout) {
    throw new InvalidArgumentError(
      'projection',
      `maps ${p.cin}→${p.cout} channels but the convolution maps ${c.cin}→${c.cout}`,
    );
  }
  if (p.stride[0] !== c.stride[0] || p.stride[1] !== c.stride[1]) {
    throw new UnsupportedModelError(
      `projection: stride ${p.stride.join('×')} differs from the convolution's ${c.stride.join('×')}`,
    );
  }
  requireCentred(c, 'spec', 'a projection skip');
  const G = gcd(c.group, p.group);
  const cc = regroup(c, G);
  const pp = regroup(p, G);
  const cinR = c.cin / G;
  const taps = c.kh * c.kw;
  const centre = ((c.kh - 1) / 2) * c.kw + (c.kw - 1) / 2;
  const weight = cc === c ? Float64Array.from(cc.weight) : cc.weight;
  const bias = Float64Array.from(cc.bias);
  for (let o = 0; o < c.cout; o++) {
    for (let ri = 0; ri < cinR; ri++) weight[(o * cinR + ri) * taps + centre]! += pp.weight[o * cinR + ri]!;
    bias[o]! += pp.bias[o]!;
  }
  return { ...cc, weight, bias };
}

/**
 * x + conv(x) as one conv: 1 added at the centre tap of W[o, o]. Needs cin == cout, stride 1, odd kernel
 * and symmetric "same" padding d·(k−1)/2, which is what makes the centre tap read x at the output position.
 */
export function foldIdentitySkip(spec: ConvSpec): ConvSpec {
  validateConvSpec(spec, 'spec');
  return to32(foldIdentity64(to64(spec)));
}

/**
 * conv(x) + projection(x) as one conv, projection being an unpadded 1×1 conv (BatchNorm already folded)
 * with the same stride; its weights go to the centre tap and its bias to the bias. Needs an odd kernel and
 * symmetric "same" padding on the conv.
 */
export function foldProjectionSkip(spec: ConvSpec, projection: ConvSpec): ConvSpec {
  validateConvSpec(spec, 'spec');
  validateConvSpec(projection, 'projection');
  return to32(addProjection64(to64(spec), to64(projection)));
}

/** BN(conv(x)) as one conv: W′ = W·γ/√(σ²+ε), b′ = (b − μ)·γ/√(σ²+ε) + β. */
export function foldBatchNorm(spec: ConvSpec, bn: BatchNormParams): ConvSpec {
  validateConvSpec(spec, 'spec');
  for (const key of ['scale', 'bias', 'mean', 'var'] as const) {
    if (bn[key].length !== spec.cout) {
      throw new InvalidArgumentError(`bn.${key}`, `has ${bn[key].length} values, expected ${spec.cout}`);
    }
  }
  if (!Number.isFinite(bn.epsilon) || bn.epsilon < 0) {
    throw new InvalidArgumentError('bn.epsilon', `must be a finite non-negative number, got ${bn.epsilon}`);
  }
  const c = to64(spec);
  const per = c.weight.length / c.cout;
  for (let o = 0; o < c.cout; o++) {
    const denom = bn.var[o]! + bn.epsilon;
    if (!(denom > 0)) {
      throw new InvalidArgumentError('bn.var', `channel ${o}: var + epsilon must be positive, got ${denom}`);
    }
    const f = bn.scale[o]! / Math.sqrt(denom);
    for (let t = 0; t < per; t++) c.weight[o * per + t]! *= f;
    c.bias[o] = (c.bias[o]! - bn.mean[o]!) * f + bn.bias[o]!;
  }
  return to32(c);
}

/**
 * Steps a block merge is built from: kept convs in order, and residual blocks whose skip is folded
 * (their branch being again a list of steps, possibly empty when every branch conv was removed).
 */
export type MergeStep =
  | { kind: 'conv'; spec: ConvSpec }
  | { kind: 'residual'; skip: 'identity'; branch: MergeStep[] }
  | { kind: 'residual'; skip: 'projection'; projection: ConvSpec; branch: MergeStep[] };

function identity64(channels: number): Conv64 {
  const weight = new Float64Array(channels).fill(1);
  return {
    cin: channels,
    cout: channels,
    kh: 1,
    kw: 1,
    stride: [1, 1],
    pads: [0, 0, 0, 0],
    dilation: [1, 1],
    group: channels,
    weight,
    bias: new Float64Array(channels),
  };
}

function mergeSteps64(steps: readonly MergeStep[], channels: number): Conv64 | null {
  let acc: Conv64 | null = null;
  let ch = channels;
  for (const step of steps) {
    let next: Conv64;
    if (step.kind === 'conv') {
      validateConvSpec(step.spec, 'step');
      next = to64(step.spec);
    } else {
      const branch = mergeSteps64(step.branch, ch) ?? identity64(ch);
      if (step.skip === 'identity') {
        next = foldIdentity64(branch);
      } else {
        validateConvSpec(step.projection, 'projection');
        next = addProjection64(branch, to64(step.projection));
      }
    }
    acc = acc === null ? next : compose64(acc, next);
    ch = acc.cout;
  }
  return acc;
}

/**
 * Merges a block given as steps (see MergeStep) entering with `channels` channels; null when there is
 * nothing to merge (every conv removed and no skip to fold), i.e. the block is the identity.
 */
export function mergeSteps(steps: readonly MergeStep[], channels: number): ConvSpec | null {
  const merged = mergeSteps64(steps, channels);
  return merged === null ? null : to32(merged);
}

/** The border band of a merge built from steps, against running the steps with their own padding. */
export function stepsBorderBand(steps: readonly MergeStep[]): BorderBand {
  const walk = (list: readonly MergeStep[], start: BorderBand | null): BorderBand | null => {
    let band = start;
    for (const step of list) {
      if (step.kind === 'conv') {
        band = propagateBand(band, step.spec);
      } else {
        const branch = walk(step.branch, band);
        // A projection's bias makes its output non-zero where the merged conv sees padding, so it stops
        // being "the raw input" even when it reads the raw input exactly.
        const skip = step.skip === 'identity' ? band : propagateBand(band, step.projection);
        band = branch === null ? skip : skip === null ? branch : maxBand(branch, skip);
      }
    }
    return band;
  };
  return walk(steps, null) ?? zeroBand();
}
