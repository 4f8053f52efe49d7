/**
 * The NumPy .npy format (and the zip of .npy files that numpy calls .npz), read and written without
 * touching the file system, so the data-set reader can stream and tests and tools can make fixtures.
 *
 * Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 */
import * as zlib from 'node:zlib';
import { DatasetError, InvalidArgumentError } from '../errors.js';

/** Element types, named as onnxruntime names tensor types so a data set can be checked against a model. */
export type NpyDtype =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'bool';

/** float16 is carried as its raw bits (Uint16Array) and bool as one byte per element, as onnxruntime expects. */
export type NpyTypedArray =
  | Float32Array
  | Float64Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint32Array
  | BigUint64Array;

export interface NpyHeader {
  dtype: NpyDtype;
  shape: number[];
  fortranOrder: boolean;
  /** Bytes before the array data: magic, version, length field and the padded header text. */
  headerLength: number;
}

interface DtypeInfo {
  descr: string;
  bytes: number;
  make: (buffer: ArrayBuffer, offset: number, length: number) => NpyTypedArray;
}

const DTYPES: Record<NpyDtype, DtypeInfo> = {
  float32: { descr: '<f4', bytes: 4, make: (b, o, n) => new Float32Array(b, o, n) },
  float64: { descr: '<f8', bytes: 8, make: (b, o, n) => new Float64Array(b, o, n) },
  float16: { descr: '<f2', bytes: 2, make: (b, o, n) => new Uint16Array(b, o, n) },
  int64: { descr: '<i8', bytes: 8, make: (b, o, n) => new BigInt64Array(b, o, n) },
  int32: { descr: '<i4', bytes: 4, make: (b, o, n) => new Int32Array(b, o, n) },
  int16: { descr: '<i2', bytes: 2, make: (b, o, n) => new Int16Array(b, o, n) },
  int8: { descr: '|i1', bytes: 1, make: (b, o, n) => new Int8Array(b, o, n) },
  uint8: { descr: '|u1', bytes: 1, make: (b, o, n) => new Uint8Array(b, o, n) },
  uint16: { descr: '<u2', bytes: 2, make: (b, o, n) => new Uint16Array(b, o, n) },
  uint32: { descr: '<u4', bytes: 4, make: (b, o, n) => new Uint32Array(b, o, n) },
  uint64: { descr: '<u8', bytes: 8, make: (b, o, n) => new BigUint64Array(b, o, n) },
  bool: { descr: '|b1', bytes: 1, make: (b, o, n) => new Uint8Array(b, o, n) },
};

const ACCEPTED_DESCRS = Object.values(DTYPES).map((d) => d.descr);
const BY_KIND = new Map<string, NpyDtype>(
  (Object.keys(DTYPES) as NpyDtype[]).map((dtype) => [DTYPES[dtype].descr.slice(1), dtype]),
);

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const MAGIC_LENGTH = 6;

export function bytesPerElement(dtype: NpyDtype): number {
  return DTYPES[dtype].bytes;
}

