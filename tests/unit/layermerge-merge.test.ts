import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ConvSpec, conv2dReference, convOutputShape } from '../../service/src/core/layermerge/conv.js';
import {
  type BorderBand,
  type MergeStep,
  borderBand,
  chainBorderBand,
  composeChain,
  composeConvs,
  foldBatchNorm,
  foldIdentitySkip,
  foldProjectionSkip,
  mergeExactness,
} from '../../service/src/core/layermerge/merge.js';
import {
  type Chain,
  type ChainLayer,
  blockSteps,
  enumerateCandidates,
  mergeCandidate,
} from '../../service/src/core/layermerge/chain.js';
import { InvalidArgumentError, UnsupportedModelError } from '../../service/src/core/errors.js';
import { rng } from '../helpers/random.js';

// ---- deterministic random data -------------------------------------------------------------------


/**
 * 'dyadic' values are small multiples of 1/8: every product and sum in these tests is then exact in
 * float64 and every merged weight is exact in float32, so merged and original must agree bit for bit.
 * 'float' values are arbitrary float32 numbers: the merged weights are rounded to float32 once, and the
 * tests allow exactly that rounding (see tolerance()).
 */
type Values = 'dyadic' | 'float';

function draw(random: () => number, values: Values, scale = 1): number {
  if (values === 'dyadic') return (Math.floor(random() * 17) - 8) / 8;
  return Math.fround((random() * 2 - 1) * scale);
}

interface ConvOpts {
  cin: number;
  cout: number;
  k: number | [number, number];
  stride?: [number, number];
  pads?: [number, number, number, number];
  dilation?: [number, number];
  group?: number;
}

function randomConv(random: () => number, values: Values, o: ConvOpts): ConvSpec {
  const [kh, kw] = typeof o.k === 'number' ? [o.k, o.k] : o.k;
  const group = o.group ?? 1;
  const weight = new Float32Array(o.cout * (o.cin / group) * kh * kw);
  for (let n = 0; n < weight.length; n++) weight[n] = draw(random, values);
  const bias = new Float32Array(o.cout);
  for (let n = 0; n < bias.length; n++) bias[n] = draw(random, values);
  return {
    cin: o.cin,
    cout: o.cout,
    kh,
    kw,
    stride: o.stride ?? [1, 1],
    pads: o.pads ?? [0, 0, 0, 0],
    dilation: o.dilation ?? [1, 1],
    group,
    weight,
    bias,
  };
}

function randomInput(random: () => number, values: Values, count: number): Float64Array {
  const x = new Float64Array(count);
  for (let n = 0; n < count; n++) x[n] = values === 'dyadic' ? (Math.floor(random() * 17) - 8) / 4 : random() * 2 - 1;
  return x;
}

function withPads(spec: ConvSpec, pads: [number, number, number, number]): ConvSpec {
  return { ...spec, pads };
}

function absConv(spec: ConvSpec): ConvSpec {
  return { ...spec, weight: spec.weight.map(Math.abs), bias: spec.bias.map(Math.abs) };
}

interface Map4 {
  data: Float64Array;
  n: number;
  c: number;
  h: number;
  w: number;
}

function run(x: Map4, spec: ConvSpec): Map4 {
  return conv2dReference(x.data, x.n, x.c, x.h, x.w, spec);
}

function runChain(x: Map4, specs: readonly ConvSpec[]): Map4 {
  return specs.reduce(run, x);
}

function add(a: Map4, b: Map4): Map4 {
  assert.deepEqual([a.n, a.c, a.h, a.w], [b.n, b.c, b.h, b.w]);
  return { ...a, data: a.data.map((v, n) => v + b.data[n]!) };
}

function absMap(x: Map4): Map4 {
  return { ...x, data: x.data.map(Math.abs) };
}

/**
 * Allowed |merged − original| per output for float32 weights: rounding each merged weight to float32
 * moves it by at most 2⁻²⁴ of itself, so the output moves by at most 2⁻²⁴·(|W|⋆|x| + |b|); 1e-12 of the
 * original's absolute scale covers float64 summation order.
 */
function tolerance(mergedAbs: Map4, originalAbs: Map4): Float64Array {
  return mergedAbs.data.map((v, n) => 2 ** -24 * v + 1e-12 * originalAbs.data[n]! + 1e-300);
}

interface Comparison {
  /** largest |difference| outside the band, over the allowed tolerance there */
  worstOutsideRatio: number;
  /** rows/columns of the band (per side) that contain a difference above tolerance */
  differingBandLines: BorderBand;
  maxBandDiff: number;
  maxAbsOutput: number;
}

function inBand(y: number, x: number, h: number, w: number, band: BorderBand): boolean {
  return y < band.top || x < band.left || y >= h - band.bottom || x >= w - band.right;
}

function compare(original: Map4, merged: Map4, tol: Float64Array, band: BorderBand): Comparison {
  assert.deepEqual([merged.n, merged.c, merged.h, merged.w], [original.n, original.c, original.h, original.w], 'output shape');
  let worstOutsideRatio = 0;
  let maxBandDiff = 0;
  let maxAbsOutput = 0;
  const rowsTop = new Set<number>();
  const rowsBottom = new Set<number>();
  const colsLeft = new Set<number>();
  const colsRight = new Set<number>();
  const { n, c, h, w } = original;
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const at = ((b * c + ch) * h + y) * w + x;
          const d = Math.abs(merged.data[at]! - original.data[at]!);
          maxAbsOutput = Math.max(maxAbsOutput, Math.abs(original.data[at]!));
          if (inBand(y, x, h, w, band)) {
            maxBandDiff = Math.max(maxBandDiff, d);
            if (d > tol[at]!) {
              if (y < band.top) rowsTop.add(y);
              if (y >= h - band.bottom) rowsBottom.add(y);
              if (x < band.left) colsLeft.add(x);
              if (x >= w - band.right) colsRight.add(x);
            }
          } else {
            // d / 0 would be NaN for d = 0, and Math.max would then swallow every later ratio.
            worstOutsideRatio = Math.max(worstOutsideRatio, d === 0 ? 0 : d / tol[at]!);
          }
        }
      }
    }
  }
  return {
    worstOutsideRatio,
    differingBandLines: { top: rowsTop.size, left: colsLeft.size, bottom: rowsBottom.size, right: colsRight.size },
    maxBandDiff,
    maxAbsOutput,
  };
}

