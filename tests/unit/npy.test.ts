import { test } from 'node:test';
import assert from 'node:assert/strict';
import yauzl from 'yauzl';
import { DatasetError, InvalidArgumentError } from '../../service/src/core/errors.js';
import {
  bytesPerElement,
  encodeNpy,
  encodeNpz,
  encodeNpzStream,
  parseNpyHeader,
  toTypedArray,
  typedArrayView,
  type NpyDtype,
} from '../../service/src/core/data/npy.js';

// Files written by numpy 1.24 (np.save / numpy.lib.format.write_array), kept verbatim as the
// independent reference for what the parser must accept and what the writer must produce.
const NUMPY = {
  /** np.arange(6, dtype='<i4').reshape(2, 3), version 1.0 */
  v1Int32: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGk0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAQAAAAIAAAADAAAABAAAAAUAAAA=',
  /** np.array([1.5, -2.25, 3.0], '<f8'), version 2.0 */
  v2Float64: 'k05VTVBZAgB0AAAAeydkZXNjcic6ICc8ZjgnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMywpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAD4PwAAAAAAAALAAAAAAAAACEA=',
  /** np.array([[7], [9]], 'u1'), version 3.0 */
  v3Uint8: 'k05VTVBZAwB0AAAAeydkZXNjcic6ICd8dTEnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMiwgMSksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoHCQ==',
  /** np.array([1.0], '>f4') */
  bigEndian: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPmY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDEsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAo/gAAA',
  /** header of np.array([{'a': 1}], dtype=object) saved with allow_pickle */
  objectHeader: 'k05VTVBZAQB2AHsnZGVzY3InOiAnfE8nLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMSwpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAo=',
  /** np.zeros(2, dtype=[('x', '<f4'), ('y', '<i4')]) */
  structured: 'k05VTVBZAQB2AHsnZGVzY3InOiBbKCd4JywgJzxmNCcpLCAoJ3knLCAnPGk0JyldLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMiwpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAAAAAAAAAAAAAAA',
  /** np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)) */
  fortran: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBUcnVlLCAnc2hhcGUnOiAoMiwgMyksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAABAQAAAgD8AAIBAAAAAQAAAoEA=',
  /** np.array(2.5, '<f4'): a 0-d array */
  scalar: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKCksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAACBA',
};

function bytes(b64: string): Uint8Array {
  return new Uint8Array(Buffer.from(b64, 'base64'));
}

/** A hand-built header, independent of the module's writer. */
function handHeader(dict: string, version = 1): Uint8Array {
  const text = Buffer.from(dict + '\n', version === 3 ? 'utf8' : 'latin1');
  const start = version === 1 ? 10 : 12;
  const out = new Uint8Array(start + text.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, text.length, true);
  else view.setUint32(8, text.length, true);
  out.set(text, start);
  return out;
}