export function isIntegerDtype(dtype: NpyDtype): boolean {
  return dtype.startsWith('int') || dtype.startsWith('uint');
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Maps a descr string to a dtype, or explains why strata cannot read it. */
export function dtypeFromDescr(descr: string): NpyDtype {
  const order = descr[0];
  const kind = descr.slice(1);
  const dtype = BY_KIND.get(kind);
  const accepted = `accepted: ${ACCEPTED_DESCRS.join(' ')}`;
  if (kind.startsWith('O')) {
    throw new DatasetError(
      `unsupported .npy dtype '${descr}': object arrays hold pickled Python objects, not numbers; ${accepted}`,
      { descr },
    );
  }
  if (dtype === undefined || (order !== '<' && order !== '>' && order !== '|' && order !== '=')) {
    throw new DatasetError(`unsupported .npy dtype '${descr}'; ${accepted}`, { descr });
  }
  // Byte order is meaningless for one-byte types, so any marker is fine there.
  if (DTYPES[dtype].bytes > 1 && order !== '<') {
    const why = order === '>' ? 'big-endian' : 'native byte order is ambiguous in a file';
    throw new DatasetError(
      `unsupported .npy dtype '${descr}' (${why}); ${accepted} ` +
        `(convert with array.astype('${DTYPES[dtype].descr}'))`,
      { descr },
    );
  }
  return dtype;
}

// ---------------------------------------------------------------------------------------------
// The header is a Python dict literal; this reads the small subset numpy writes (strings, ints,
// booleans, None, tuples, lists, dicts) rather than trusting a regular expression with it.

type PyValue = string | number | boolean | null | PyValue[] | { [key: string]: PyValue };

class PyLiteralParser {
  private pos = 0;
  constructor(private readonly text: string) {}

  parseAll(): PyValue {
    const value = this.value();
    this.skipSpace();
    if (this.pos < this.text.length) this.fail('unexpected text after the dict');
    return value;
  }

  private fail(what: string): never {
    throw new DatasetError(`malformed .npy header: ${what} at character ${this.pos} of ${JSON.stringify(this.text)}`);
  }

  private skipSpace(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos] ?? '')) this.pos++;
  }

  private value(): PyValue {
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === '{') return this.dict();
    if (c === '(') return this.sequence(')');
    if (c === '[') return this.sequence(']');
    if (c === "'" || c === '"') return this.string();
    if (c !== undefined && /[-+0-9]/.test(c)) return this.integer();
    for (const [word, v] of [['True', true], ['False', false], ['None', null]] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return v;
      }
    }
    return this.fail(c === undefined ? 'unexpected end' : `unexpected ${JSON.stringify(c)}`);
  }

  private string(): string {
    const quote = this.text[this.pos];
    let out = '';
    this.pos++;
    while (this.pos < this.text.length && this.text[this.pos] !== quote) {
      if (this.text[this.pos] === '\\') this.pos++;
      out += this.text[this.pos] ?? '';
      this.pos++;
    }
    if (this.pos >= this.text.length) this.fail('unterminated string');
    this.pos++;
    return out;
  }

  private integer(): number {
    // Python 2 wrote longs as `3L`; such files still circulate.
    const m = /^[-+]?[0-9]+L?/.exec(this.text.slice(this.pos));
    if (!m) return this.fail('bad number');
    this.pos += m[0].length;
    const n = Number(m[0].replace('L', ''));
    if (!Number.isSafeInteger(n)) this.fail(`integer ${m[0]} out of range`);
    return n;
  }

  private sequence(close: string): PyValue[] {
    const out: PyValue[] = [];
    this.pos++;
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] === close) {
        this.pos++;
        return out;
      }
      out.push(this.value());
      this.skipSpace();
      if (this.text[this.pos] === ',') this.pos++;
      else if (this.text[this.pos] !== close) this.fail(`expected ',' or '${close}'`);
    }
  }

  private dict(): { [key: string]: PyValue } {
    const out: { [key: string]: PyValue } = {};
    this.pos++;
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] === '}') {
        this.pos++;
        return out;
      }
      const key = this.value();
      if (typeof key !== 'string') this.fail('dict key is not a string');
      this.skipSpace();
      if (this.text[this.pos] !== ':') this.fail("expected ':'");
      this.pos++;
      out[key] = this.value();
      this.skipSpace();
      if (this.text[this.pos] === ',') this.pos++;
      else if (this.text[this.pos] !== '}') this.fail("expected ',' or '}'");
    }
  }
}

/** Largest header text accepted; numpy itself refuses headers over 10,000 characters by default. */
const MAX_HEADER_TEXT = 1 << 20;

/**
 * The total header length (magic through padding) announced by the first bytes of a .npy array:
 * 10 bytes suffice for version 1.0, 12 for 2.0 and 3.0. Lets a streaming reader know how much to read.
 */