const NO_BAND: BorderBand = { top: 0, left: 0, bottom: 0, right: 0 };

/**
 * Runs `specs` in sequence (each with its own zero padding) and the merged conv, and checks: outside
 * `band` the two agree (bit for bit for dyadic values, within tolerance() for float values); inside the
 * band, when `tightBand`, every band row and column holds a real difference, so the band is not wider
 * than needed.
 */
function checkMerge(
  specs: readonly ConvSpec[],
  merged: ConvSpec,
  input: { n: number; h: number; w: number },
  random: () => number,
  values: Values,
  band: BorderBand,
  tightBand = false,
): Comparison {
  const c = specs[0]!.cin;
  const x: Map4 = { data: randomInput(random, values, input.n * c * input.h * input.w), n: input.n, c, h: input.h, w: input.w };
  const original = runChain(x, specs);
  const out = run(x, merged);
  const tol =
    values === 'dyadic'
      ? new Float64Array(original.data.length) // exact arithmetic: no difference allowed at all
      : tolerance(run(absMap(x), absConv(merged)), runChain(absMap(x), specs.map(absConv)));
  const cmp = compare(original, out, tol, band);
  assert.ok(
    values === 'dyadic' ? cmp.worstOutsideRatio === 0 : cmp.worstOutsideRatio <= 1,
    `outside the band the merged conv must match (worst ratio to tolerance ${cmp.worstOutsideRatio})`,
  );
  if (tightBand) assert.deepEqual(cmp.differingBandLines, band, 'every line of the band should actually differ');
  return cmp;
}

/** The sequence with all intermediate padding moved to the first conv (scaled by its stride). */
function padsMovedToFirst(first: ConvSpec, second: ConvSpec): [ConvSpec, ConvSpec] {
  const [sh, sw] = first.stride;
  const p = first.pads;
  const q = second.pads;
  return [withPads(first, [p[0] + sh * q[0], p[1] + sw * q[1], p[2] + sh * q[2], p[3] + sw * q[3]]), withPads(second, [0, 0, 0, 0])];
}

// ---- the reference itself ------------------------------------------------------------------------

/** An independent conv: pad into an explicit bigger array first, then slide without bounds checks. */
function paddedArrayConv(x: Map4, s: ConvSpec): Map4 {
  const [pt, pl, pb, pr] = s.pads;
  const H = x.h + pt + pb;
  const W = x.w + pl + pr;
  const padded = new Float64Array(x.n * x.c * H * W);
  for (let b = 0; b < x.n; b++)
    for (let ch = 0; ch < x.c; ch++)
      for (let y = 0; y < x.h; y++)
        for (let xx = 0; xx < x.w; xx++)
          padded[((b * x.c + ch) * H + y + pt) * W + xx + pl] = x.data[((b * x.c + ch) * x.h + y) * x.w + xx]!;
  const oh = Math.floor((H - s.dilation[0] * (s.kh - 1) - 1) / s.stride[0]) + 1;
  const ow = Math.floor((W - s.dilation[1] * (s.kw - 1) - 1) / s.stride[1]) + 1;
  const out = new Float64Array(x.n * s.cout * oh * ow);
  const cinG = s.cin / s.group;
  const coutG = s.cout / s.group;
  for (let b = 0; b < x.n; b++)
    for (let o = 0; o < s.cout; o++)
      for (let y = 0; y < oh; y++)
        for (let xx = 0; xx < ow; xx++) {
          let acc = s.bias[o]!;
          for (let ic = 0; ic < cinG; ic++)
            for (let ky = 0; ky < s.kh; ky++)
              for (let kx = 0; kx < s.kw; kx++) {
                const ci = Math.floor(o / coutG) * cinG + ic;
                const v = padded[((b * x.c + ci) * H + y * s.stride[0] + ky * s.dilation[0]) * W + xx * s.stride[1] + kx * s.dilation[1]]!;
                acc += s.weight[((o * cinG + ic) * s.kh + ky) * s.kw + kx]! * v;
              }
          out[((b * s.cout + o) * oh + y) * ow + xx] = acc;
        }
  return { data: out, n: x.n, c: s.cout, h: oh, w: ow };
}

test('conv2dReference: a hand-computed 3×3 example', () => {
  const spec: ConvSpec = {
    cin: 1,
    cout: 1,
    kh: 3,
    kw: 3,
    stride: [1, 1],
    pads: [1, 1, 1, 1],
    dilation: [1, 1],
    group: 1,
    weight: Float32Array.from([0, 1, 0, 1, 1, 1, 0, 1, 0]),
    bias: Float32Array.from([0.5]),
  };
  // 2×2 input [[1,2],[3,4]]: each output = itself + its 4-neighbours inside the map + 0.5.
  const y = conv2dReference(Float64Array.from([1, 2, 3, 4]), 1, 1, 2, 2, spec);
  assert.deepEqual([y.c, y.h, y.w], [1, 2, 2]);
  assert.deepEqual(Array.from(y.data), [1 + 2 + 3 + 0.5, 2 + 1 + 4 + 0.5, 3 + 1 + 4 + 0.5, 4 + 2 + 3 + 0.5]);
});

test('conv2dReference agrees with an explicitly padded convolution (groups, strides, dilation, asymmetric pads)', () => {
  const random = rng(11);
  const cases: ConvOpts[] = [
    { cin: 4, cout: 6, k: 3, pads: [1, 1, 1, 1] },
    { cin: 4, cout: 6, k: [3, 2], stride: [2, 1], pads: [0, 1, 2, 0], group: 2 },
    { cin: 3, cout: 3, k: 3, dilation: [2, 1], pads: [2, 1, 1, 0], group: 3 },
    { cin: 2, cout: 4, k: 1, stride: [2, 3] },
  ];
  for (const o of cases) {
    const s = randomConv(random, 'float', o);
    const x: Map4 = { data: randomInput(random, 'float', 2 * o.cin * 7 * 8), n: 2, c: o.cin, h: 7, w: 8 };
    const a = run(x, s);
    const b = paddedArrayConv(x, s);
    assert.deepEqual([a.c, a.h, a.w], [b.c, b.h, b.w]);
    a.data.forEach((v, n) => assert.ok(Math.abs(v - b.data[n]!) <= 1e-12 * (1 + Math.abs(v)), `${v} vs ${b.data[n]}`));
  }
});