function rejects(fn: () => unknown, ...fragments: (string | RegExp)[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof DatasetError, `expected DatasetError, got ${String(err)}`);
    assert.equal(err.code, 'BAD_DATASET');
    for (const f of fragments) {
      if (typeof f === 'string') assert.ok(err.message.includes(f), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(f)}`);
      else assert.match(err.message, f);
    }
    return true;
  });
}

test('parses numpy version 1.0, 2.0 and 3.0 headers and reads their data', () => {
  const v1 = bytes(NUMPY.v1Int32);
  const h1 = parseNpyHeader(v1);
  assert.deepEqual(h1, { dtype: 'int32', shape: [2, 3], fortranOrder: false, headerLength: 128 });
  assert.deepEqual([...toTypedArray(v1.subarray(h1.headerLength), h1.dtype)], [0, 1, 2, 3, 4, 5]);

  const v2 = bytes(NUMPY.v2Float64);
  const h2 = parseNpyHeader(v2);
  assert.deepEqual(h2, { dtype: 'float64', shape: [3], fortranOrder: false, headerLength: 128 });
  assert.deepEqual([...toTypedArray(v2.subarray(h2.headerLength), h2.dtype)], [1.5, -2.25, 3.0]);

  const v3 = bytes(NUMPY.v3Uint8);
  const h3 = parseNpyHeader(v3);
  assert.deepEqual(h3, { dtype: 'uint8', shape: [2, 1], fortranOrder: false, headerLength: 128 });
  assert.deepEqual([...toTypedArray(v3.subarray(h3.headerLength), h3.dtype)], [7, 9]);

  const scalar = parseNpyHeader(bytes(NUMPY.scalar));
  assert.deepEqual(scalar.shape, []);
  const fortran = parseNpyHeader(bytes(NUMPY.fortran));
  assert.equal(fortran.fortranOrder, true);
});

test('the header needs only its own bytes, not the data', () => {
  const v1 = bytes(NUMPY.v1Int32);
  assert.equal(parseNpyHeader(v1.subarray(0, 128)).headerLength, 128);
});

test('accepts every supported descr and reports its element size', () => {
  const table: [string, NpyDtype, number][] = [
    ['<f4', 'float32', 4],
    ['<f8', 'float64', 8],
    ['<f2', 'float16', 2],
    ['<i8', 'int64', 8],
    ['<i4', 'int32', 4],
    ['<i2', 'int16', 2],
    ['|i1', 'int8', 1],
    ['|u1', 'uint8', 1],
    ['<u2', 'uint16', 2],
    ['<u4', 'uint32', 4],
    ['<u8', 'uint64', 8],
    ['|b1', 'bool', 1],
  ];
  for (const [descr, dtype, size] of table) {
    const h = parseNpyHeader(handHeader(`{'descr': '${descr}', 'fortran_order': False, 'shape': (4, 5), }`));
    assert.equal(h.dtype, dtype, descr);
    assert.deepEqual(h.shape, [4, 5]);
    assert.equal(bytesPerElement(dtype), size, descr);
  }
});

test('reads the header variants other writers produce', () => {
  // key order, double quotes, no trailing comma, Python 2 longs, 1-tuples, extra spaces, version 2 and 3
  const h = parseNpyHeader(handHeader(`{"shape": (3L, 2L), "fortran_order": False, "descr": "<f4"}`));
  assert.deepEqual(h.shape, [3, 2]);
  assert.deepEqual(parseNpyHeader(handHeader(`{'descr':'<i8','fortran_order':False,'shape':(7,)}`, 2)).shape, [7]);
  const v3 = handHeader(`{'descr': '<u2', 'fortran_order': False, 'shape': ( 1 , 2 , 3 ), }`, 3);
  assert.deepEqual(parseNpyHeader(v3), { dtype: 'uint16', shape: [1, 2, 3], fortranOrder: false, headerLength: v3.length });
});

test('rejects big-endian, object and structured arrays, naming what was given and what is accepted', () => {
  rejects(() => parseNpyHeader(bytes(NUMPY.bigEndian)), "'>f4'", 'big-endian', 'accepted: <f4 <f8 <f2 <i8 <i4 <i2 |i1 |u1 <u2 <u4 <u8 |b1');
  rejects(() => parseNpyHeader(bytes(NUMPY.objectHeader)), "'|O'", 'object', 'accepted: <f4');
  rejects(() => parseNpyHeader(bytes(NUMPY.structured)), 'structured', 'accepted: <f4');
  rejects(() => parseNpyHeader(handHeader(`{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }`)), "'<c8'", 'accepted:');
  rejects(() => parseNpyHeader(handHeader(`{'descr': '<U10', 'fortran_order': False, 'shape': (1,), }`)), "'<U10'");
});

test('rejects malformed and truncated headers with a message that says so', () => {
  const good = bytes(NUMPY.v1Int32);
  rejects(() => parseNpyHeader(new TextEncoder().encode('PK\x03\x04 not numpy at all')), 'not a .npy array');
  rejects(() => parseNpyHeader(good.subarray(0, 4)), 'truncated');
  rejects(() => parseNpyHeader(good.subarray(0, 9)), 'truncated', 'length field');
  rejects(() => parseNpyHeader(good.subarray(0, 60)), 'truncated', 'needs 128');
  const future = good.slice(0, 128);
  future[6] = 4;
  rejects(() => parseNpyHeader(future), 'version 4.0', 'accepted: 1.0, 2.0, 3.0');
  rejects(() => parseNpyHeader(handHeader(`{'descr': '<f4', 'fortran_order': False, }`)), "'shape'");
  rejects(() => parseNpyHeader(handHeader(`{'descr': '<f4', 'shape': (1,), }`)), "'fortran_order'");
  rejects(() => parseNpyHeader(handHeader(`{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }`)), "'shape'");
  rejects(() => parseNpyHeader(handHeader(`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3`)), 'malformed');
  rejects(() => parseNpyHeader(handHeader(`['descr', '<f4']`)), 'not a dict');
});

test('encodeNpy writes exactly the bytes numpy writes', () => {
  assert.deepEqual(encodeNpy(Int32Array.from([0, 1, 2, 3, 4, 5]), 'int32', [2, 3]), bytes(NUMPY.v1Int32));
  assert.deepEqual(encodeNpy([2.5], 'float32', []), bytes(NUMPY.scalar));
});

test('encodeNpy → parseNpyHeader → toTypedArray round-trips every dtype', () => {
  const cases: [NpyDtype, ArrayLike<number> | ArrayLike<bigint>][] = [
    ['float32', Float32Array.from([0.5, -1.25, 3e-8, 1e30, -0])],
    ['float64', Float64Array.from([Math.PI, -1e-300, 1e300, 0, 42])],
    ['float16', Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000])],
    ['int64', BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n, 5n])],
    ['int32', Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 0, -1, 5])],
    ['int16', Int16Array.from([-32768, 32767, 0, -1, 5])],
    ['int8', Int8Array.from([-128, 127, 0, -1, 5])],
    ['uint8', Uint8Array.from([0, 255, 1, 2, 3])],
    ['uint16', Uint16Array.from([0, 65535, 1, 2, 3])],
    ['uint32', Uint32Array.from([0, 2 ** 32 - 1, 1, 2, 3])],
    ['uint64', BigUint64Array.from([0n, 2n ** 64n - 1n, 1n, 2n, 3n])],
    ['bool', Uint8Array.from([1, 0, 0, 1, 1])],
  ];
  for (const [dtype, data] of cases) {
    const file = encodeNpy(data, dtype, [5]);
    assert.equal(file.length % 64, (5 * bytesPerElement(dtype)) % 64, `${dtype}: header padded to 64 bytes`);
    const h = parseNpyHeader(file);
    assert.equal(h.dtype, dtype);
    assert.deepEqual(h.shape, [5]);
    // Copy from an odd offset: the typed array must come out aligned anyway.
    const shifted = new Uint8Array(file.length + 1);
    shifted.set(file, 1);
    const out = toTypedArray(shifted.subarray(1 + h.headerLength), dtype);
    assert.deepEqual(Array.from(out as ArrayLike<number>), Array.from(data as ArrayLike<number>), dtype);
    assert.equal(out.byteOffset, 0);
  }
});

test('plain arrays are converted; wrong typed arrays and sizes are refused', () => {
  const h = parseNpyHeader(encodeNpy([1, 2, 3], 'int64', [3]));
  assert.equal(h.dtype, 'int64');
  assert.throws(() => encodeNpy(new Float64Array(3), 'float32', [3]), InvalidArgumentError);
  assert.throws(() => encodeNpy(new Float32Array(5), 'float32', [2, 3]), /do not fill shape/);
  assert.throws(() => encodeNpy(new Float32Array(1), 'float32', [1.5]), /non-negative integers/);
  rejects(() => toTypedArray(new Uint8Array(6), 'float32'), 'not a whole number');
});

test('a shape too large for the header text switches to version 2.0', () => {
  const shape = Array.from({ length: 30000 }, () => 1);
  const file = encodeNpy(new Uint8Array(1), 'uint8', shape);
  assert.equal(file[6], 2);
  const h = parseNpyHeader(file);
  assert.equal(h.shape.length, 30000);
  assert.equal(h.headerLength % 64, 0);
  assert.equal(file.length, h.headerLength + 1);
});

test('typedArrayView wraps a buffer without copying', () => {
  const buffer = new ArrayBuffer(16);
  const view = typedArrayView(buffer, 'float64');
  assert.ok(view instanceof Float64Array);
  assert.equal(view.length, 2);
  assert.equal(view.buffer, buffer);
});

/** Bitwise CRC-32 (IEEE), written out independently of the module's table and of zlib. */
function referenceCrc32(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

async function unzip(archive: Uint8Array): Promise<Map<string, { data: Uint8Array; crc: number; method: number }>> {
  const zip = await yauzl.fromBufferPromise(Buffer.from(archive), { lazyEntries: true });
  const out = new Map<string, { data: Uint8Array; crc: number; method: number }>();
  for await (const entry of zip.eachEntry()) {
    const chunks: Buffer[] = [];
    for await (const chunk of await zip.openReadStreamPromise(entry)) chunks.push(chunk as Buffer);
    out.set(entry.fileName, { data: new Uint8Array(Buffer.concat(chunks)), crc: entry.crc32, method: entry.compressionMethod });
  }
  return out;
}

test('encodeNpz makes a stored zip of name.npy members with correct checksums', async () => {
  const x = Float32Array.from({ length: 24 }, (_, i) => i / 3);
  const labels = BigInt64Array.from([3n, 1n]);
  const archive = encodeNpz({
    x: { data: x, dtype: 'float32', shape: [2, 3, 4] },
    labels: { data: labels, dtype: 'int64', shape: [2] },
  });
  const members = await unzip(archive);
  assert.deepEqual([...members.keys()], ['x.npy', 'labels.npy']);
  for (const [name, m] of members) {
    assert.equal(m.method, 0, `${name} is stored`);
    assert.equal(m.crc, referenceCrc32(m.data), `${name} checksum`);
  }
  assert.deepEqual(members.get('x.npy')?.data, encodeNpy(x, 'float32', [2, 3, 4]));
  assert.deepEqual(members.get('labels.npy')?.data, encodeNpy(labels, 'int64', [2]));
  // Fixed timestamps make the archive reproducible.
  assert.deepEqual(encodeNpz({ x: { data: x, dtype: 'float32', shape: [2, 3, 4] }, labels: { data: labels, dtype: 'int64', shape: [2] } }), archive);
});

test('encodeNpzStream assembles chunks and checks they fill the shape', async () => {
  const chunks = (): Float32Array[] => [Float32Array.from([1, 2]), Float32Array.from([3, 4, 5, 6])];
  const parts = [...encodeNpzStream({ a: { dtype: 'float32', shape: [3, 2], chunks } })];
  const members = await unzip(new Uint8Array(Buffer.concat(parts)));
  assert.deepEqual(members.get('a.npy')?.data, encodeNpy(Float32Array.from([1, 2, 3, 4, 5, 6]), 'float32', [3, 2]));
  assert.throws(() => [...encodeNpzStream({ a: { dtype: 'float32', shape: [4, 2], chunks } })], /yielded 24 bytes.*needs 32/);
});
