import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DatasetError, InvalidArgumentError } from '../../service/src/core/errors.js';
import { encodeNpy, encodeNpz, encodeNpzStream } from '../../service/src/core/data/npy.js';
import { openDataset, type Batch, type ModelInputSpec } from '../../service/src/runtime/dataset.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-dataset-test-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, contents: Uint8Array | string): string {
  const path = join(dir, name);
  writeFileSync(path, contents);
  return path;
}

async function collect(batches: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of batches) out.push(b);
  return out;
}

async function rejectsWith(promise: () => Promise<unknown>, ...fragments: string[]): Promise<DatasetError> {
  let caught: unknown;
  try {
    await promise();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof DatasetError, `expected DatasetError, got ${caught instanceof Error ? caught.stack : String(caught)}`);
  for (const f of fragments) assert.ok(caught.message.includes(f), `message ${JSON.stringify(caught.message)} lacks ${JSON.stringify(f)}`);
  return caught;
}

function throwsWith(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof DatasetError, `expected DatasetError, got ${String(err)}`);
    for (const f of fragments) assert.ok(err.message.includes(f), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(f)}`);
    return true;
  });
}

const model = (name: string, dims: (number | string | null)[], dtype = 'float32'): ModelInputSpec => ({ name, dtype, dims });

// Two inputs and labels: 37 samples, so batches of 8 end with a partial one.
const N = 37;
const image = Float32Array.from({ length: N * 20 }, (_, i) => Math.sin(i) * 100);
const mask = Int32Array.from({ length: N * 3 }, (_, i) => (i * 7919) % 1000 - 500);
const labels = BigInt64Array.from({ length: N }, (_, i) => BigInt(i % 10));

test('streams an .npz in batches that reassemble to the source arrays', async () => {
  const path = file(
    'two.npz',
    encodeNpz({
      image: { data: image, dtype: 'float32', shape: [N, 1, 4, 5] },
      mask: { data: mask, dtype: 'int32', shape: [N, 3] },
      labels: { data: labels, dtype: 'int64', shape: [N] },
    }),
  );
  const ds = await openDataset(path);
  assert.equal(ds.format, 'npz');
  assert.equal(ds.samples, N);
  assert.equal(ds.hasLabels, true);
  assert.deepEqual(ds.arrays, [
    { name: 'image', dtype: 'float32', shape: [N, 1, 4, 5] },
    { name: 'mask', dtype: 'int32', shape: [N, 3] },
    { name: 'labels', dtype: 'int64', shape: [N] },
  ]);
  assert.equal(ds.sha256, createHash('sha256').update(readFileSync(path)).digest('hex'));

  const batches = await collect(ds.batches(8));
  assert.deepEqual(batches.map((b) => [b.start, b.count]), [[0, 8], [8, 8], [16, 8], [24, 8], [32, 5]]);
  const got = { image: [] as number[], mask: [] as number[], labels: [] as bigint[] };
  for (const b of batches) {
    assert.deepEqual(Object.keys(b.inputs).sort(), ['image', 'mask']);
    assert.deepEqual(b.inputs.image?.dims, [b.count, 1, 4, 5]);
    assert.deepEqual(b.inputs.mask?.dims, [b.count, 3]);
    assert.equal(b.inputs.image?.dtype, 'float32');
    assert.ok(b.inputs.image?.data instanceof Float32Array);
    assert.ok(b.inputs.mask?.data instanceof Int32Array);
    assert.ok(b.labels instanceof BigInt64Array);
    got.image.push(...(b.inputs.image?.data as Float32Array));
    got.mask.push(...(b.inputs.mask?.data as Int32Array));
    got.labels.push(...(b.labels as BigInt64Array));
  }
  assert.deepEqual(got.image, [...image]);
  assert.deepEqual(got.mask, [...mask]);
  assert.deepEqual(got.labels, [...labels]);

  const limited = await collect(ds.batches(16, { limit: 20 }));
  assert.deepEqual(limited.map((b) => [b.start, b.count]), [[0, 16], [16, 4]]);
  assert.deepEqual([...(limited[1]?.labels as BigInt64Array)], [6n, 7n, 8n, 9n]);
  assert.equal((await collect(ds.batches(4, { limit: 0 }))).length, 0);

  // A binding keys the inputs by model input name.
  const binding = ds.validateAgainst([model('image', ['batch', 1, 4, 5]), model('mask', ['batch', 3], 'int32')]);
  const bound = await collect(ds.batches(40, { binding }));
  assert.equal(bound.length, 1);
  assert.deepEqual(Object.keys(bound[0]?.inputs ?? {}).sort(), ['image', 'mask']);
});

test('stopping early releases the archive and a new pass starts from the beginning', async () => {
  const path = file('again.npz', encodeNpz({ x: { data: image, dtype: 'float32', shape: [N, 20] } }));
  const ds = await openDataset(path);
  const fds = (): number => (existsSync('/proc/self/fd') ? readdirSync('/proc/self/fd').length : 0);
  const before = fds();
  for (let i = 0; i < 5; i++) {
    for await (const b of ds.batches(4)) {
      assert.equal(b.start, 0);
      break;
    }
  }
  assert.ok(fds() <= before, 'file descriptors were released');
  const all = await collect(ds.batches(100));
  assert.deepEqual([...(all[0]?.inputs.x?.data as Float32Array)], [...image]);
});

// np.savez_compressed(f, x=np.arange(24, dtype=np.float32).reshape(4, 1, 2, 3) / 8, labels=np.array([3, 1, 4, 1]))
// as numpy 1.24 wrote it: deflated members with zip64 extra fields.
const NUMPY_NPZ =
  'UEsDBBQAAAAIAAAAIQDbjfUBjAAAAOAAAAAFABQAeC5ucHkBABAA4AAAAAAAAACMAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TZqKuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GiY6CoY6CkY6CsaaOgq1CmQALgYIsGNgaADiA0DMYM/AoADEDkCcAMQNQDwBiBcA8QYgPgDEF4D4ARB/AGIGBwYGDiAWAGIJIFYAYg0gNgBiCwcAUEsDBBQAAAAIAAAAIQDlpXEJTQAAAKAAAAAKABQAbGFiZWxzLm5weQEAEACgAAAAAAAAAE0AAAAAAAAAm+wX6hsQychQxlCtnpJanFykbqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaJjqaOgq1ChQALmYGCGCE0ixofABQSwECFAMUAAAACAAAACEA2431AYwAAADgAAAABQAAAAAAAAAAAAAAgAEAAAAAeC5ucHlQSwECFAMUAAAACAAAACEA5aVxCU0AAACgAAAACgAAAAAAAAAAAAAAgAHDAAAAbGFiZWxzLm5weVBLBQYAAAAAAgACAGsAAABMAQAAAAA=';

test('reads a deflated .npz written by numpy', async () => {
  const ds = await openDataset(file('numpy.npz', new Uint8Array(Buffer.from(NUMPY_NPZ, 'base64'))));
  assert.deepEqual(ds.arrays, [
    { name: 'x', dtype: 'float32', shape: [4, 1, 2, 3] },
    { name: 'labels', dtype: 'int64', shape: [4] },
  ]);
  const batches = await collect(ds.batches(3));
  assert.deepEqual([...(batches[0]?.inputs.x?.data as Float32Array), ...(batches[1]?.inputs.x?.data as Float32Array)], Array.from({ length: 24 }, (_, i) => i / 8));
  assert.deepEqual([...(batches[0]?.labels as BigInt64Array), ...(batches[1]?.labels as BigInt64Array)], [3n, 1n, 4n, 1n]);
  const binding = ds.validateAgainst([model('input', ['batch', 1, 2, 3])]);
  assert.deepEqual(binding.inputs, { input: 'x' }, 'a lone array feeds a lone input whatever its name');
});

test('a lone .npy feeds a single-input model', async () => {
  const path = file('images.npy', encodeNpy(image, 'float32', [N, 1, 4, 5]));
  const ds = await openDataset(path);
  assert.equal(ds.format, 'npy');
  assert.deepEqual(ds.arrays, [{ name: 'images', dtype: 'float32', shape: [N, 1, 4, 5] }]);
  assert.equal(ds.hasLabels, false);
  assert.equal(ds.sha256, createHash('sha256').update(readFileSync(path)).digest('hex'));
  const binding = ds.validateAgainst([model('input', ['N', 1, 'h', 'w'])]);
  assert.deepEqual(binding.inputs, { input: 'images' });
  assert.deepEqual(binding.symbolicDims, { h: 4, w: 5 });
  // Unnamed dynamic dimensions accept any size and bind nothing; fixed ones are still checked.
  assert.deepEqual(ds.validateAgainst([model('input', [null, 1, null, 5])]).symbolicDims, {});
  throwsWith(() => ds.validateAgainst([model('input', [null, 1, null, 6])]), 'dimension 3 is 5, must be 6');
  const batches = await collect(ds.batches(10, { binding }));
  assert.deepEqual(batches.map((b) => b.count), [10, 10, 10, 7]);
  assert.equal(batches[0]?.labels, undefined);
  assert.deepEqual(batches.flatMap((b) => [...(b.inputs.input?.data as Float32Array)]), [...image]);
});

test('validateAgainst names expected and given for each mismatch', async () => {
  const ds = await openDataset(
    file(
      'mismatch.npz',
      encodeNpz({
        x: { data: new Float64Array(10 * 12), dtype: 'float64', shape: [10, 3, 4] },
        y: { data: new Float32Array(9 * 2), dtype: 'float32', shape: [9, 2] },
        labels: { data: new Float32Array(10), dtype: 'float32', shape: [10] },
      }),
    ),
  );
  throwsWith(() => ds.validateAgainst([model('image', ['b', 3, 4]), model('y', ['b', 2])]), "no array for model input 'image'", "model inputs: 'image', 'y'", "data set arrays: 'x', 'y', 'labels'");
  throwsWith(() => ds.validateAgainst([model('x', ['b', 3, 4]), model('y', ['b', 2])]), "'x' is float64 but the model expects float32");
  throwsWith(() => ds.validateAgainst([model('x', ['b', 3, 5], 'float64'), model('y', ['b', 2])]), "'x' has per-sample shape [3, 4]", 'expects [3, 5]', 'dimension 2 is 4, must be 5');
  throwsWith(() => ds.validateAgainst([model('x', ['b', 12], 'float64'), model('y', ['b', 2])]), 'per-sample shape [3, 4] (array shape [10, 3, 4])', 'expects [12] per sample');
  throwsWith(() => ds.validateAgainst([model('x', ['b', 3, 4], 'float64'), model('y', ['b', 2])]), "arrays disagree on the number of samples: 'x' has 10, 'y' has 9");
  throwsWith(() => ds.validateAgainst([model('x', ['b', 's', 4], 'float64'), model('y', ['b', 's'])]), "symbolic dimension 's' is 3 in one input but 2 in 'y'");
  const multi = await rejectsWith(async () => ds.validateAgainst([model('x', ['b', 3, 4], 'float64')]), "'labels' must hold integer class indices, but it is float32");
  assert.ok(Array.isArray(multi.details.problems));

  const twoDLabels = await openDataset(
    file(
      'labels2d.npz',
      encodeNpz({
        x: { data: new Float32Array(8), dtype: 'float32', shape: [4, 2] },
        extra: { data: new Float32Array(4), dtype: 'float32', shape: [4] },
        labels: { data: new Int32Array(8), dtype: 'int32', shape: [4, 2] },
      }),
    ),
  );
  throwsWith(() => twoDLabels.validateAgainst([model('x', ['b', 2])]), "'labels' must be 1-D");

  const extra = await openDataset(
    file(
      'extra.npz',
      encodeNpz({
        x: { data: new Float32Array(8), dtype: 'float32', shape: [4, 2] },
        notes: { data: new Float32Array(3), dtype: 'float32', shape: [3] },
        labels: { data: new Int32Array(5), dtype: 'int32', shape: [5] },
      }),
    ),
  );
  throwsWith(() => extra.validateAgainst([model('x', ['b', 2])]), "'labels' has 5 entries but the inputs have 4 samples");
  const ok = await openDataset(
    file(
      'ok-extra.npz',
      encodeNpz({
        x: { data: new Float32Array(8), dtype: 'float32', shape: [4, 2] },
        notes: { data: new Float32Array(3), dtype: 'float32', shape: [3] },
      }),
    ),
  );
  const binding = ok.validateAgainst([model('x', [1, 2])]);
  assert.deepEqual(binding.unused, ['notes']);
  assert.match(binding.warnings.join('\n'), /arrays not fed to the model: 'notes'/);
  assert.equal(binding.fixedBatch, 1);
  // The unused array has its own length; with the binding only 'x' is read.
  assert.equal((await collect(ok.batches(3, { binding }))).length, 2);
  throwsWith(() => ok.batches(3), "'x' has 4", "'notes' has 3");
});

test('rejects Fortran-ordered and scalar arrays where they would be fed', async () => {
  const ds = await openDataset(
    file(
      'odd.npz',
      encodeNpz({
        s: { data: new Float32Array(1), dtype: 'float32', shape: [] },
      }),
    ),
  );
  throwsWith(() => ds.validateAgainst([model('input', ['b', 2])]), "array 's' is a scalar");
  // np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3))
  const fortran = Buffer.from(
    'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBUcnVlLCAnc2hhcGUnOiAoMiwgMyksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAABAQAAAgD8AAIBAAAAAQAAAoEA=',
    'base64',
  );
  const f = await openDataset(file('fortran.npy', new Uint8Array(fortran)));
  throwsWith(() => f.validateAgainst([model('input', ['b', 3])]), 'Fortran order', 'ascontiguousarray');
  throwsWith(() => f.batches(1), 'Fortran order');
});

test('bad files become DatasetErrors that say what is wrong', async () => {
  await rejectsWith(() => openDataset(join(dir, 'missing.npz')), 'data set not found', 'missing.npz');
  await rejectsWith(() => openDataset(dir), 'not a regular file');
  await rejectsWith(() => openDataset(file('text.npz', 'x,y\n1,2\n')), 'neither a .npz (zip) archive nor a .npy array');
  await rejectsWith(() => openDataset(file('empty.npy', '')), 'the file is empty');

  const archive = encodeNpz({ x: { data: image, dtype: 'float32', shape: [N, 20] } });
  await rejectsWith(() => openDataset(file('half.npz', archive.subarray(0, archive.length >> 1))), 'half.npz', 'not a readable .npz');
  await rejectsWith(() => openDataset(file('nothing.npz', encodeNpz({}))), 'holds no .npy arrays');

  const npy = encodeNpy(image, 'float32', [N, 20]);
  await rejectsWith(() => openDataset(file('short.npy', npy.subarray(0, npy.length - 4))), 'short.npy', 'truncated');
  await rejectsWith(() => openDataset(file('header-only.npy', npy.subarray(0, 40))), 'truncated');

  // A member whose header promises more samples than it holds.
  const lying = Buffer.from(archive);
  const at = lying.indexOf(`(${N}, 20)`);
  lying.write(`(${N + 1}, 20)`, at, 'latin1');
  await rejectsWith(() => openDataset(file('lying.npz', new Uint8Array(lying))), "array 'x'", 'truncated');

  // A big-endian member (numpy: np.array([1.0], '>f4')) inside an archive.
  const be = Buffer.from(
    'k05VTVBZAQB2AHsnZGVzY3InOiAnPmY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDEsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAo/gAAA',
    'base64',
  );
  const beArchive = Buffer.from(encodeNpz({ w: { data: new Uint8Array(be.length - 128), dtype: 'uint8', shape: [be.length - 128] } }));
  beArchive.set(be, beArchive.indexOf(Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59])));
  await rejectsWith(() => openDataset(file('be.npz', new Uint8Array(beArchive))), "array 'w'", "'>f4'", 'big-endian', 'accepted: <f4');

  // Corrupt deflate data: the error may come when the header is read or while streaming; either way a DatasetError.
  const corrupt = Buffer.from(NUMPY_NPZ, 'base64');
  for (let i = 60; i < 160; i++) corrupt[i] = (corrupt[i] as number) ^ 0x5a;
  await rejectsWith(async () => {
    const ds = await openDataset(file('corrupt.npz', new Uint8Array(corrupt)));
    await collect(ds.batches(2));
  }, 'corrupt.npz');
});

test('batch arguments are checked', async () => {
  const ds = await openDataset(file('args.npy', encodeNpy(new Float32Array(4), 'float32', [4, 1])));
  assert.throws(() => ds.batches(0), InvalidArgumentError);
  assert.throws(() => ds.batches(2.5), /batchSize/);
  assert.throws(() => ds.batches(2, { limit: -1 }), /limit/);
});

/** Forces a full collection so memory readings start from live data only. */
function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

test('streams a 200 MB archive with memory bounded by the batch, not the file', async () => {
  const samples = 64_000;
  const perSample = 28 * 28;
  const chunkSamples = 1000;
  // Values are a function of the flat index, so every batch can be checked without keeping the source.
  const value = (k: number): number => (k % 9973) - 4986.5;
  const path = join(dir, 'large.npz');
  const fd = openSync(path, 'w');
  try {
    const pieces = encodeNpzStream({
      input: {
        dtype: 'float32',
        shape: [samples, 1, 28, 28],
        chunks: function* () {
          for (let s = 0; s < samples; s += chunkSamples) {
            yield Float32Array.from({ length: chunkSamples * perSample }, (_, i) => value(s * perSample + i));
          }
        },
      },
      labels: {
        dtype: 'int64',
        shape: [samples],
        chunks: () => [BigInt64Array.from({ length: samples }, (_, i) => BigInt(i % 10))],
      },
    });
    for (const piece of pieces) writeSync(fd, piece);
  } finally {
    closeSync(fd);
  }
  const fileBytes = samples * perSample * 4;

  gc();
  const base = process.memoryUsage();
  let retainedRss = 0;
  let retainedBuffers = 0;
  const ds = await openDataset(path);
  let seen = 0;
  let batches = 0;
  let mismatches = 0;
  for await (const batch of ds.batches(512)) {
    const data = batch.inputs.input?.data as Float32Array;
    const offset = batch.start * perSample;
    for (let i = 0; i < data.length; i++) if (data[i] !== value(offset + i)) mismatches++;
    const lab = batch.labels as BigInt64Array;
    for (let i = 0; i < batch.count; i++) if (lab[i] !== BigInt((batch.start + i) % 10)) mismatches++;
    seen += batch.count;
    // Collected first, so the reading counts what the reader keeps, not batches already dropped.
    if (++batches % 10 === 0) {
      gc();
      const m = process.memoryUsage();
      retainedRss = Math.max(retainedRss, m.rss - base.rss);
      retainedBuffers = Math.max(retainedBuffers, m.arrayBuffers - base.arrayBuffers);
    }
  }
  assert.equal(seen, samples);
  assert.equal(mismatches, 0);
  assert.ok(batches >= 100);
  const mb = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
  // One batch is 1.6 MB and a read buffer 1 MiB; the file is 200 MB. V8 releases array buffers on a
  // background thread, so a reading just after a collection can still count a few dropped batches.
  assert.ok(retainedBuffers < fileBytes / 4, `array buffers grew by ${mb(retainedBuffers)} for a ${mb(fileBytes)} file`);
  assert.ok(retainedRss < fileBytes / 3, `RSS grew by ${mb(retainedRss)} for a ${mb(fileBytes)} file`);
  rmSync(path);
});