test('conv2dReference rejects mismatched inputs', () => {
  const s = randomConv(rng(1), 'float', { cin: 2, cout: 2, k: 3 });
  assert.throws(() => conv2dReference(new Float64Array(2 * 4 * 4), 1, 3, 4, 4, s), InvalidArgumentError);
  assert.throws(() => conv2dReference(new Float64Array(7), 1, 2, 2, 2, s), InvalidArgumentError);
  assert.throws(() => conv2dReference(new Float64Array(2 * 2 * 2), 1, 2, 2, 2, s), InvalidArgumentError); // 3×3 on 2×2
});

// ---- composition geometry ------------------------------------------------------------------------

test('composeConvs geometry: k1 + k2 − 1, strides multiply, pads p1 + s1·p2, dilated-kernel rule', () => {
  const r = rng(2);
  const c33 = composeConvs(
    randomConv(r, 'float', { cin: 2, cout: 3, k: 3, pads: [1, 1, 1, 1] }),
    randomConv(r, 'float', { cin: 3, cout: 4, k: 3, pads: [1, 1, 1, 1] }),
  );
  assert.deepEqual([c33.kh, c33.kw, c33.stride, c33.pads, c33.dilation, c33.cin, c33.cout], [5, 5, [1, 1], [2, 2, 2, 2], [1, 1], 2, 4]);

  const s2then1 = composeConvs(
    randomConv(r, 'float', { cin: 2, cout: 3, k: 3, stride: [2, 2], pads: [1, 1, 1, 1] }),
    randomConv(r, 'float', { cin: 3, cout: 4, k: 1 }),
  );
  assert.deepEqual([s2then1.kh, s2then1.stride, s2then1.pads], [3, [2, 2], [1, 1, 1, 1]]);

  // Strided 3×3 then 3×3: taps at 2·v + u, a 7-tap kernel (3 + 2·(3 − 1)).
  const s2then3 = composeConvs(
    randomConv(r, 'float', { cin: 2, cout: 3, k: 3, stride: [2, 2], pads: [1, 1, 1, 1] }),
    randomConv(r, 'float', { cin: 3, cout: 2, k: 3, pads: [1, 1, 1, 1] }),
  );
  assert.deepEqual([s2then3.kh, s2then3.stride, s2then3.pads], [7, [2, 2], [3, 3, 3, 3]]);

  // Two dilation-2 convs keep dilation 2: taps 2v + 2u.
  const dil = composeConvs(
    randomConv(r, 'float', { cin: 2, cout: 2, k: 3, dilation: [2, 2], pads: [2, 2, 2, 2] }),
    randomConv(r, 'float', { cin: 2, cout: 2, k: 3, dilation: [2, 2], pads: [2, 2, 2, 2] }),
  );
  assert.deepEqual([dil.kh, dil.dilation, dil.pads], [5, [2, 2], [4, 4, 4, 4]]);

  assert.throws(
    () => composeConvs(randomConv(r, 'float', { cin: 2, cout: 3, k: 1 }), randomConv(r, 'float', { cin: 4, cout: 2, k: 1 })),
    InvalidArgumentError,
  );
});

test('grouped compositions collapse to gcd(g1, g2) groups: depthwise∘depthwise stays depthwise', () => {
  const r = rng(3);
  const dw = composeConvs(
    randomConv(r, 'float', { cin: 6, cout: 6, k: 3, group: 6, pads: [1, 1, 1, 1] }),
    randomConv(r, 'float', { cin: 6, cout: 6, k: 3, group: 6, pads: [1, 1, 1, 1] }),
  );
  assert.equal(dw.group, 6);
  assert.equal(dw.weight.length, 6 * 1 * 5 * 5);
  const g42 = composeConvs(
    randomConv(r, 'float', { cin: 8, cout: 8, k: 3, group: 4 }),
    randomConv(r, 'float', { cin: 8, cout: 4, k: 1, group: 2 }),
  );
  assert.equal(g42.group, 2);
  const g23 = composeConvs(
    randomConv(r, 'float', { cin: 6, cout: 6, k: 1, group: 2 }),
    randomConv(r, 'float', { cin: 6, cout: 6, k: 1, group: 3 }),
  );
  assert.equal(g23.group, 1);
  const dwThenDense = composeConvs(
    randomConv(r, 'float', { cin: 4, cout: 4, k: 3, group: 4 }),
    randomConv(r, 'float', { cin: 4, cout: 5, k: 1 }),
  );
  assert.equal(dwThenDense.group, 1);
});

// ---- (a) exact everywhere when the intermediate map is never padded ---------------------------------

interface PairCase {
  name: string;
  first: ConvOpts;
  second: ConvOpts;
  input: { n: number; h: number; w: number };
}

