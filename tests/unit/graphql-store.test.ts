import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ArtifactStore, PayloadTooLargeError } from '../../service/src/store/artifact-store.js';
import { writeFileAtomic } from '../../service/src/store/atomic-file.js';
import { RecordStore } from '../../service/src/store/record-store.js';
import { canonicalJson, cacheKey } from '../../service/src/jobs/cache-key.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-store-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function chunks(total: number, size: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= total) return this.push(null);
      const n = Math.min(size, total - sent);
      this.push(Buffer.alloc(n, sent % 251));
      sent += n;
    },
  });
}

test('an upload is stored under the sha256 of its bytes, streamed in chunks', async () => {
  const store = new ArtifactStore(join(dir, 'a'));
  store.init();
  const bytes = Buffer.concat(Array.from({ length: 5 }, (_, i) => Buffer.alloc(1000, (i * 1000) % 251)));
  const r = await store.ingest(chunks(5000, 1000), 10_000);
  assert.equal(r.size, 5000);
  assert.equal(r.sha256, createHash('sha256').update(bytes).digest('hex'));
  assert.deepEqual(readFileSync(store.path(r.sha256)), bytes);
  assert.deepEqual(await store.ingest(chunks(5000, 1000), 10_000), r, 'the same bytes again: the same artifact');
});

test('BAD CALL - an upload past the limit is refused and leaves no file behind', async () => {
  const store = new ArtifactStore(join(dir, 'b'));
  store.init();
  await assert.rejects(store.ingest(chunks(5000, 1000), 4999), (e: unknown) => e instanceof PayloadTooLargeError && e.code === 'PAYLOAD_TOO_LARGE' && /4999 bytes/.test(e.message));
  assert.deepEqual(readdirSync(join(dir, 'b', 'incoming')), []);
  assert.deepEqual(readdirSync(join(dir, 'b', 'artifacts')), []);
});

test('BAD CALL - an artifact address that is not a sha256 is refused before touching the disk', () => {
  const store = new ArtifactStore(join(dir, 'c'));
  assert.throws(() => store.path('../../etc/passwd'), /sha256: must be 64 lowercase hex digits/);
});

test('init clears half-written uploads and temp files left by a crash', () => {
  const root = join(dir, 'd');
  mkdirSync(join(root, 'incoming'), { recursive: true });
  mkdirSync(join(root, 'artifacts'), { recursive: true });
  writeFileSync(join(root, 'incoming', 'x.part'), 'half');
  writeFileSync(join(root, 'artifacts', '.abc.123.tmp'), 'half');
  new ArtifactStore(root).init();
  assert.deepEqual(readdirSync(join(root, 'incoming')), []);
  assert.deepEqual(readdirSync(join(root, 'artifacts')), []);
});

test('atomic writes replace a file whole and leave no temp file', () => {
  const p = join(dir, 'atomic.json');
  writeFileAtomic(p, 'one');
  writeFileAtomic(p, 'two');
  assert.equal(readFileSync(p, 'utf8'), 'two');
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes('atomic')), ['atomic.json']);
});

test('records survive a reload; temp files of an interrupted write are dropped', () => {
  const folder = join(dir, 'records');
  const a = new RecordStore<{ id: string; n: number }>(folder);
  a.load();
  a.put({ id: 'one', n: 1 });
  a.put({ id: 'two', n: 2 });
  writeFileSync(join(folder, '.three.json.abc.tmp'), '{"id":"thr');
  const b = new RecordStore<{ id: string; n: number }>(folder);
  assert.deepEqual(
    b.load().sort((x, y) => x.n - y.n),
    [
      { id: 'one', n: 1 },
      { id: 'two', n: 2 },
    ],
  );
  assert.ok(!existsSync(join(folder, '.three.json.abc.tmp')));
  assert.throws(() => b.put({ id: '../escape', n: 0 }), /not a safe file name/);
});

test('cache keys do not depend on the order fields were written in', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } }), '{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}');
  assert.equal(cacheKey({ a: 1, b: 2 }), cacheKey({ b: 2, a: 1 }));
  assert.notEqual(cacheKey({ a: 1 }), cacheKey({ a: 2 }));
});

/** The first implementation, kept as the reference: keys already stored in job records were made by it. */
function referenceCanonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`cannot key a non-finite number: ${value}`);
    return JSON.stringify(value) ?? 'null';
  }
  if (Array.isArray(value)) return `[${value.map(referenceCanonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${referenceCanonicalJson(v)}`).join(',')}}`;
}

test('cache keys are the text and hash they always were, repeated or not', () => {
  const values: unknown[] = [
    { provider: 'cpu', threads: null, kind: 'plan', input: { modelSha256: 'a'.repeat(64), samples: null, budget: { kind: 'remove', count: 2 }, method: 'sglp' } },
    { z: [undefined, null, 1.5e-7, -0, 'é"\\n', true, [], {}], y: undefined, 'B': { '10': 1, '9': 2, '': 3, 'a b': 4, Ä: 5, a: 6 } },
    [1, 'two', { three: 3 }, [4, [5]]],
    'text',
    42,
    null,
    new Float32Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
    { date: new Date(0), nested: { deeper: { deepest: [{ b: 2, a: 1 }] } } },
  ];
  for (const v of values) {
    assert.equal(canonicalJson(v), referenceCanonicalJson(v));
    const hash = createHash('sha256').update(referenceCanonicalJson(v)).digest('hex');
    assert.equal(cacheKey(v), hash);
    assert.equal(cacheKey(v), hash, 'the second time, from the memo');
  }
  assert.throws(() => canonicalJson({ a: Number.NaN }), TypeError);
  // long texts are not kept, and still keyed right
  const long = { text: 'x'.repeat(10_000) };
  assert.equal(cacheKey(long), createHash('sha256').update(referenceCanonicalJson(long)).digest('hex'));
});
