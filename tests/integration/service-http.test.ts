/**
 * The service as a client meets it: real HTTP on loopback, bearer token, streamed uploads,
 * GraphQL over HTTP and WebSocket, downloads; a restart on the same data directory; bad input.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { parseConfig } from '../../service/src/config.js';
import { answer } from '../../service/src/graphql/http/answer.js';
import { startService, type RunningService } from '../../service/src/graphql/serve.js';
import { CALIB_DATA, EVAL_DATA, fixtureModel } from '../helpers/paths.js';

const TOKEN = 'test-token-0123456789abcdef';
const MAX_UPLOAD = 4 * 1024 * 1024;

let dir = '';
let service: RunningService;
let base = '';
const ids = { model: '', data: '', eval: '', plan: '', compress: '', artifact: '', planInput: {} as Record<string, unknown> };

function config() {
  return parseConfig({ STRATA_LOG_LEVEL: 'silent', STRATA_TOKEN: TOKEN, STRATA_MAX_UPLOAD_BYTES: String(MAX_UPLOAD) }, { dataDir: join(dir, 'data'), port: '0' });
}

const auth = { Authorization: `Bearer ${TOKEN}` };

async function gql<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>, headers: Record<string, string> = auth) {
  const r = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  return { status: r.status, body: (await r.json()) as { data?: T; errors?: { message: string; extensions: { code: string } }[] } };
}

async function ok<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>): Promise<T> {
  const r = await gql<T>(query, variables);
  assert.equal(r.body.errors, undefined, JSON.stringify(r.body.errors));
  assert.equal(r.status, 200);
  return r.body.data!;
}

async function upload(bytes: Uint8Array, headers: Record<string, string> = auth) {
  const r = await fetch(`${base}/upload`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream', ...headers }, body: bytes });
  return { status: r.status, body: (await r.json()) as { sha256?: string; size?: number; error?: { code: string; message: string } } };
}

interface Job {
  id: string;
  status: string;
  error: { code: string; message: string } | null;
  result: Record<string, unknown> | null;
}
const JOB = 'id status error { code message } result { __typename ... on PlanResult { remove } ... on CompressResult { artifact { sha256 size url } report { removed latencyRatio } } ... on StructureResult { units { id kind } } }';

async function waitJob(id: string, timeoutMs = 120_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await ok<{ job: Job }>(`query ($id: ID!) { job(id: $id) { ${JOB} } }`, { id });
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(job.status)) return job;
    assert.ok(Date.now() < deadline, `job ${id} still ${job.status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-http-'));
  service = await startService(config());
  base = service.http.url;
});
after(async () => {
  await service.close();
  rmSync(dir, { recursive: true, force: true });
});

test('health, readiness and metrics answer without a token', async () => {
  assert.deepEqual(await (await fetch(`${base}/healthz`)).json(), { status: 'ok' });
  assert.deepEqual(await (await fetch(`${base}/readyz`)).json(), { status: 'ready' });
  const m = await fetch(`${base}/metrics`);
  assert.equal(m.status, 200);
  const text = await m.text();
  assert.match(text, /strata_http_requests_total\{method="GET",route="\/healthz",status="200"\} 1/);
  assert.match(text, /strata_queue_depth 0/);
});

test('AUTH - a missing or wrong token is UNAUTHENTICATED on every API route, and the service keeps serving', async () => {
  const attempts: Record<string, string>[] = [{}, { Authorization: 'Bearer wrong-token-0123456789' }, { Authorization: TOKEN }];
  for (const headers of attempts) {
    const g = await gql('{ models { id } }', undefined, headers);
    assert.equal(g.status, 401);
    assert.equal(g.body.errors?.[0]?.extensions.code, 'UNAUTHENTICATED');
    const u = await upload(new Uint8Array(10), headers);
    assert.equal(u.status, 401);
    assert.equal(u.body.error?.code, 'UNAUTHENTICATED');
    const d = await fetch(`${base}/artifacts/${'0'.repeat(64)}`, { headers });
    assert.equal(d.status, 401);
    assert.equal(d.headers.get('www-authenticate'), 'Bearer realm="strata"');
  }
  assert.equal((await gql('{ models { id } }')).status, 200);
});

test('upload → register → structure → plan → compress → download → run the compressed model in onnxruntime', async () => {
  const modelBytes = new Uint8Array(readFileSync(fixtureModel('resnet20')));
  const m = await upload(modelBytes);
  assert.equal(m.status, 201);
  assert.deepEqual(m.body, { sha256: sha256(modelBytes), size: modelBytes.byteLength });
  const dataBytes = new Uint8Array(readFileSync(CALIB_DATA));
  const d = await upload(dataBytes);
  assert.equal(d.status, 201);
  const e = await upload(new Uint8Array(readFileSync(EVAL_DATA)));

  const reg = await ok<{ registerModel: { id: string }; registerDataset: { id: string }; eval: { id: string } }>(
    `mutation ($m: String!, $d: String!, $e: String!) {
      registerModel(sha256: $m, name: "resnet20") { id }
      registerDataset(sha256: $d, name: "calib") { id }
      eval: registerDataset(sha256: $e, name: "eval") { id }
    }`,
    { m: m.body.sha256, d: d.body.sha256, e: e.body.sha256 },
  );
  ids.model = reg.registerModel.id;
  ids.data = reg.registerDataset.id;
  ids.eval = reg.eval.id;

  const s = await ok<{ structure: { id: string } }>(`query ($m: ID!) { structure(input: { model: $m }) { id } }`, { m: ids.model });
  const structure = await waitJob(s.structure.id);
  assert.equal(structure.status, 'SUCCEEDED', JSON.stringify(structure.error));
  assert.equal((structure.result!.units as { kind: string }[]).filter((u) => u.kind === 'RESIDUAL').length, 9);

  ids.planInput = { model: ids.model, dataset: ids.data, samples: 64, batchSize: 32, latencyBatch: 4, budget: { remove: 2 } };
  const p = await ok<{ plan: { id: string } }>(`query ($i: PlanInput!) { plan(input: $i) { id } }`, { i: ids.planInput });
  const plan = await waitJob(p.plan.id);
  assert.equal(plan.status, 'SUCCEEDED', JSON.stringify(plan.error));
  ids.plan = plan.id;

  const c = await ok<{ compress: { id: string } }>(`mutation ($i: CompressInput!) { compress(input: $i) { id } }`, {
    i: { model: ids.model, plan: ids.plan, evalDataset: ids.eval },
  });
  const compress = await waitJob(c.compress.id);
  assert.equal(compress.status, 'SUCCEEDED', JSON.stringify(compress.error));
  ids.compress = compress.id;
  const artifact = compress.result!.artifact as { sha256: string; size: number; url: string };
  ids.artifact = artifact.sha256;

  const dl = await fetch(`${base}${artifact.url}`, { headers: auth });
  assert.equal(dl.status, 200);
  assert.equal(dl.headers.get('content-type'), 'application/octet-stream');
  const bytes = new Uint8Array(await dl.arrayBuffer());
  assert.equal(bytes.byteLength, artifact.size);
  assert.equal(sha256(bytes), artifact.sha256);
  const session = await ort.InferenceSession.create(bytes);
  const out = await session.run({ input: new ort.Tensor('float32', new Float32Array(2 * 784).fill(0.25), [2, 1, 28, 28]) });
  assert.deepEqual(out.logits!.dims, [2, 10]);
  assert.ok(Array.from(out.logits!.data as Float32Array).every(Number.isFinite));
  await session.release();
});

test('metrics count requests by route and jobs by kind and final status', async () => {
  const text = await (await fetch(`${base}/metrics`)).text();
  assert.match(text, /strata_jobs_finished_total\{kind="plan",status="succeeded"\} 1/);
  assert.match(text, /strata_jobs_finished_total\{kind="compress",status="succeeded"\} 1/);
  assert.match(text, /strata_job_duration_seconds_count\{kind="structure",status="succeeded"\} 1/);
  assert.match(text, /strata_jobs\{status="succeeded"\} 3/);
  assert.match(text, /strata_http_requests_total\{method="POST",route="\/upload",status="201"\} 3/);
  assert.match(text, /strata_http_request_duration_seconds_bucket\{le="[0-9.]+",method="POST",route="\/graphql"\}/);
});

test('jobUpdated over graphql-ws: the job, its progress, and the end; a wrong token is refused', async () => {
  const url = base.replace(/^http/, 'ws') + '/graphql';
  const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${TOKEN}` }, retryAttempts: 0, lazy: true });
  try {
    const { similarity } = await ok<{ similarity: { id: string } }>(`query ($i: AnalysisInput!) { similarity(input: $i) { id } }`, {
      i: { model: ids.model, dataset: ids.data, samples: 96, batchSize: 32 },
    });
    const seen: string[] = [];
    for await (const r of client.iterate<{ jobUpdated: { status: string; progress: { phase: string } | null } }>({
      query: 'subscription ($id: ID!) { jobUpdated(id: $id) { status progress { phase } } }',
      variables: { id: similarity.id },
    })) {
      assert.equal(r.errors, undefined, JSON.stringify(r.errors));
      seen.push(r.data!.jobUpdated.status);
    }
    assert.equal(seen.at(-1), 'SUCCEEDED');
    assert.ok(seen.length >= 2, `updates seen: ${seen.join(' ')}`);
    const missing = client.iterate({ query: 'subscription { jobUpdated(id: "nope") { status } }' });
    const first = await missing.next();
    const errors = (first.value as { errors?: { extensions?: { code?: string } }[] } | undefined)?.errors;
    assert.equal(errors?.[0]?.extensions?.code, 'NOT_FOUND');
  } finally {
    await client.dispose();
  }
  const bad = createClient({ url, webSocketImpl: WebSocket, connectionParams: { authorization: 'Bearer nope-nope-nope-nope' }, retryAttempts: 0, lazy: true });
  try {
    await assert.rejects(async () => {
      for await (const _ of bad.iterate({ query: '{ models { id } }' })) void _;
    }, (e: unknown) => (e as { code?: number; reason?: string }).code === 4403 && (e as { reason?: string }).reason === 'Forbidden');
  } finally {
    await bad.dispose();
  }
});

test('BAD INPUT - malformed model bytes upload fine and register as INVALID_MODEL', async () => {
  const junk = new TextEncoder().encode('this is not an onnx model, just text');
  const u = await upload(junk);
  assert.equal(u.status, 201);
  const r = await gql(`mutation ($s: String!) { registerModel(sha256: $s, name: "junk") { id } }`, { s: u.body.sha256 });
  assert.equal(r.body.errors?.[0]?.extensions.code, 'INVALID_MODEL');
});

interface RawAnswer {
  status: number;
  body: string;
  /** bytes of the body the client wrote */
  sent: number;
}