const PAIRS: PairCase[] = [
  { name: 'plain 3×3 → 3×3', first: { cin: 3, cout: 4, k: 3, pads: [1, 1, 1, 1] }, second: { cin: 4, cout: 5, k: 3, pads: [1, 1, 1, 1] }, input: { n: 2, h: 9, w: 8 } },
  { name: '3×3 → 5×5, asymmetric pads', first: { cin: 2, cout: 3, k: 3, pads: [0, 1, 2, 1] }, second: { cin: 3, cout: 2, k: 5, pads: [2, 1, 2, 0] }, input: { n: 1, h: 10, w: 9 } },
  { name: 'rectangular 1×3 → 3×1', first: { cin: 2, cout: 3, k: [1, 3], pads: [0, 1, 0, 1] }, second: { cin: 3, cout: 2, k: [3, 1], pads: [1, 0, 1, 0] }, input: { n: 1, h: 7, w: 6 } },
  { name: 'grouped (2) → grouped (2)', first: { cin: 4, cout: 6, k: 3, group: 2, pads: [1, 1, 1, 1] }, second: { cin: 6, cout: 4, k: 3, group: 2, pads: [1, 1, 1, 1] }, input: { n: 1, h: 8, w: 8 } },
  { name: 'grouped (4) → grouped (2)', first: { cin: 8, cout: 8, k: 3, group: 4, pads: [1, 1, 1, 1] }, second: { cin: 8, cout: 4, k: 3, group: 2, pads: [1, 1, 1, 1] }, input: { n: 1, h: 7, w: 7 } },
  { name: 'depthwise → depthwise', first: { cin: 5, cout: 5, k: 3, group: 5, pads: [1, 1, 1, 1] }, second: { cin: 5, cout: 5, k: 3, group: 5, pads: [1, 1, 1, 1] }, input: { n: 2, h: 8, w: 9 } },
  { name: 'depthwise → dense 1×1', first: { cin: 4, cout: 4, k: 3, group: 4, pads: [1, 1, 1, 1] }, second: { cin: 4, cout: 6, k: 1 }, input: { n: 1, h: 8, w: 8 } },
  { name: 'strided 3×3 → 1×1', first: { cin: 3, cout: 4, k: 3, stride: [2, 2], pads: [1, 1, 1, 1] }, second: { cin: 4, cout: 5, k: 1 }, input: { n: 1, h: 11, w: 10 } },
  { name: 'strided 3×3 → 3×3 (dilated-kernel rule)', first: { cin: 3, cout: 4, k: 3, stride: [2, 2], pads: [1, 1, 1, 1] }, second: { cin: 4, cout: 3, k: 3, pads: [1, 1, 1, 1] }, input: { n: 1, h: 12, w: 11 } },
  { name: '3×3 → strided 3×3', first: { cin: 3, cout: 4, k: 3, pads: [1, 1, 1, 1] }, second: { cin: 4, cout: 3, k: 3, stride: [2, 2], pads: [1, 1, 1, 1] }, input: { n: 1, h: 11, w: 12 } },
  { name: 'dilated 3×3 (d=2) → 3×3', first: { cin: 2, cout: 3, k: 3, dilation: [2, 2], pads: [2, 2, 2, 2] }, second: { cin: 3, cout: 2, k: 3, pads: [1, 1, 1, 1] }, input: { n: 1, h: 10, w: 10 } },
  { name: 'stride (2,1) 3×3 → 3×3 stride (1,2)', first: { cin: 2, cout: 3, k: 3, stride: [2, 1], pads: [1, 1, 1, 1] }, second: { cin: 3, cout: 2, k: 3, stride: [1, 2], pads: [1, 1, 1, 1] }, input: { n: 1, h: 10, w: 11 } },
];

for (const values of ['dyadic', 'float'] as const) {
  test(`(a) merged conv equals the sequence everywhere when the first conv pads for both — ${values} values`, () => {
    const random = rng(values === 'dyadic' ? 21 : 22);
    for (const c of PAIRS) {
      const first = randomConv(random, values, c.first);
      const second = randomConv(random, values, c.second);
      const merged = composeConvs(first, second);
      const [f0, s0] = padsMovedToFirst(first, second);
      assert.equal(mergeExactness([f0, s0]).exactEverywhere, true, c.name);
      checkMerge([f0, s0], merged, c.input, random, values, NO_BAND);
      // "valid" convs, no padding anywhere
      const fv = withPads(first, [0, 0, 0, 0]);
      const sv = withPads(second, [0, 0, 0, 0]);
      checkMerge([fv, sv], composeConvs(fv, sv), c.input, random, values, NO_BAND);
    }
  });
}

// ---- (b) the original pads between the convs: interior exact, differences only in the band ----------

for (const values of ['dyadic', 'float'] as const) {
  test(`(b) with intermediate zero padding the interior is exact and differences stay in borderBand — ${values} values`, () => {
    const random = rng(values === 'dyadic' ? 31 : 32);
    for (const c of PAIRS) {
      const first = randomConv(random, values, c.first);
      const second = randomConv(random, values, c.second);
      const merged = composeConvs(first, second);
      const band = borderBand(first, second);
      const unitStride = second.stride[0] === 1 && second.stride[1] === 1;
      // For a stride-1 second conv the band is exactly its padding; it is then tight (every line differs).
      if (unitStride) assert.deepEqual(band, { top: second.pads[0], left: second.pads[1], bottom: second.pads[2], right: second.pads[3] });
      const exact = mergeExactness([first, second]);
      assert.equal(exact.exactEverywhere, second.pads.every((p) => p === 0), c.name);
      checkMerge([first, second], merged, c.input, random, values, band, values === 'float' && unitStride);
    }
  });
}

test('(b) chains of three convs: band grows by each later conv padding, interior exact', () => {
  const random = rng(41);
  const specs = [
    randomConv(random, 'float', { cin: 3, cout: 4, k: 3, pads: [1, 1, 1, 1] }),
    randomConv(random, 'float', { cin: 4, cout: 4, k: 3, pads: [1, 1, 1, 1] }),
    randomConv(random, 'float', { cin: 4, cout: 2, k: 3, pads: [1, 1, 1, 1] }),
  ];
  const merged = composeChain(specs);
  assert.deepEqual([merged.kh, merged.pads], [7, [3, 3, 3, 3]]);
  const band = chainBorderBand(specs);
  assert.deepEqual(band, { top: 2, left: 2, bottom: 2, right: 2 });
  checkMerge(specs, merged, { n: 1, h: 11, w: 10 }, random, 'float', band, true);
  // pairwise composition (rounding in between) still respects the band, within float32 of the intermediate
  const stepwise = composeConvs(composeConvs(specs[0]!, specs[1]!), specs[2]!);
  assert.deepEqual([stepwise.kh, stepwise.pads], [7, [3, 3, 3, 3]]);

  // dyadic: bit-exact interior, exact everywhere once padding moves to the first conv
  const d = [
    randomConv(random, 'dyadic', { cin: 2, cout: 3, k: 3, pads: [1, 1, 1, 1], group: 1 }),
    randomConv(random, 'dyadic', { cin: 3, cout: 3, k: 3, pads: [1, 1, 1, 1], group: 3 }),
    randomConv(random, 'dyadic', { cin: 3, cout: 2, k: 1 }),
  ];
  checkMerge(d, composeChain(d), { n: 1, h: 9, w: 9 }, random, 'dyadic', chainBorderBand(d));
  const moved = [withPads(d[0]!, [2, 2, 2, 2]), withPads(d[1]!, [0, 0, 0, 0]), d[2]!];
  checkMerge(moved, composeChain(d), { n: 1, h: 9, w: 9 }, random, 'dyadic', NO_BAND);
});