export function npyHeaderLength(prefix: Uint8Array): number {
  const checked = Math.min(prefix.length, MAGIC_LENGTH);
  for (let i = 0; i < checked; i++) {
    if (prefix[i] !== MAGIC[i]) throw new DatasetError('not a .npy array: the magic string \\x93NUMPY is missing');
  }
  if (prefix.length < MAGIC_LENGTH + 2) {
    throw new DatasetError(`truncated .npy header: ${prefix.length} bytes, not even the format version`);
  }
  const major = prefix[6] ?? 0;
  const minor = prefix[7] ?? 0;
  if (major < 1 || major > 3 || minor !== 0) {
    throw new DatasetError(`unsupported .npy format version ${major}.${minor}; accepted: 1.0, 2.0, 3.0`);
  }
  const textStart = major === 1 ? 10 : 12;
  if (prefix.length < textStart) {
    throw new DatasetError(`truncated .npy header: ${prefix.length} bytes, the length field needs ${textStart}`);
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const textLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  if (textLength > MAX_HEADER_TEXT) {
    throw new DatasetError(`.npy header claims ${textLength} bytes of text, more than the ${MAX_HEADER_TEXT} accepted`);
  }
  return textStart + textLength;
}

/**
 * Reads the header at the start of `bytes`, which needs to hold only the header, not the data.
 * Throws DatasetError when the bytes are not a .npy header strata can use.
 */
export function parseNpyHeader(bytes: Uint8Array): NpyHeader {
  const headerLength = npyHeaderLength(bytes);
  if (bytes.length < headerLength) {
    throw new DatasetError(`truncated .npy header: ${bytes.length} bytes, the header needs ${headerLength}`);
  }
  const major = bytes[6];
  const textStart = major === 1 ? 10 : 12;
  // Versions 1 and 2 store the text as latin1, version 3 as utf-8.
  const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(textStart, headerLength));
  const dict = new PyLiteralParser(text).parseAll();
  if (dict === null || typeof dict !== 'object' || Array.isArray(dict)) {
    throw new DatasetError(`malformed .npy header: not a dict: ${JSON.stringify(text)}`);
  }
  const { descr, fortran_order: fortran, shape } = dict;
  if (Array.isArray(descr)) {
    throw new DatasetError(
      `unsupported .npy dtype: structured (record) arrays are not numeric tensors; ` +
        `accepted: ${ACCEPTED_DESCRS.join(' ')}`,
    );
  }
  if (typeof descr !== 'string') throw new DatasetError(`malformed .npy header: 'descr' missing in ${JSON.stringify(text)}`);
  if (typeof fortran !== 'boolean') {
    throw new DatasetError(`malformed .npy header: 'fortran_order' missing in ${JSON.stringify(text)}`);
  }
  if (!Array.isArray(shape) || !shape.every((d): d is number => typeof d === 'number' && d >= 0)) {
    throw new DatasetError(`malformed .npy header: 'shape' is not a tuple of sizes in ${JSON.stringify(text)}`);
  }
  const dtype = dtypeFromDescr(descr);
  if (!Number.isSafeInteger(elementCount(shape) * DTYPES[dtype].bytes)) {
    throw new DatasetError(`.npy shape (${shape.join(', ')}) is too large`);
  }
  return { dtype, shape: [...shape], fortranOrder: fortran, headerLength };
}

/** Copies little-endian element bytes into a freshly allocated (hence aligned) typed array. */
export function toTypedArray(bytes: Uint8Array, dtype: NpyDtype): NpyTypedArray {
  const size = DTYPES[dtype].bytes;
  if (bytes.length % size !== 0) {
    throw new DatasetError(`${bytes.length} bytes is not a whole number of ${dtype} elements (${size} bytes each)`);
  }
  const buffer = new ArrayBuffer(bytes.length);
  new Uint8Array(buffer).set(bytes);
  return DTYPES[dtype].make(buffer, 0, bytes.length / size);
}

/** A typed view over a whole buffer the caller filled, without copying. */
export function typedArrayView(buffer: ArrayBuffer, dtype: NpyDtype): NpyTypedArray {
  return DTYPES[dtype].make(buffer, 0, buffer.byteLength / DTYPES[dtype].bytes);
}

// ---------------------------------------------------------------------------------------------
// Writing

export type NpyData = NpyTypedArray | ArrayLike<number> | ArrayLike<bigint>;

