/**
 * The convolution description shared by the LayerMerge core, and a plain-loop float64 reference
 * that the merge math is checked against. Layout follows ONNX Conv: NCHW activations, weights
 * cout × (cin / group) × kh × kw, groups are contiguous channel blocks.
 */
import { InvalidArgumentError } from '../errors.js';

export interface ConvSpec {
  cin: number;
  cout: number;
  kh: number;
  kw: number;
  stride: [number, number];
  /** top, left, bottom, right */
  pads: [number, number, number, number];
  dilation: [number, number];
  group: number;
  /** cout × cin/group × kh × kw; may be empty where only the shape matters (candidate enumeration). */
  weight: Float32Array;
  /** cout */
  bias: Float32Array;
}

/** Everything about a convolution except its values. */
export type ConvShape = Omit<ConvSpec, 'weight' | 'bias'>;

export interface FeatureMap {
  data: Float64Array;
  c: number;
  h: number;
  w: number;
}

function isPositiveInt(v: number): boolean {
  return Number.isInteger(v) && v >= 1;
}

function isNonNegativeInt(v: number): boolean {
  return Number.isInteger(v) && v >= 0;
}

/**
 * Checks the geometry (and, unless `shapeOnly`, the array lengths) of a convolution.
 * `shapeOnly` accepts an empty weight and bias so that enumeration can run on a model
 * whose values have not been loaded.
 */
export function validateConvShape(spec: ConvShape, parameter: string): void {
  const ints: Array<[string, number]> = [
    ['cin', spec.cin],
    ['cout', spec.cout],
    ['kh', spec.kh],
    ['kw', spec.kw],
    ['group', spec.group],
    ['stride[0]', spec.stride[0]],
    ['stride[1]', spec.stride[1]],
    ['dilation[0]', spec.dilation[0]],
    ['dilation[1]', spec.dilation[1]],
  ];
  for (const [name, v] of ints) {
    if (!isPositiveInt(v)) throw new InvalidArgumentError(parameter, `${name} must be a positive integer, got ${v}`);
  }
  if (spec.pads.length !== 4 || !spec.pads.every(isNonNegativeInt)) {
    throw new InvalidArgumentError(parameter, `pads must be four non-negative integers, got [${spec.pads.join(', ')}]`);
  }
  if (spec.cin % spec.group !== 0 || spec.cout % spec.group !== 0) {
    throw new InvalidArgumentError(
      parameter,
      `group ${spec.group} must divide cin ${spec.cin} and cout ${spec.cout}`,
    );
  }
}

export function validateConvSpec(spec: ConvSpec, parameter: string, options: { shapeOnly?: boolean } = {}): void {
  validateConvShape(spec, parameter);
  const expected = spec.cout * (spec.cin / spec.group) * spec.kh * spec.kw;
  const shapeOnly = options.shapeOnly === true && spec.weight.length === 0 && spec.bias.length === 0;
  if (shapeOnly) return;
  if (spec.weight.length !== expected) {
    throw new InvalidArgumentError(parameter, `weight has ${spec.weight.length} values, expected ${expected}`);
  }
  if (spec.bias.length !== spec.cout) {
    throw new InvalidArgumentError(parameter, `bias has ${spec.bias.length} values, expected ${spec.cout}`);
  }
}

/** Output length along one axis; below 1 means the kernel does not fit. */
export function convOutputSize(
  input: number,
  kernel: number,
  stride: number,
  padBegin: number,
  padEnd: number,
  dilation: number,
): number {
  return Math.floor((input + padBegin + padEnd - dilation * (kernel - 1) - 1) / stride) + 1;
}

export function convOutputShape(spec: ConvShape, h: number, w: number): { h: number; w: number } {
  return {
    h: convOutputSize(h, spec.kh, spec.stride[0], spec.pads[0], spec.pads[2], spec.dilation[0]),
    w: convOutputSize(w, spec.kw, spec.stride[1], spec.pads[1], spec.pads[3], spec.dilation[1]),
  };
}

export function isDepthwise(spec: ConvShape): boolean {
  return spec.group === spec.cin && spec.group === spec.cout;
}

/** Σ|W|: the magnitude LayerMerge uses to choose between subsets giving the same merged kernel. */
export function l1Norm(spec: ConvSpec): number {
  let s = 0;
  for (let k = 0; k < spec.weight.length; k++) s += Math.abs(spec.weight[k]!);
  return s;
}

/**
 * Direct convolution in float64 with zero padding, written as plainly as possible because it is
 * the ground truth for every merge test: no im2col, no reordering of the sums that matters.
 */
export function conv2dReference(
  x: Float64Array | Float32Array,
  n: number,
  c: number,
  h: number,
  w: number,
  spec: ConvSpec,
): FeatureMap & { n: number } {
  validateConvSpec(spec, 'spec');
  for (const [name, v] of [
    ['n', n],
    ['c', c],
    ['h', h],
    ['w', w],
  ] as const) {
    if (!isPositiveInt(v)) throw new InvalidArgumentError(name, `must be a positive integer, got ${v}`);
  }
  if (c !== spec.cin) throw new InvalidArgumentError('c', `input has ${c} channels, the convolution expects ${spec.cin}`);
  if (x.length !== n * c * h * w) {
    throw new InvalidArgumentError('x', `has ${x.length} values, expected n·c·h·w = ${n * c * h * w}`);
  }
  const { h: oh, w: ow } = convOutputShape(spec, h, w);
  if (oh < 1 || ow < 1) {
    throw new InvalidArgumentError('spec', `kernel does not fit a ${h}×${w} input (output ${oh}×${ow})`);
  }
  const [sh, sw] = spec.stride;
  const [dh, dw] = spec.dilation;
  const [pt, pl] = spec.pads;
  const cinG = spec.cin / spec.group;
  const coutG = spec.cout / spec.group;
  const out = new Float64Array(n * spec.cout * oh * ow);
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < spec.cout; o++) {
      const g = Math.floor(o / coutG);
      for (let oy = 0; oy < oh; oy++) {
        for (let ox = 0; ox < ow; ox++) {
          let acc = spec.bias[o]!;
          for (let ic = 0; ic < cinG; ic++) {
            const ci = g * cinG + ic;
            for (let ky = 0; ky < spec.kh; ky++) {
              const iy = oy * sh - pt + ky * dh;
              if (iy < 0 || iy >= h) continue;
              for (let kx = 0; kx < spec.kw; kx++) {
                const ix = ox * sw - pl + kx * dw;
                if (ix < 0 || ix >= w) continue;
                const wv = spec.weight[((o * cinG + ic) * spec.kh + ky) * spec.kw + kx]!;
                acc += wv * x[((b * c + ci) * h + iy) * w + ix]!;
              }
            }
          }
          out[((b * spec.cout + o) * oh + oy) * ow + ox] = acc;
        }
      }
    }
  }
  return { data: out, n, c: spec.cout, h: oh, w: ow };
}