test('border difference for two 3×3 pad-1 convs is a 1-pixel ring, of the order of the outputs', () => {
  const random = rng(51);
  const C = 8;
  const he = Math.sqrt(2 / (C * 9));
  const mk = (): ConvSpec => {
    const s = randomConv(random, 'float', { cin: C, cout: C, k: 3, pads: [1, 1, 1, 1] });
    return { ...s, weight: s.weight.map((v) => Math.fround(v * he * Math.sqrt(3))), bias: s.bias.map((v) => Math.fround(v * 0.1)) };
  };
  const a = mk();
  const b = mk();
  const cmp = checkMerge([a, b], composeConvs(a, b), { n: 2, h: 16, w: 16 }, random, 'float', borderBand(a, b), true);
  assert.deepEqual(borderBand(a, b), { top: 1, left: 1, bottom: 1, right: 1 });
  // The ring is not a rounding effect: it is a sizeable fraction of the output scale.
  assert.ok(cmp.maxBandDiff > 0.05 * cmp.maxAbsOutput, `band difference ${cmp.maxBandDiff} vs output scale ${cmp.maxAbsOutput}`);
});

// ---- skips and BatchNorm -------------------------------------------------------------------------

test('identity skip: foldIdentitySkip(conv)(x) = x + conv(x) everywhere; folded after a merge, exact in the interior', () => {
  const random = rng(61);
  for (const o of [
    { cin: 4, cout: 4, k: 3, pads: [1, 1, 1, 1] },
    { cin: 4, cout: 4, k: 5, pads: [2, 2, 2, 2], group: 2 },
    { cin: 3, cout: 3, k: 3, pads: [1, 1, 1, 1], group: 3 },
    { cin: 3, cout: 3, k: 3, pads: [2, 2, 2, 2], dilation: [2, 2] },
    { cin: 2, cout: 2, k: 1 },
  ] as ConvOpts[]) {
    for (const values of ['dyadic', 'float'] as const) {
      const s = randomConv(random, values, o);
      const folded = foldIdentitySkip(s);
      assert.equal(folded.group, s.group);
      const x: Map4 = { data: randomInput(random, values, 2 * o.cin * 7 * 6), n: 2, c: o.cin, h: 7, w: 6 };
      const ref = add(x, run(x, s));
      const got = run(x, folded);
      const tol = values === 'dyadic' ? new Float64Array(ref.data.length) : tolerance(run(absMap(x), absConv(folded)), add(absMap(x), run(absMap(x), absConv(s))));
      const cmp = compare(ref, got, tol, NO_BAND);
      assert.ok(values === 'dyadic' ? cmp.worstOutsideRatio === 0 : cmp.worstOutsideRatio <= 1, `${JSON.stringify(o)} ${values}`);
    }
  }
  // x + conv2(conv1(x)) with the original padding between them
  const c1 = randomConv(random, 'float', { cin: 4, cout: 4, k: 3, pads: [1, 1, 1, 1] });
  const c2 = randomConv(random, 'float', { cin: 4, cout: 4, k: 3, pads: [1, 1, 1, 1] });
  const folded = foldIdentitySkip(composeConvs(c1, c2));
  const x: Map4 = { data: randomInput(random, 'float', 4 * 9 * 9), n: 1, c: 4, h: 9, w: 9 };
  const ref = add(x, runChain(x, [c1, c2]));
  const tol = tolerance(run(absMap(x), absConv(folded)), add(absMap(x), runChain(absMap(x), [absConv(c1), absConv(c2)])));
  const band = borderBand(c1, c2);
  const cmp = compare(ref, run(x, folded), tol, band);
  assert.ok(cmp.worstOutsideRatio <= 1);
  assert.deepEqual(cmp.differingBandLines, band);
});

test('identity skip folding rejects what does not line up', () => {
  const r = rng(62);
  assert.throws(() => foldIdentitySkip(randomConv(r, 'float', { cin: 2, cout: 3, k: 3, pads: [1, 1, 1, 1] })), UnsupportedModelError);
  assert.throws(() => foldIdentitySkip(randomConv(r, 'float', { cin: 2, cout: 2, k: 3, stride: [2, 2], pads: [1, 1, 1, 1] })), UnsupportedModelError);
  assert.throws(() => foldIdentitySkip(randomConv(r, 'float', { cin: 2, cout: 2, k: 2, pads: [0, 0, 1, 1] })), UnsupportedModelError);
  assert.throws(() => foldIdentitySkip(randomConv(r, 'float', { cin: 2, cout: 2, k: 3, pads: [0, 0, 2, 2] })), UnsupportedModelError);
  assert.throws(() => foldIdentitySkip(randomConv(r, 'float', { cin: 2, cout: 2, k: 3 })), UnsupportedModelError);
});

test('projection skip: conv(x) + proj(x) with a strided 1×1 projection folds exactly; grouped conv + dense projection becomes dense', () => {
  const random = rng(71);
  const cases: Array<[ConvOpts, ConvOpts]> = [
    [{ cin: 3, cout: 5, k: 3, stride: [2, 2], pads: [1, 1, 1, 1] }, { cin: 3, cout: 5, k: 1, stride: [2, 2] }],
    [{ cin: 4, cout: 6, k: 3, pads: [1, 1, 1, 1], group: 2 }, { cin: 4, cout: 6, k: 1 }],
    [{ cin: 4, cout: 4, k: 5, stride: [1, 2], pads: [2, 2, 2, 2], group: 4 }, { cin: 4, cout: 4, k: 1, stride: [1, 2], group: 2 }],
  ];
  for (const [co, po] of cases) {
    for (const values of ['dyadic', 'float'] as const) {
      const s = randomConv(random, values, co);
      const p = randomConv(random, values, po);
      const folded = foldProjectionSkip(s, p);
      const x: Map4 = { data: randomInput(random, values, co.cin * 9 * 8), n: 1, c: co.cin, h: 9, w: 8 };
      const ref = add(run(x, s), run(x, p));
      const tol = values === 'dyadic' ? new Float64Array(ref.data.length) : tolerance(run(absMap(x), absConv(folded)), add(run(absMap(x), absConv(s)), run(absMap(x), absConv(p))));
      const cmp = compare(ref, run(x, folded), tol, NO_BAND);
      assert.ok(values === 'dyadic' ? cmp.worstOutsideRatio === 0 : cmp.worstOutsideRatio <= 1, `${JSON.stringify(co)} ${values}`);
    }
  }
  assert.equal(foldProjectionSkip(randomConv(random, 'float', cases[1]![0]), randomConv(random, 'float', cases[1]![1])).group, 1);
  assert.equal(foldProjectionSkip(randomConv(random, 'float', cases[2]![0]), randomConv(random, 'float', cases[2]![1])).group, 2);
  const s = randomConv(random, 'float', cases[0]![0]);
  assert.throws(() => foldProjectionSkip(s, randomConv(random, 'float', { cin: 3, cout: 5, k: 1 })), UnsupportedModelError); // stride differs
  assert.throws(() => foldProjectionSkip(s, randomConv(random, 'float', { cin: 3, cout: 5, k: 3, stride: [2, 2], pads: [1, 1, 1, 1] })), UnsupportedModelError);
  assert.throws(() => foldProjectionSkip(s, randomConv(random, 'float', { cin: 3, cout: 4, k: 1, stride: [2, 2] })), InvalidArgumentError);
});