function isTypedArrayFor(data: NpyData, dtype: NpyDtype): data is NpyTypedArray {
  switch (dtype) {
    case 'float32':
      return data instanceof Float32Array;
    case 'float64':
      return data instanceof Float64Array;
    case 'float16':
    case 'uint16':
      return data instanceof Uint16Array;
    case 'int64':
      return data instanceof BigInt64Array;
    case 'int32':
      return data instanceof Int32Array;
    case 'int16':
      return data instanceof Int16Array;
    case 'int8':
      return data instanceof Int8Array;
    case 'uint8':
    case 'bool':
      return data instanceof Uint8Array;
    case 'uint32':
      return data instanceof Uint32Array;
    case 'uint64':
      return data instanceof BigUint64Array;
  }
}

/** Element bytes of `data` as `dtype`, converting plain arrays (float16 must already be raw bits). */
function elementBytes(data: NpyData, dtype: NpyDtype): Uint8Array {
  let typed: NpyTypedArray;
  if (isTypedArrayFor(data, dtype)) typed = data;
  else if (ArrayBuffer.isView(data)) {
    throw new InvalidArgumentError('data', `${data.constructor.name} does not hold ${dtype} elements`);
  } else {
    typed = DTYPES[dtype].make(new ArrayBuffer(data.length * DTYPES[dtype].bytes), 0, data.length);
    const target = typed as unknown as { [i: number]: number | bigint };
    const wide = dtype === 'int64' || dtype === 'uint64';
    for (let i = 0; i < data.length; i++) {
      const v = data[i] as number | bigint;
      target[i] = wide ? BigInt(v) : Number(v);
    }
  }
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

function checkShape(shape: readonly number[]): void {
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new InvalidArgumentError('shape', `sizes must be non-negative integers, got (${shape.join(', ')})`);
  }
}

/** The header numpy itself would write: version 1.0 unless the text needs more, padded to 64 bytes. */
export function encodeNpyHeader(dtype: NpyDtype, shape: readonly number[], fortranOrder = false): Uint8Array {
  checkShape(shape);
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${DTYPES[dtype].descr}', 'fortran_order': ${fortranOrder ? 'True' : 'False'}, 'shape': ${tuple}, }`;
  const encoded = new TextEncoder().encode(dict);
  const version = encoded.length + 1 + 10 + 63 > 0xffff ? 2 : 1;
  const textStart = version === 1 ? 10 : 12;
  const total = Math.ceil((textStart + encoded.length + 1) / 64) * 64;
  const out = new Uint8Array(total).fill(0x20);
  out.set(MAGIC, 0);
  out[6] = version;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, total - textStart, true);
  else view.setUint32(8, total - textStart, true);
  out.set(encoded, textStart);
  out[total - 1] = 0x0a;
  return out;
}

export function encodeNpy(data: NpyData, dtype: NpyDtype, shape: readonly number[]): Uint8Array {
  checkShape(shape);
  const body = elementBytes(data, dtype);
  const expected = elementCount(shape);
  if (body.length !== expected * DTYPES[dtype].bytes) {
    throw new InvalidArgumentError('data', `${body.length / DTYPES[dtype].bytes} elements do not fill shape (${shape.join(', ')})`);
  }
  const header = encodeNpyHeader(dtype, shape);
  const out = new Uint8Array(header.length + body.length);
  out.set(header, 0);
  out.set(body, header.length);
  return out;
}

// ---------------------------------------------------------------------------------------------
// .npz writing. The only installed zip writer (adm-zip) arrives as onnxruntime-node's install-time
// dependency, not one of ours, and it builds archives in memory; a stored (uncompressed) archive
// is a few fixed-layout records, so it is written here, streaming, without data descriptors so
// that every reader (numpy's zipfile, yauzl, unzip) accepts it.

let crcTable: Uint32Array | undefined;

