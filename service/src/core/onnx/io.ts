import { InvalidArgumentError } from '../errors.js';
import { GraphIndex, dimsOf, type Dim } from './graph.js';
import type { ModelProto } from './proto.js';
import { dataTypeName } from './tensor.js';

export interface TensorSignature {
  name: string;
  /** onnxruntime's name for the element type: float32, int64, … */
  dtype: string;
  dims: Dim[];
}

/** The model's real inputs (initializers listed as inputs excluded) and outputs. */
export function modelSignature(model: ModelProto): { inputs: TensorSignature[]; outputs: TensorSignature[] } {
  const g = model.graph ?? {};
  const idx = new GraphIndex(g);
  const real = new Set(idx.inputs);
  const sig = (v: NonNullable<typeof g.input>[number]): TensorSignature => ({
    name: v.name ?? '',
    dtype: dataTypeName(v.type?.tensor_type?.elem_type),
    dims: dimsOf(v) ?? [],
  });
  return { inputs: (g.input ?? []).filter((v) => real.has(v.name ?? '')).map(sig), outputs: (g.output ?? []).map(sig) };
}

/** Parses `name=1x3x224x224`. */
export function parseShapeOption(text: string): [string, number[]] {
  const m = /^(.+)=(\d+(?:x\d+)*)$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError('--shape', `"${text}" is not of the form <input>=<d0>x<d1>x… (e.g. input=1x3x224x224)`);
  return [m[1]!, m[2]!.split('x').map(Number)];
}

/**
 * Concrete shapes for every input: given shapes win, then the declared fixed dims. With
 * `batchDefault`, a symbolic leading dim alone is bound to it (per-sample figures); any other
 * symbolic dim left unbound is an error that names it.
 */
export function bindInputShapes(
  inputs: TensorSignature[],
  given: Map<string, number[]>,
  batchDefault?: number,
): Map<string, number[]> {
  for (const name of given.keys()) {
    if (!inputs.some((i) => i.name === name)) {
      throw new InvalidArgumentError('--shape', `the model has no input "${name}"; its inputs are ${inputs.map((i) => i.name).join(', ')}`);
    }
  }
  const out = new Map<string, number[]>();
  for (const inp of inputs) {
    const g = given.get(inp.name);
    if (g) {
      if (g.length !== inp.dims.length) {
        throw new InvalidArgumentError('--shape', `input "${inp.name}" has ${inp.dims.length} dimensions [${fmt(inp.dims)}], ${g.length} were given`);
      }
      inp.dims.forEach((d, i) => {
        if (typeof d === 'number' && d !== g[i]) {
          throw new InvalidArgumentError('--shape', `input "${inp.name}" has fixed dimension ${i} = ${d}, ${g[i]} was given`);
        }
      });
      out.set(inp.name, g);
      continue;
    }
    const bound = inp.dims.map((d, i) => (typeof d === 'number' ? d : i === 0 && batchDefault !== undefined ? batchDefault : NaN));
    const missing = inp.dims.filter((_, i) => Number.isNaN(bound[i]));
    if (missing.length > 0) {
      throw new InvalidArgumentError(
        '--shape',
        `input "${inp.name}" has dynamic dimensions [${fmt(inp.dims)}]; bind them with --shape ${inp.name}=${inp.dims.map((d) => (typeof d === 'number' ? d : 'N')).join('x')} or give a data set`,
      );
    }
    out.set(inp.name, bound);
  }
  return out;
}

export function fmt(dims: Dim[]): string {
  return dims.map((d) => (d === null ? '?' : String(d))).join(', ');
}