test('BatchNorm folding equals conv followed by BN', () => {
  const random = rng(81);
  for (const o of [
    { cin: 3, cout: 4, k: 3, pads: [1, 1, 1, 1] },
    { cin: 4, cout: 4, k: 3, group: 4, stride: [2, 2] },
  ] as ConvOpts[]) {
    const s = randomConv(random, 'float', o);
    const bn = {
      scale: Array.from({ length: o.cout }, () => random() * 2 - 0.5),
      bias: Array.from({ length: o.cout }, () => random() - 0.5),
      mean: Array.from({ length: o.cout }, () => random() - 0.5),
      var: Array.from({ length: o.cout }, () => random() * 2),
      epsilon: 1e-5,
    };
    const folded = foldBatchNorm(s, bn);
    const x: Map4 = { data: randomInput(random, 'float', 2 * o.cin * 8 * 8), n: 2, c: o.cin, h: 8, w: 8 };
    const y = run(x, s);
    const hw = y.h * y.w;
    const ref = y.data.map((v, n) => {
      const ch = Math.floor(n / hw) % y.c;
      return ((v - bn.mean[ch]!) / Math.sqrt(bn.var[ch]! + bn.epsilon)) * bn.scale[ch]! + bn.bias[ch]!;
    });
    const got = run(x, folded);
    // float32 rounding of W′ and b′ (2⁻²⁴ each), relative to the folded conv's absolute scale
    const scale = run(absMap(x), absConv(folded));
    got.data.forEach((v, n) => assert.ok(Math.abs(v - ref[n]!) <= 2 ** -23 * scale.data[n]! + 1e-12, `${v} vs ${ref[n]}`));
  }
  const s = randomConv(random, 'float', { cin: 2, cout: 2, k: 1 });
  assert.throws(() => foldBatchNorm(s, { scale: [1], bias: [0, 0], mean: [0, 0], var: [1, 1], epsilon: 1e-5 }), InvalidArgumentError);
  assert.throws(() => foldBatchNorm(s, { scale: [1, 1], bias: [0, 0], mean: [0, 0], var: [0, -1], epsilon: 0 }), InvalidArgumentError);
});

// ---- chain candidates: merged blocks against the pruned network --------------------------------------

function shapeOnly(s: ConvSpec): ConvSpec {
  return { ...s, weight: new Float32Array(0), bias: new Float32Array(0) };
}

function layer(id: string, spec: ConvSpec, inH: number, inW: number, activationAfter = true): ChainLayer {
  return { id, spec, inH, inW, activationAfter };
}

/** A small ResNet/MobileNet-like chain with every kind of block the rules deal with. */
function miniChain(random: () => number, values: Values): Chain {
  const conv = (o: ConvOpts): ConvSpec => randomConv(random, values, o);
  const p1: [number, number, number, number] = [1, 1, 1, 1];
  const layers: ChainLayer[] = [
    layer('stem', conv({ cin: 3, cout: 4, k: 3, pads: p1 }), 8, 8),
    layer('b1.conv1', conv({ cin: 4, cout: 4, k: 3, pads: p1 }), 8, 8),
    layer('b1.conv2', conv({ cin: 4, cout: 4, k: 3, pads: p1 }), 8, 8),
    layer('b2.conv1', conv({ cin: 4, cout: 6, k: 3, stride: [2, 2], pads: p1 }), 8, 8),
    layer('b2.conv2', conv({ cin: 6, cout: 6, k: 3, pads: p1 }), 4, 4),
    layer('ir.expand', conv({ cin: 6, cout: 6, k: 1 }), 4, 4),
    layer('ir.dw', conv({ cin: 6, cout: 6, k: 3, group: 6, pads: p1 }), 4, 4),
    layer('ir.project', conv({ cin: 6, cout: 6, k: 1 }), 4, 4, false),
    layer('down.dw', conv({ cin: 6, cout: 6, k: 3, group: 6, stride: [2, 2], pads: p1 }), 4, 4),
    layer('down.project', conv({ cin: 6, cout: 5, k: 1 }), 2, 2, false),
  ];
  return {
    layers,
    residuals: [
      { start: 1, end: 3, skip: 'identity' },
      { start: 3, end: 5, skip: 'projection', projection: conv({ cin: 4, cout: 6, k: 1, stride: [2, 2] }) },
      { start: 5, end: 8, skip: 'identity' },
    ],
  };
}

/** The block as the pruned network computes it: kept convs with their own padding, removed ones as identity. */
function runSteps(x: Map4, steps: readonly MergeStep[]): Map4 {
  let y = x;
  for (const s of steps) {
    if (s.kind === 'conv') y = run(y, s.spec);
    else {
      const branch = runSteps(y, s.branch);
      y = add(branch, s.skip === 'identity' ? y : run(y, s.projection));
    }
  }
  return y;
}

function absSteps(steps: readonly MergeStep[]): MergeStep[] {
  return steps.map((s) =>
    s.kind === 'conv'
      ? { kind: 'conv', spec: absConv(s.spec) }
      : s.skip === 'identity'
        ? { kind: 'residual', skip: 'identity', branch: absSteps(s.branch) }
        : { kind: 'residual', skip: 'projection', projection: absConv(s.projection), branch: absSteps(s.branch) },
  );
}