interface RawRequest {
  /** host:port */
  host: string;
  path?: string;
  /** body bytes to send; Infinity sends until the server hangs up */
  size: number;
  chunked?: boolean;
  expectContinue?: boolean;
  /** stop after this many body bytes without finishing the request or hanging up */
  stallAfter?: number;
}

/**
 * A request from the plainest client there is, on a socket of its own: it writes its whole body
 * whatever the server answers meanwhile, before it turns to the answer (as Python's http.client
 * and many scripts do), unless it asked `Expect: 100-continue` and a final answer came first; it
 * hangs up once it has sent everything and the server has ended its side. It settles when the
 * connection has closed; a reset or a broken pipe rejects, since that is what such a client gets
 * from a server that closes the socket while it is still sending.
 */
function rawRequest(r: RawRequest): Promise<RawAnswer> {
  const { size, chunked = false, expectContinue = false } = r;
  const [hostname, port] = [r.host.slice(0, r.host.lastIndexOf(':')), Number(r.host.slice(r.host.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const head = [
      `POST ${r.path ?? '/upload'} HTTP/1.1`,
      `Host: ${r.host}`,
      `Authorization: ${auth.Authorization}`,
      'Content-Type: application/octet-stream',
      'Connection: close',
      chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${size}`,
      ...(expectContinue ? ['Expect: 100-continue'] : []),
      '',
      '',
    ].join('\r\n');
    let received = Buffer.alloc(0);
    let sent = 0;
    let bodyStarted = false;
    let bodyDone = false;
    let serverEnded = false;
    // allowHalfOpen: the server ending its side does not end this one, as it does not for a socket in C or Python
    const socket = connect({ port, host: hostname, allowHalfOpen: true });
    const hangUpWhenDone = () => {
      if (serverEnded && (bodyDone || !bodyStarted)) socket.end();
    };
    socket.on('error', (e: NodeJS.ErrnoException) => reject(Object.assign(new Error(`the client saw ${e.code ?? e.message} after sending ${sent} bytes of the body`), { sent, received })));
    socket.on('data', (c: Buffer) => {
      received = Buffer.concat([received, c]);
      if (!expectContinue || bodyStarted) return;
      const text = received.toString('latin1');
      if (!text.includes('\r\n\r\n')) return;
      if (/^HTTP\/1\.1 100 /.test(text)) {
        received = received.subarray(text.indexOf('\r\n\r\n') + 4);
        sendBody();
      }
      // a final answer instead: the body is not sent
    });
    socket.on('end', () => {
      serverEnded = true;
      hangUpWhenDone();
    });
    socket.on('close', (hadError) => {
      if (hadError) return;
      const text = received.toString('utf8');
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(text);
      if (!status) return reject(new Error(`the connection closed without an answer after ${sent} bytes of the body: ${JSON.stringify(text.slice(0, 200))}`));
      resolve({ status: Number(status[1]), body: text.slice(text.indexOf('\r\n\r\n') + 4), sent });
    });
    const chunk = Buffer.alloc(64 * 1024);
    const framed = (bytes: Buffer) => (chunked ? Buffer.concat([Buffer.from(`${bytes.byteLength.toString(16)}\r\n`), bytes, Buffer.from('\r\n')]) : bytes);
    function sendBody() {
      bodyStarted = true;
      const until = Math.min(size, r.stallAfter ?? Infinity);
      const pump = () => {
        while (sent < until) {
          if (socket.destroyed) return;
          const n = Math.min(chunk.byteLength, until - sent);
          sent += n;
          if (!socket.write(framed(chunk.subarray(0, n)))) return void socket.once('drain', pump);
        }
        if (sent < size) return; // stalled on purpose: neither the rest nor the end
        if (chunked) socket.write('0\r\n\r\n');
        bodyDone = true;
        hangUpWhenDone();
      };
      pump();
    }
    socket.write(head);
    if (!expectContinue) sendBody();
  });
}

const rawUpload = (r: Omit<RawRequest, 'host'>) => rawRequest({ host: new URL(base).host, ...r });

function payloadTooLarge(r: RawAnswer, what: string): void {
  assert.equal(r.status, 413, `${what}: ${r.body}`);
  assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'PAYLOAD_TOO_LARGE', what);
}

test('BAD INPUT - an oversized upload is 413 PAYLOAD_TOO_LARGE, every time, and leaves nothing behind, declared or streamed', async () => {
  const artifactsBefore = readdirSync(join(dir, 'data', 'artifacts')).sort();
  const big = new Uint8Array(MAX_UPLOAD + 1);
  const declared = await upload(big);
  assert.equal(declared.status, 413);
  assert.equal(declared.body.error?.code, 'PAYLOAD_TOO_LARGE');

  // The body keeps coming while the server answers: each of these raced the server's close of the
  // connection against the client's writes, and a client that lost saw ECONNRESET or EPIPE instead.
  for (let i = 0; i < 20; i++) {
    payloadTooLarge(await rawUpload({ size: MAX_UPLOAD + 1 + i * 4099 }), `declared length, try ${i}`);
    // No Content-Length: the limit is found while streaming, part of the body already stored. The
    // 8 MiB past the limit are more than the socket buffers hold, so the client is still writing
    // when the answer goes out.
    payloadTooLarge(await rawUpload({ size: MAX_UPLOAD + 8 * 1024 * 1024 + i * 4099, chunked: true }), `chunked, try ${i}`);
  }
  // the GraphQL endpoint refuses a body over its own limit (1 MiB) the same way
  payloadTooLarge(await rawUpload({ path: '/graphql', size: 2 * 1024 * 1024 }), 'GraphQL body, declared length');
  payloadTooLarge(await rawUpload({ path: '/graphql', size: 8 * 1024 * 1024, chunked: true }), 'GraphQL body, chunked');
  // a client that asks first is refused before it sends a byte, and sends none
  for (let i = 0; i < 5; i++) {
    const r = await rawUpload({ size: MAX_UPLOAD + 1, expectContinue: true });
    payloadTooLarge(r, `Expect: 100-continue, try ${i}`);
    assert.equal(r.sent, 0, 'the body was asked for although its declared length is over the limit');
  }
  // and one within the limit still gets its 100 Continue and is stored
  const small = new Uint8Array(1000); // rawUpload sends zeros
  const asked = await rawUpload({ size: small.byteLength, expectContinue: true });
  assert.equal(asked.status, 201, asked.body);
  assert.equal(asked.sent, small.byteLength);
  assert.equal((JSON.parse(asked.body) as { sha256: string }).sha256, sha256(small));

  assert.deepEqual(readdirSync(join(dir, 'data', 'incoming')), [], 'a partial upload was left behind');
  assert.deepEqual(
    readdirSync(join(dir, 'data', 'artifacts'))
      .filter((name) => name !== sha256(small))
      .sort(),
    artifactsBefore,
    'the artifacts folder changed',
  );
  // what was stored before is untouched: still registered, still served byte for byte
  const { models } = await ok<{ models: { id: string; sha256: string }[] }>('{ models { id sha256 } }');
  const model = models.find((m) => m.id === ids.model);
  assert.ok(model, 'the model registered earlier is gone');
  const dl = await fetch(`${base}/artifacts/${model.sha256}`, { headers: auth });
  assert.equal(dl.status, 200);
  assert.equal(sha256(new Uint8Array(await dl.arrayBuffer())), model.sha256);
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
});

test('a refused body is read only so far: a client that stalls, or never stops, is disconnected at a bound', async () => {
  const limits = { maxBytes: 1024 * 1024, maxMs: 400 };
  const seen = { bytes: 0, closedAfterMs: -1 };
  const mini = createServer((req, res) => {
    const started = Date.now();
    seen.bytes = 0;
    seen.closedAfterMs = -1;
    req.on('data', (c: Buffer) => (seen.bytes += c.byteLength));
    req.socket.once('close', () => (seen.closedAfterMs = Date.now() - started));
    answer(req, res, 413, { error: { code: 'PAYLOAD_TOO_LARGE', message: 'too large' } }, limits);
  });
  await new Promise<void>((resolve) => mini.listen(0, '127.0.0.1', resolve));
  const port = (mini.address() as AddressInfo).port;
  const closed = async () => {
    const deadline = Date.now() + 10_000;
    while (seen.closedAfterMs < 0) {
      assert.ok(Date.now() < deadline, 'the server never closed the connection');
      await new Promise((r) => setTimeout(r, 20));
    }
    return seen.closedAfterMs;
  };
  try {
    // stalls: part of the declared body, then neither the rest nor a hang-up
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    socket.on('error', () => undefined); // the server hangs up on it: that is the point
    socket.write(`POST /upload HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n`);
    socket.write(Buffer.alloc(100 * 1024));
    const after = await closed();
    socket.destroy();
    assert.match(received, /^HTTP\/1\.1 413 /);
    assert.match(received, /"PAYLOAD_TOO_LARGE"/);
    assert.ok(after >= limits.maxMs - 20 && after < limits.maxMs + 3000, `closed after ${after} ms, the bound is ${limits.maxMs} ms`);

    // never stops: it is answered, then cut off once the server has read a bounded amount
    const endless = await rawRequest({ host: `127.0.0.1:${port}`, size: Infinity, chunked: true }).then(
      () => assert.fail('an endless body was read to its end'),
      (e: Error & { sent?: number; received?: Buffer }) => e,
    );
    assert.match(endless.received?.toString('latin1') ?? '', /^HTTP\/1\.1 413 /, endless.message);
    await closed();
    assert.ok(seen.bytes > limits.maxBytes && seen.bytes < limits.maxBytes + 1024 * 1024, `the server read ${seen.bytes} bytes, the bound is ${limits.maxBytes}`);
  } finally {
    mini.closeAllConnections();
    await new Promise((resolve) => mini.close(resolve));
  }
});

test('BAD INPUT - wrong content type, unknown ids, unknown artifacts, an impossible budget, and CSRF-prone requests', async () => {
  const form = await fetch(`${base}/upload`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'a=1' });
  assert.equal(form.status, 415);
  const nf = await gql('{ model(id: "nope") { id } }');
  assert.equal(nf.body.errors?.[0]?.extensions.code, 'NOT_FOUND');
  const missing = await fetch(`${base}/artifacts/${'f'.repeat(64)}`, { headers: auth });
  assert.equal(missing.status, 404);
  assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
  assert.equal((await fetch(`${base}/artifacts/..%2F..%2Fetc%2Fpasswd`, { headers: auth })).status, 404);
  const p = await ok<{ plan: { id: string } }>(`query ($i: PlanInput!) { plan(input: $i) { id } }`, {
    i: { ...ids.planInput, budget: { latencyMs: 0.0001 } },
  });
  const infeasible = await waitJob(p.plan.id);
  assert.equal(infeasible.status, 'FAILED');
  assert.equal(infeasible.error?.code, 'BUDGET_INFEASIBLE');
  // a GET that a browser could send cross-site without a preflight is refused by CSRF prevention
  const csrf = await fetch(`${base}/graphql?query=${encodeURIComponent('{ models { id } }')}`, { headers: auth });
  assert.equal(csrf.status, 400);
  const preflighted = await fetch(`${base}/graphql?query=${encodeURIComponent('{ models { id } }')}`, { headers: { ...auth, 'apollo-require-preflight': 'true' } });
  assert.equal(preflighted.status, 200);
  const junkJson = await fetch(`${base}/graphql`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: '{"query": ' });
  assert.equal(junkJson.status, 400);
  assert.equal(((await junkJson.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code, 'BAD_REQUEST');
  assert.equal((await gql('{ models { id } }')).status, 200, 'still serving');
});

test('a restart on the same data directory loses nothing: registrations, finished jobs, results, artifacts', async () => {
  await service.close();
  service = await startService(config());
  base = service.http.url;
  const { models, datasets } = await ok<{ models: { id: string }[]; datasets: { id: string }[] }>('{ models { id } datasets { id } }');
  assert.ok(models.some((m) => m.id === ids.model));
  assert.ok(datasets.some((d) => d.id === ids.data));
  const compress = await waitJob(ids.compress);
  assert.equal(compress.status, 'SUCCEEDED');
  assert.equal((compress.result!.artifact as { sha256: string }).sha256, ids.artifact);
  const again = await ok<{ plan: { id: string; status: string } }>(`query ($i: PlanInput!) { plan(input: $i) { id status } }`, { i: ids.planInput });
  assert.deepEqual(again.plan, { id: ids.plan, status: 'SUCCEEDED' });
  const dl = await fetch(`${base}/artifacts/${ids.artifact}`, { headers: auth });
  assert.equal(sha256(new Uint8Array(await dl.arrayBuffer())), ids.artifact);
});