/** zlib.crc32 appeared in Node 20.15; older Node 20 releases fall back to a table. */
function crc32(bytes: Uint8Array, previous: number): number {
  const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
  if (typeof native === 'function') return native(bytes, previous);
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = ~previous >>> 0;
  for (let i = 0; i < bytes.length; i++) c = (crcTable[(c ^ (bytes[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8);
  return ~c >>> 0;
}

export interface NpzEntry {
  data: NpyData;
  dtype: NpyDtype;
  shape: readonly number[];
}

export interface NpzStreamEntry {
  dtype: NpyDtype;
  shape: readonly number[];
  /** Called twice (the checksum precedes the data in the archive), so it must yield the same bytes each time. */
  chunks: () => Iterable<NpyData>;
}

// A fixed timestamp (1980-01-01 00:00, the DOS epoch) keeps archives byte-for-byte reproducible.
const DOS_TIME = 0;
const DOS_DATE = (0 << 9) | (1 << 5) | 1;
const UTF8_NAMES = 0x0800;

/** Yields a stored .npz archive piece by piece, so an archive larger than memory can be written. */
export function* encodeNpzStream(entries: Record<string, NpzStreamEntry>): Generator<Uint8Array> {
  const central: Uint8Array[] = [];
  let offset = 0;
  const names = Object.keys(entries);
  if (names.length > 0xfffe) throw new InvalidArgumentError('entries', 'more than 65534 arrays needs zip64');
  for (const name of names) {
    const entry = entries[name] as NpzStreamEntry;
    const header = encodeNpyHeader(entry.dtype, entry.shape);
    const dataBytes = elementCount(entry.shape) * DTYPES[entry.dtype].bytes;
    const size = header.length + dataBytes;
    if (size > 0xfffffffe || offset > 0xfffffffe) {
      throw new InvalidArgumentError('entries', `array '${name}' would need zip64 (over 4 GiB), which this writer does not produce`);
    }
    let crc = crc32(header, 0);
    let seen = 0;
    for (const chunk of entry.chunks()) {
      const bytes = elementBytes(chunk, entry.dtype);
      crc = crc32(bytes, crc);
      seen += bytes.length;
    }
    if (seen !== dataBytes) {
      throw new InvalidArgumentError('entries', `array '${name}' yielded ${seen} bytes, shape (${entry.shape.join(', ')}) needs ${dataBytes}`);
    }
    const fileName = new TextEncoder().encode(`${name}.npy`);
    const local = new Uint8Array(30 + fileName.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(6, UTF8_NAMES, true);
    lv.setUint16(8, 0, true);
    lv.setUint16(10, DOS_TIME, true);
    lv.setUint16(12, DOS_DATE, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, size, true);
    lv.setUint32(22, size, true);
    lv.setUint16(26, fileName.length, true);
    lv.setUint16(28, 0, true);
    local.set(fileName, 30);

    const record = new Uint8Array(46 + fileName.length);
    const cv = new DataView(record.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(8, UTF8_NAMES, true);
    cv.setUint16(10, 0, true);
    cv.setUint16(12, DOS_TIME, true);
    cv.setUint16(14, DOS_DATE, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, size, true);
    cv.setUint32(24, size, true);
    cv.setUint16(28, fileName.length, true);
    cv.setUint32(42, offset, true);
    record.set(fileName, 46);
    central.push(record);

    yield local;
    yield header;
    for (const chunk of entry.chunks()) yield elementBytes(chunk, entry.dtype);
    offset += local.length + size;
  }
  let centralSize = 0;
  for (const record of central) {
    centralSize += record.length;
    yield record;
  }
  if (offset > 0xfffffffe) throw new InvalidArgumentError('entries', 'archive would need zip64 (over 4 GiB)');
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, names.length, true);
  ev.setUint16(10, names.length, true);
  ev.setUint32(12, centralSize, true);
  ev.setUint32(16, offset, true);
  yield end;
}

/** A whole stored .npz archive in memory; entry `x` becomes `x.npy`, as numpy.savez names them. */
export function encodeNpz(entries: Record<string, NpzEntry>): Uint8Array {
  const streamed: Record<string, NpzStreamEntry> = {};
  for (const [name, e] of Object.entries(entries)) {
    streamed[name] = { dtype: e.dtype, shape: e.shape, chunks: () => [e.data] };
  }
  const parts = [...encodeNpzStream(streamed)];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