for (const values of ['dyadic', 'float'] as const) {
  test(`every enumerated candidate merges to a conv equal to its pruned block outside its band — ${values} values`, () => {
    const random = rng(values === 'dyadic' ? 91 : 92);
    const chain = miniChain(random, values);
    const candidates = enumerateCandidates(chain);
    assert.ok(candidates.length > 30, `only ${candidates.length} candidates`);
    let withBand = 0;
    let folded = 0;
    for (const cand of candidates) {
      const l0 = chain.layers[cand.i]!;
      const x: Map4 = { data: randomInput(random, values, 2 * l0.spec.cin * l0.inH * l0.inW), n: 2, c: l0.spec.cin, h: l0.inH, w: l0.inW };
      const steps = blockSteps(chain, cand.i, cand.j, cand.kept);
      const original = runSteps(x, steps);
      const merged = mergeCandidate(chain, cand);
      const label = `(${cand.i}, ${cand.j}] kept ${cand.kept.join(',')}`;
      if (merged === null) {
        assert.equal(cand.identity, true, label);
        assert.ok(original.data.length === x.data.length && original.data.every((v, n) => v === x.data[n]), `${label}: not the identity`);
        continue;
      }
      assert.deepEqual(
        [merged.kh, merged.kw, merged.group, merged.stride, merged.pads, merged.cin, merged.cout],
        [cand.kh, cand.kw, cand.group, cand.stride, cand.pads, cand.cin, cand.cout],
        label,
      );
      assert.deepEqual(convOutputShape(merged, cand.inH, cand.inW), { h: cand.outH, w: cand.outW }, label);
      const out = run(x, merged);
      const tol = values === 'dyadic' ? new Float64Array(original.data.length) : tolerance(run(absMap(x), absConv(merged)), runSteps(absMap(x), absSteps(steps)));
      const cmp = compare(original, out, tol, cand.band);
      assert.ok(values === 'dyadic' ? cmp.worstOutsideRatio === 0 : cmp.worstOutsideRatio <= 1, `${label}: ratio ${cmp.worstOutsideRatio}`);
      if (!cand.exactEverywhere) withBand++;
      if (cand.foldedResiduals.length > 0) folded++;
    }
    assert.ok(withBand >= 10 && folded >= 10, `coverage: ${withBand} with a band, ${folded} folding a skip`);
  });
}

test('candidate rules on the mini chain', () => {
  const chain = miniChain(rng(93), 'float');
  const cands = enumerateCandidates(chain);
  const blocks = new Set(cands.map((c) => `${c.i},${c.j}`));
  // cuts through a residual block
  assert.equal(blocks.has('0,2'), false);
  assert.equal(blocks.has('2,4'), false);
  assert.equal(blocks.has('4,6'), false);
  // strided 3×3 followed by a 3×3 in the same block
  assert.equal(blocks.has('3,5'), false);
  // strided depthwise followed by a 1×1: allowed, k stays 3
  const down = cands.filter((c) => c.i === 8 && c.j === 10);
  assert.deepEqual(down.map((c) => [c.k, c.stride[0], c.depthwise, c.kept]), [[3, 2, false, [8, 9]]]);
  // the identity is offered only where shapes match: b1.conv1 yes, the strided conv and the stem (3→4) no
  assert.ok(cands.some((c) => c.i === 1 && c.j === 2 && c.identity));
  assert.ok(!cands.some((c) => c.i === 3 && c.j === 4 && c.identity));
  assert.ok(!cands.some((c) => c.i === 0 && c.j === 1 && c.identity));
  // a folded skip is never offered as the identity
  assert.ok(!cands.some((c) => c.identity && c.foldedResiduals.length > 0));
  // mandatory convs are always kept
  for (const c of cands) for (const m of [0, 3, 8, 9]) if (m >= c.i && m < c.j) assert.ok(c.kept.includes(m), `(${c.i},${c.j}] drops ${m}`);
  // depthwise only when every kept conv is: the dw conv alone
  const dwOnly = cands.filter((c) => c.i === 6 && c.j === 7 && !c.identity);
  assert.deepEqual(dwOnly.map((c) => [c.k, c.depthwise, c.group]), [[3, true, 6]]);
  // the inverted-residual block (5, 8] folds its skip; keeping the dw alone gives a depthwise 3×3
  const ir = cands.filter((c) => c.i === 5 && c.j === 8);
  assert.ok(ir.every((c) => c.foldedResiduals.length === 1 && c.foldedResiduals[0] === 2));
  assert.ok(ir.some((c) => c.k === 3 && c.depthwise && c.kept.length === 1 && c.kept[0] === 6));
  assert.ok(ir.some((c) => c.k === 1 && !c.depthwise));
  // activations: (1, 3] removes the one at 2 and keeps the one at 3
  const b1 = cands.find((c) => c.i === 1 && c.j === 3)!;
  assert.deepEqual([b1.removedActivations, b1.activationAtEnd], [[2], true]);
  // maxKernel
  assert.ok(enumerateCandidates(chain, { maxKernel: 3 }).every((c) => c.k <= 3));
  assert.ok(cands.some((c) => c.k > 3));
  assert.ok(!enumerateCandidates(chain, { allowIdentity: false }).some((c) => c.identity));
});

test('barriers: a pooling between convs (map size changes) or barrierAfter ends every block there', () => {
  const r = rng(96);
  const c = (): ConvSpec => randomConv(r, 'float', { cin: 4, cout: 4, k: 3, pads: [1, 1, 1, 1] });
  const pooled: Chain = { layers: [layer('a', c(), 8, 8), layer('b', c(), 4, 4), layer('c', c(), 4, 4)], residuals: [] };
  const blocks = new Set(enumerateCandidates(pooled).map((x) => `${x.i},${x.j}`));
  assert.deepEqual([...blocks].sort(), ['0,1', '1,2', '1,3', '2,3']);
  const flagged: Chain = { layers: [layer('a', c(), 8, 8), { ...layer('b', c(), 8, 8), barrierAfter: true }, layer('c', c(), 8, 8)], residuals: [] };
  const flaggedBlocks = new Set(enumerateCandidates(flagged).map((x) => `${x.i},${x.j}`));
  assert.deepEqual([...flaggedBlocks].sort(), ['0,1', '0,2', '1,2', '2,3']);
});

