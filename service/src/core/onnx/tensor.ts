import { InvalidModelError, UnsupportedModelError } from '../errors.js';
import { int64ToNumber, type TensorProto } from './proto.js';

/** ONNX TensorProto.DataType values strata reads. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16,
} as const;

const TYPE_NAMES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  14: 'complex64',
  15: 'complex128',
  16: 'bfloat16',
};

export function dataTypeName(t: number | undefined): string {
  return TYPE_NAMES[t ?? 0] ?? `type#${t ?? 0}`;
}

export type TensorArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** A decoded initializer. float16/bfloat16 keep their bit patterns in a Uint16Array. */
export interface TensorValue {
  name: string;
  dataType: number;
  dims: number[];
  data: TensorArray;
}

/** Reads the bytes of an external-data file, or undefined when it is not available. */
export type ExternalDataResolver = (location: string) => Uint8Array | undefined;

function elementCount(dims: number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

const BYTES: Record<number, number> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2 };

function fromBytes(dataType: number, bytes: Uint8Array, count: number, name: string): TensorArray {
  const width = BYTES[dataType];
  if (width === undefined) throw new UnsupportedModelError(`initializer "${name}" has data type ${dataTypeName(dataType)}, which strata cannot read`);
  if (bytes.byteLength !== width * count) {
    throw new InvalidModelError(
      `initializer "${name}" holds ${bytes.byteLength} bytes but its shape needs ${width * count} (${count} × ${width})`,
      { tensor: name },
    );
  }
  // Copy into a fresh, aligned buffer: raw_data is a view into the model bytes at any offset.
  const buf = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(buf).set(bytes);
  switch (dataType) {
    case DataType.FLOAT:
      return new Float32Array(buf);
    case DataType.DOUBLE:
      return new Float64Array(buf);
    case DataType.INT8:
      return new Int8Array(buf);
    case DataType.UINT8:
    case DataType.BOOL:
      return new Uint8Array(buf);
    case DataType.INT16:
      return new Int16Array(buf);
    case DataType.UINT16:
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
      return new Uint16Array(buf);
    case DataType.INT32:
      return new Int32Array(buf);
    case DataType.UINT32:
      return new Uint32Array(buf);
    case DataType.INT64:
      return new BigInt64Array(buf);
    default:
      return new BigUint64Array(buf);
  }
}

/** TensorProto → typed array, from raw_data, the typed repeated fields or external data. */
export function readTensor(t: TensorProto, resolveExternal?: ExternalDataResolver): TensorValue {
  const name = t.name ?? '';
  const dataType = t.data_type ?? 0;
  const dims = (t.dims ?? []).map(int64ToNumber);
  const count = elementCount(dims);
  if (t.data_location === 1) {
    const entries = new Map((t.external_data ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = entries.get('location');
    if (!location) throw new InvalidModelError(`initializer "${name}" is stored externally but names no location`);
    const file = resolveExternal?.(location);
    if (!file) {
      throw new InvalidModelError(
        `initializer "${name}" is stored in the external file "${location}", which was not found beside the model; ` +
          'put the file next to the .onnx (or save the model with its weights inside)',
        { tensor: name, location },
      );
    }
    const offset = Number(entries.get('offset') ?? '0');
    const length = entries.has('length') ? Number(entries.get('length')) : file.byteLength - offset;
    if (!(offset >= 0 && length >= 0 && offset + length <= file.byteLength)) {
      throw new InvalidModelError(
        `initializer "${name}" points at bytes ${offset}..${offset + length} of "${location}", which has ${file.byteLength}`,
        { tensor: name, location },
      );
    }
    return { name, dataType, dims, data: fromBytes(dataType, file.subarray(offset, offset + length), count, name) };
  }
  if (t.raw_data && t.raw_data.byteLength > 0) {
    return { name, dataType, dims, data: fromBytes(dataType, t.raw_data, count, name) };
  }
  let data: TensorArray;
  switch (dataType) {
    case DataType.FLOAT:
      data = Float32Array.from(t.float_data ?? []);
      break;
    case DataType.DOUBLE:
      data = Float64Array.from(t.double_data ?? []);
      break;
    case DataType.INT32:
      data = Int32Array.from(t.int32_data ?? []);
      break;
    case DataType.INT8:
      data = Int8Array.from(t.int32_data ?? []);
      break;
    case DataType.UINT8:
    case DataType.BOOL:
      data = Uint8Array.from(t.int32_data ?? []);
      break;
    case DataType.INT16:
      data = Int16Array.from(t.int32_data ?? []);
      break;
    case DataType.UINT16:
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
      // float16 bit patterns travel in int32_data, one per element.
      data = Uint16Array.from(t.int32_data ?? []);
      break;
    case DataType.INT64:
      data = BigInt64Array.from((t.int64_data ?? []).map((v) => BigInt(typeof v === 'number' ? v : v.toString())));
      break;
    case DataType.UINT32:
      data = Uint32Array.from((t.uint64_data ?? []).map(int64ToNumber));
      break;
    case DataType.UINT64:
      data = BigUint64Array.from((t.uint64_data ?? []).map((v) => BigInt(typeof v === 'number' ? v : v.toString())));
      break;
    default:
      throw new UnsupportedModelError(`initializer "${name}" has data type ${dataTypeName(dataType)}, which strata cannot read`);
  }
  if (data.length !== count) {
    throw new InvalidModelError(`initializer "${name}" holds ${data.length} values but its shape [${dims.join(', ')}] needs ${count}`, {
      tensor: name,
    });
  }
  return { name, dataType, dims, data };
}

/** IEEE half → number. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Any numeric tensor as float64 values (float16/bfloat16 decoded, int64 converted). */
export function toFloat64(v: TensorValue): Float64Array {
  const out = new Float64Array(v.data.length);
  if (v.dataType === DataType.FLOAT16) {
    for (let i = 0; i < out.length; i++) out[i] = halfToFloat(v.data[i] as number);
  } else if (v.dataType === DataType.BFLOAT16) {
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let i = 0; i < out.length; i++) {
      u[0] = (v.data[i] as number) << 16;
      out[i] = f[0]!;
    }
  } else if (v.data instanceof BigInt64Array || v.data instanceof BigUint64Array) {
    for (let i = 0; i < out.length; i++) out[i] = Number(v.data[i]);
  } else {
    for (let i = 0; i < out.length; i++) out[i] = v.data[i] as number;
  }
  return out;
}

/** A float32 initializer stored as raw_data (how exporters write weights). */
export function makeFloatTensor(name: string, dims: number[], data: Float32Array): TensorProto {
  return {
    name,
    dims,
    data_type: DataType.FLOAT,
    raw_data: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)),
  };
}

export function makeInt64Tensor(name: string, dims: number[], values: number[]): TensorProto {
  const arr = BigInt64Array.from(values.map((v) => BigInt(v)));
  return { name, dims, data_type: DataType.INT64, raw_data: new Uint8Array(arr.buffer) };
}
