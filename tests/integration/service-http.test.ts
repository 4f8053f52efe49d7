/**
 * The service as a client meets it: real HTTP on loopback, bearer token, streamed uploads,
 * GraphQL over HTTP and WebSocket, downloads; a restart on the same data directory; bad input.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { parseConfig } from '../../service/src/config.js';
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

test('BAD INPUT - an oversized upload is 413 PAYLOAD_TOO_LARGE and leaves nothing behind, declared or streamed', async () => {
  const big = new Uint8Array(MAX_UPLOAD + 1);
  const declared = await upload(big);
  assert.equal(declared.status, 413);
  assert.equal(declared.body.error?.code, 'PAYLOAD_TOO_LARGE');
  // no Content-Length: the limit is found while streaming
  const streamed = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const url = new URL(`${base}/upload`);
    const req = request(
      { host: url.hostname, port: url.port, path: '/upload', method: 'POST', headers: { ...auth, 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    const chunk = new Uint8Array(256 * 1024);
    let sent = 0;
    const pump = () => {
      while (sent <= MAX_UPLOAD + chunk.length) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  assert.equal(streamed.status, 413);
  assert.equal((JSON.parse(streamed.body) as { error: { code: string } }).error.code, 'PAYLOAD_TOO_LARGE');
  assert.deepEqual(readdirSync(join(dir, 'data', 'incoming')), []);
  assert.ok(!readdirSync(join(dir, 'data', 'artifacts')).includes(sha256(big)));
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
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