test('subset choice: per (i, j, merged conv) the largest Σ‖W‖₁, checked against brute force over all subsets', () => {
  const random = rng(94);
  const chain = miniChain(random, 'float');
  const cands = enumerateCandidates(chain);
  const l1 = chain.layers.map((l) => l.spec.weight.reduce((s, v) => s + Math.abs(v), 0));
  const byBlock = new Map<string, typeof cands>();
  for (const c of cands) byBlock.set(`${c.i},${c.j}`, [...(byBlock.get(`${c.i},${c.j}`) ?? []), c]);
  for (const [key, list] of byBlock) {
    const [i, j] = key.split(',').map(Number) as [number, number];
    const n = j - i;
    // brute force: every subset that keeps the mandatory convs and is centred where a skip is folded
    const best = new Map<string, number>();
    for (let mask = 0; mask < 1 << n; mask++) {
      const kept: number[] = [];
      for (let b = 0; b < n; b++) if (mask & (1 << b)) kept.push(i + b);
      const mandatory = [0, 3, 8, 9].filter((m) => m >= i && m < j);
      if (!mandatory.every((m) => kept.includes(m))) continue;
      if (kept.length === 0) {
        if (list[0]!.foldedResiduals.length > 0) continue;
        best.set('identity', 0);
        continue;
      }
      const k = kept.reduce((s, m) => s + chain.layers[m]!.spec.kh, 0) - kept.length + 1;
      const dense = kept.some((m) => chain.layers[m]!.spec.group === 1) || list[0]!.foldedResiduals.some((r) => chain.residuals[r]!.skip === 'projection');
      const keyK = `${k}/${dense ? 'dense' : 'dw'}`;
      const s = kept.reduce((acc, m) => acc + l1[m]!, 0);
      best.set(keyK, Math.max(best.get(keyK) ?? -1, s));
    }
    const got = new Map(list.map((c) => [c.identity ? 'identity' : `${c.k}/${c.group === 1 ? 'dense' : 'dw'}`, c.l1]));
    assert.deepEqual([...got.keys()].sort(), [...best.keys()].sort(), key);
    for (const [k, v] of best) assert.ok(Math.abs(got.get(k)! - v) <= 1e-9 * (1 + v), `${key} ${k}: ${got.get(k)} vs ${v}`);
  }
});

/** ResNet-34 as a shape-only chain: 7×7/2 stem (then a max pool), 3-4-6-3 basic blocks. */
function resnet34Chain(): Chain {
  const layers: ChainLayer[] = [];
  const residuals: Chain['residuals'] = [];
  const conv = (cin: number, cout: number, k: number, s: number): ConvSpec =>
    shapeOnly({
      cin,
      cout,
      kh: k,
      kw: k,
      stride: [s, s],
      pads: [(k - 1) / 2, (k - 1) / 2, (k - 1) / 2, (k - 1) / 2],
      dilation: [1, 1],
      group: 1,
      weight: new Float32Array(0),
      bias: new Float32Array(0),
    });
  layers.push(layer('stem', conv(3, 64, 7, 2), 224, 224));
  let c = 64;
  let hw = 56;
  for (const [stage, [blocks, width]] of ([[3, 64], [4, 128], [6, 256], [3, 512]] as const).entries()) {
    for (let b = 0; b < blocks; b++) {
      const stride = b === 0 && stage > 0 ? 2 : 1;
      const start = layers.length;
      layers.push(layer(`l${stage + 1}.${b}.conv1`, conv(c, width, 3, stride), hw, hw));
      hw /= stride;
      layers.push(layer(`l${stage + 1}.${b}.conv2`, conv(width, width, 3, 1), hw, hw));
      residuals.push(
        stride === 1 && c === width
          ? { start, end: start + 2, skip: 'identity' }
          : { start, end: start + 2, skip: 'projection', projection: conv(c, width, 1, stride) },
      );
      c = width;
    }
  }
  return { layers, residuals };
}

test('ResNet-34 chain: 33 convs, 180 candidates as counted by hand from the rules', () => {
  const chain = resnet34Chain();
  assert.equal(chain.layers.length, 33);
  const cands = enumerateCandidates(chain);
  // stem 1; per stage of n identity blocks: 2n single-conv blocks × {kept, identity} + Σ_m (n−m+1)·2m covering
  // blocks; a projection block adds its two single-conv blocks (conv1 mandatory: 1, conv2: 2).
  const stage = (n: number): number => 4 * n + Array.from({ length: n }, (_, m) => (n - m) * 2 * (m + 1)).reduce((a, b) => a + b, 0);
  assert.equal(cands.length, 1 + stage(3) + (3 + stage(3)) + (3 + stage(5)) + (3 + stage(2)));
  assert.equal(cands.length, 180);
  // Without identity entries and without the stem block this is the 150-entry table of the official code.
  assert.equal(enumerateCandidates(chain, { allowIdentity: false }).filter((c) => c.i > 0).length, 150);
  // a projection block cannot be covered: its strided 3×3 is followed by a 3×3
  assert.ok(!cands.some((c) => c.i === 7 && c.j === 9));
  assert.ok(!cands.some((c) => c.i === 0 && c.j > 1), 'the max pool after the stem is a barrier');
});

test('enumerateCandidates validates the chain', () => {
  const chain = miniChain(rng(95), 'float');
  assert.throws(() => enumerateCandidates({ ...chain, residuals: [...chain.residuals, { start: 2, end: 4, skip: 'identity' }] }), InvalidArgumentError);
  assert.throws(() => enumerateCandidates({ ...chain, residuals: [{ start: 0, end: 2, skip: 'identity' }] }), InvalidArgumentError); // 3 → 4 channels
  assert.throws(() => enumerateCandidates({ ...chain, residuals: [{ start: 3, end: 5, skip: 'projection' }] }), InvalidArgumentError);
  assert.throws(() => enumerateCandidates({ layers: [], residuals: [] }), InvalidArgumentError);
  const dup = chain.layers.map((l) => ({ ...l, id: 'same' }));
  assert.throws(() => enumerateCandidates({ layers: dup, residuals: [] }), InvalidArgumentError);
});
