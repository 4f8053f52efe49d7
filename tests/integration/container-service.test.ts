/**
 * The image as an operator runs it: built from docker/Dockerfile, started with a token and a named
 * data volume, driven over HTTP from outside the container; then stopped with SIGTERM and replaced
 * by a new container on the same volume. Skips, saying why, only when no Docker engine answers
 * (.ci/run starts one).
 *
 * STRATA_BASE_IMAGE picks the base (default local/strata-base, from docker/build-local-base.sh);
 * where Docker Hub is reachable, STRATA_BASE_IMAGE=node:24-bookworm-slim builds the published one.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GenericContainer, ImageName, Wait, getContainerRuntimeClient, type StartedTestContainer } from 'testcontainers';
import { CALIB_DATA, EVAL_DATA, ROOT, fixtureModel } from '../helpers/paths.js';

// Ryuk, testcontainers' reaper, is an image from Docker Hub; these tests remove what they create.
process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';

const DOCKERFILE = 'docker/Dockerfile';
const BASE_IMAGE = process.env.STRATA_BASE_IMAGE || 'local/strata-base';
const IMAGE = 'strata/service:container-test';
const TOKEN = 'container-test-token-0123456789';
const MAX_UPLOAD = 4 * 1024 * 1024;
const PORT = 4000;

const noDocker = await getContainerRuntimeClient().then(
  () => false as const,
  (e: unknown) => `no Docker engine reachable (${e instanceof Error ? e.message : String(e)}); .ci/run starts one`,
);

const volume = `strata-container-test-${randomUUID().slice(0, 8)}`;
let image: GenericContainer | undefined;
let container: StartedTestContainer | undefined;
let base = '';
const logs: string[] = [];
const ids = { model: '', data: '', eval: '', plan: '', compress: '', artifact: '', planInput: {} as Record<string, unknown> };

/**
 * The image is built from the repository root, as docker/README.md tells an operator to build it,
 * so the root .dockerignore (an allowlist) is what keeps node_modules/, dist/ and the fixtures out
 * of the context. Each source the Dockerfile copies must exist and be let in by that allowlist:
 * checked here, so that a new COPY without its line fails with the name of the file, not as a
 * build error.
 */
function checkBuildContext(): void {
  const allowed = new Set(
    readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter((line) => line.startsWith('!'))
      .map((line) => line.slice(1).replace(/\/+$/, '')),
  );
  const text = readFileSync(join(ROOT, DOCKERFILE), 'utf8').replace(/\\\r?\n/g, ' ');
  for (const line of text.split(/\r?\n/)) {
    const words = line.trim().split(/\s+/);
    if (words[0]?.toUpperCase() !== 'COPY' || words.some((w) => w.startsWith('--from'))) continue;
    for (const source of words.slice(1, -1).filter((w) => !w.startsWith('--'))) {
      assert.ok(existsSync(join(ROOT, source)), `${DOCKERFILE} copies ${source}, which is not in the repository`);
      assert.ok(allowed.has(source.replace(/\/+$/, '')), `${DOCKERFILE} copies ${source}, which .dockerignore keeps out of the build context: add "!${source}" there`);
    }
  }
}

async function start(): Promise<StartedTestContainer> {
  assert.ok(image, 'the image was not built');
  logs.length = 0;
  const started = await image.start();
  base = `http://${started.getHost()}:${started.getMappedPort(PORT)}`;
  return started;
}

const logTail = () => `\n--- container log (last lines) ---\n${logs.slice(-20).join('\n')}`;
const auth = { Authorization: `Bearer ${TOKEN}` };
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface GqlError {
  message: string;
  extensions: { code: string };
}

async function gql<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>, headers: Record<string, string> = auth) {
  const r = await fetch(`${base}/graphql`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ query, variables }) });
  return { status: r.status, body: (await r.json()) as { data?: T; errors?: GqlError[] } };
}

async function ok<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>): Promise<T> {
  const r = await gql<T>(query, variables);
  assert.equal(r.body.errors, undefined, JSON.stringify(r.body.errors) + logTail());
  assert.equal(r.status, 200);
  return r.body.data!;
}

async function upload(bytes: Uint8Array, headers: Record<string, string> = auth) {
  const r = await fetch(`${base}/upload`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream', ...headers }, body: bytes });
  return { status: r.status, body: (await r.json()) as { sha256?: string; size?: number; error?: { code: string; message: string } } };
}

/**
 * Sends an upload's headers and its body only if no answer comes first, as curl does for large
 * bodies (Expect: 100-continue). A refusal on the declared length then arrives before any byte of
 * the body, instead of racing the server's close of the connection against the client's writes.
 */
function uploadHeadersFirst(size: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(`${base}/upload`);
    const headers = { ...auth, 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) };
    const req = request({ host: url.hostname, port: url.port, path: '/upload', method: 'POST', headers }, (res) => {
      clearTimeout(sendBody);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body });
        req.destroy();
      });
    });
    req.on('error', reject);
    req.flushHeaders();
    const sendBody = setTimeout(() => req.end(new Uint8Array(size)), 5_000);
  });
}

interface Job {
  id: string;
  status: string;
  error: { code: string; message: string } | null;
  result: Record<string, unknown> | null;
}
const JOB = `id status error { code message } result {
  __typename
  ... on StructureResult { units { id kind } }
  ... on SimilarityResult { samples layers { id } matrix }
  ... on SegmentsResult { k segments }
  ... on PlanResult { remove predictedSpeedup }
  ... on CompressResult { artifact { sha256 size url } report { removed latencyRatio accuracyBefore accuracyAfter } }
}`;

async function waitJob(id: string, timeoutMs = 240_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await ok<{ job: Job }>(`query ($id: ID!) { job(id: $id) { ${JOB} } }`, { id });
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(job.status)) return job;
    assert.ok(Date.now() < deadline, `job ${id} still ${job.status}${logTail()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function succeeded(id: string): Promise<Job> {
  const job = await waitJob(id);
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error) + logTail());
  return job;
}

async function stillServing() {
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
  assert.equal((await gql('{ models { id } }')).status, 200);
}

before(async () => {
  if (noDocker) return;
  const client = await getContainerRuntimeClient();
  if (BASE_IMAGE.startsWith('local/')) {
    assert.ok(await client.image.exists(ImageName.fromString(BASE_IMAGE)), `the base image ${BASE_IMAGE} is missing: run docker/build-local-base.sh`);
  }
  checkBuildContext();
  try {
    // Kept after the run (not deleteOnExit): its layers are the cache the next build starts from.
    const built = await GenericContainer.fromDockerfile(ROOT, DOCKERFILE).withBuildArgs({ BASE_IMAGE }).build(IMAGE, { deleteOnExit: false });
    image = built
      .withEnvironment({ STRATA_TOKEN: TOKEN, STRATA_MAX_UPLOAD_BYTES: String(MAX_UPLOAD) })
      .withBindMounts([{ source: volume, target: '/data' }]) // a name, not a path: Docker's named volume
      .withExposedPorts(PORT)
      .withWaitStrategy(Wait.forHttp('/healthz', PORT).forStatusCode(200))
      .withStartupTimeout(60_000)
      .withLogConsumer((stream) => stream.on('data', (line: Buffer | string) => logs.push(String(line).trimEnd())));
  } catch (e) {
    throw new Error(`building ${DOCKERFILE} on ${BASE_IMAGE} failed (DEBUG=testcontainers:build shows the build log): ${(e as Error).message}`);
  }
  container = await start();
});

after(async () => {
  if (noDocker) return;
  await container?.stop({ timeout: 10_000 });
  const client = await getContainerRuntimeClient();
  await client.container.dockerode
    .getVolume(volume)
    .remove()
    .catch(() => undefined);
});

test('the image runs the service as an unprivileged user; health, readiness and metrics answer without a token', { skip: noDocker }, async () => {
  const id = await container!.exec(['id', '-u']);
  assert.equal(id.exitCode, 0);
  assert.notEqual(id.output.trim(), '0', 'the service runs as root');
  assert.deepEqual(await (await fetch(`${base}/healthz`)).json(), { status: 'ok' });
  assert.deepEqual(await (await fetch(`${base}/readyz`)).json(), { status: 'ready' });
  const metrics = await fetch(`${base}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(await metrics.text(), /strata_queue_depth 0/);
});

test('AUTH - a missing or wrong token is UNAUTHENTICATED on the API, uploads and downloads, and the service keeps serving', { skip: noDocker }, async () => {
  for (const headers of [{}, { Authorization: 'Bearer wrong-token-0123456789abc' }, { Authorization: TOKEN }] as Record<string, string>[]) {
    const g = await gql('{ models { id } }', undefined, headers);
    assert.equal(g.status, 401);
    assert.equal(g.body.errors?.[0]?.extensions.code, 'UNAUTHENTICATED');
    const u = await upload(new Uint8Array(16), headers);
    assert.equal(u.status, 401);
    assert.equal(u.body.error?.code, 'UNAUTHENTICATED');
    assert.equal((await fetch(`${base}/artifacts/${'0'.repeat(64)}`, { headers })).status, 401);
  }
  await stillServing();
});

test('upload → register → structure, similarity, segments → plan → compress → download → run it in onnxruntime on the host', { skip: noDocker }, async () => {
  const modelBytes = new Uint8Array(readFileSync(fixtureModel('resnet20')));
  const m = await upload(modelBytes);
  assert.equal(m.status, 201, JSON.stringify(m.body));
  assert.deepEqual(m.body, { sha256: sha256(modelBytes), size: modelBytes.byteLength });
  const d = await upload(new Uint8Array(readFileSync(CALIB_DATA)));
  assert.equal(d.status, 201, JSON.stringify(d.body));
  const e = await upload(new Uint8Array(readFileSync(EVAL_DATA)));
  assert.equal(e.status, 201, JSON.stringify(e.body));

  const reg = await ok<{ model: { id: string; inputs: { name: string }[] }; data: { id: string; samples: number }; eval: { id: string } }>(
    `mutation ($m: String!, $d: String!, $e: String!) {
      model: registerModel(sha256: $m, name: "resnet20") { id inputs { name } }
      data: registerDataset(sha256: $d, name: "calib") { id samples }
      eval: registerDataset(sha256: $e, name: "eval") { id }
    }`,
    { m: m.body.sha256, d: d.body.sha256, e: e.body.sha256 },
  );
  assert.deepEqual(reg.model.inputs.map((i) => i.name), ['input']);
  assert.equal(reg.data.samples, 512);
  Object.assign(ids, { model: reg.model.id, data: reg.data.id, eval: reg.eval.id });

  const analysis = { model: ids.model, dataset: ids.data, samples: 64, batchSize: 32 };
  const jobs = await ok<{ structure: { id: string }; similarity: { id: string }; segments: { id: string } }>(
    `query ($m: ID!, $a: AnalysisInput!, $s: SegmentsInput!) {
      structure(input: { model: $m }) { id }
      similarity(input: $a) { id }
      segments(input: $s) { id }
    }`,
    { m: ids.model, a: analysis, s: analysis },
  );
  const structure = await succeeded(jobs.structure.id);
  assert.equal((structure.result!.units as { kind: string }[]).filter((u) => u.kind === 'RESIDUAL').length, 9);
  const similarity = (await succeeded(jobs.similarity.id)).result as { samples: number; layers: unknown[]; matrix: number[][] };
  assert.equal(similarity.samples, 64);
  assert.equal(similarity.matrix.length, similarity.layers.length);
  similarity.matrix.forEach((row, i) => assert.ok(Math.abs(row[i]! - 1) < 1e-6, `CKA of layer ${i} with itself is ${row[i]}`));
  const segments = (await succeeded(jobs.segments.id)).result as { k: number; segments: string[][] };
  assert.equal(segments.segments.length, segments.k);

  ids.planInput = { ...analysis, latencyBatch: 4, budget: { remove: 2 } };
  const { plan } = await ok<{ plan: { id: string } }>(`query ($i: PlanInput!) { plan(input: $i) { id } }`, { i: ids.planInput });
  assert.equal(((await succeeded(plan.id)).result!.remove as string[]).length, 2);
  ids.plan = plan.id;

  const { compress } = await ok<{ compress: { id: string } }>(`mutation ($i: CompressInput!) { compress(input: $i) { id } }`, {
    i: { model: ids.model, plan: ids.plan, evalDataset: ids.eval },
  });
  const result = (await succeeded(compress.id)).result!;
  ids.compress = compress.id;
  const artifact = result.artifact as { sha256: string; size: number; url: string };
  ids.artifact = artifact.sha256;
  assert.equal((result.report as { removed: string[] }).removed.length, 2);

  const dl = await fetch(`${base}${artifact.url}`, { headers: auth });
  assert.equal(dl.status, 200);
  const bytes = new Uint8Array(await dl.arrayBuffer());
  assert.equal(sha256(bytes), artifact.sha256);
  const session = await ort.InferenceSession.create(bytes);
  try {
    const out = await session.run({ input: new ort.Tensor('float32', new Float32Array(2 * 784).fill(0.25), [2, 1, 28, 28]) });
    assert.deepEqual(out.logits!.dims, [2, 10]);
    assert.ok(Array.from(out.logits!.data as Float32Array).every(Number.isFinite));
  } finally {
    await session.release();
  }
});

test('BAD INPUT - malformed model bytes upload but register as INVALID_MODEL', { skip: noDocker }, async () => {
  const u = await upload(new TextEncoder().encode('not an onnx model: a few words of text'));
  assert.equal(u.status, 201);
  const r = await gql(`mutation ($s: String!) { registerModel(sha256: $s, name: "junk") { id } }`, { s: u.body.sha256 });
  assert.equal(r.body.errors?.[0]?.extensions.code, 'INVALID_MODEL');
  await stillServing();
});

test('BAD INPUT - an upload over STRATA_MAX_UPLOAD_BYTES is 413 PAYLOAD_TOO_LARGE and nothing is kept', { skip: noDocker }, async () => {
  const size = MAX_UPLOAD + 1;
  const r = await uploadHeadersFirst(size);
  assert.equal(r.status, 413);
  assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'PAYLOAD_TOO_LARGE');
  assert.equal((await fetch(`${base}/artifacts/${sha256(new Uint8Array(size))}`, { headers: auth })).status, 404);
  await stillServing();
});

test('BAD INPUT - unknown ids are NOT_FOUND and an impossible latency budget fails BUDGET_INFEASIBLE', { skip: noDocker }, async () => {
  for (const query of ['{ model(id: "no-such-model") { id } }', '{ dataset(id: "no-such-data") { id } }', '{ job(id: "no-such-job") { id } }']) {
    const r = await gql(query);
    assert.equal(r.body.errors?.[0]?.extensions.code, 'NOT_FOUND', query);
  }
  const unknownModel = await gql(`query ($i: PlanInput!) { plan(input: $i) { id } }`, { i: { ...ids.planInput, model: 'no-such-model' } });
  assert.equal(unknownModel.body.errors?.[0]?.extensions.code, 'NOT_FOUND');
  const missing = await fetch(`${base}/artifacts/${'f'.repeat(64)}`, { headers: auth });
  assert.equal(missing.status, 404);
  assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');

  const { plan } = await ok<{ plan: { id: string } }>(`query ($i: PlanInput!) { plan(input: $i) { id } }`, {
    i: { ...ids.planInput, budget: { latencyMs: 0.0001 } },
  });
  const infeasible = await waitJob(plan.id);
  assert.equal(infeasible.status, 'FAILED');
  assert.equal(infeasible.error?.code, 'BUDGET_INFEASIBLE');
  await stillServing();
});

test("the image's HEALTHCHECK reports the container healthy", { skip: noDocker }, async () => {
  // the first check runs one interval after the start; the tests above usually outlast it
  const docker = (await getContainerRuntimeClient()).container.dockerode.getContainer(container!.getId());
  const health = async () => (await docker.inspect()).State.Health?.Status;
  const deadline = Date.now() + 60_000;
  let status = await health();
  while (status !== 'healthy' && Date.now() < deadline) {
    assert.notEqual(status, 'unhealthy', logTail());
    await new Promise((r) => setTimeout(r, 1000));
    status = await health();
  }
  assert.equal(status, 'healthy');
});

test('one service per volume: a second container on it is refused, and a killed container starts again over the lock it left', { skip: noDocker }, async () => {
  const docker = (await getContainerRuntimeClient()).container.dockerode;
  const first = docker.getContainer(container!.getId());
  const firstHost = (await first.inspect()).Config.Hostname;
  const twin = await docker.createContainer({ Image: IMAGE, Env: [`STRATA_TOKEN=${TOKEN}`], HostConfig: { Binds: [`${volume}:/data`] } });
  try {
    await twin.start();
    let timer: NodeJS.Timeout | undefined;
    const exit = (await Promise.race([
      twin.wait(),
      new Promise((resolve) => (timer = setTimeout(() => resolve({ StatusCode: 'still running after 30 s' }), 30_000))),
    ])) as { StatusCode: number | string };
    clearTimeout(timer);
    const output = (await twin.logs({ stdout: true, stderr: true })).toString('utf8');
    assert.equal(exit.StatusCode, 1, output);
    assert.match(output, new RegExp(`strata: the data directory /data is in use by another strata service \\(pid \\d+ on host ${firstHost}, started `));
  } finally {
    await twin.remove({ force: true });
  }
  await stillServing();

  // SIGKILL: no shutdown, so the lock stays; the same container starts again with the same
  // hostname, in a new pid namespace where the service is pid 1 again
  await first.kill();
  await first.start();
  const port = (await first.inspect()).NetworkSettings.Ports[`${PORT}/tcp`]?.[0]?.HostPort;
  assert.ok(port, 'the restarted container publishes no port');
  base = `http://${container!.getHost()}:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const status = await fetch(`${base}/readyz`).then((r) => r.status, () => 0);
    if (status === 200) break;
    const state = (await first.inspect()).State;
    assert.ok(state.Running, `the restarted container exited (${state.ExitCode}): ${(await first.logs({ stdout: true, stderr: true, tail: 5 })).toString('utf8')}`);
    assert.ok(Date.now() < deadline, 'the restarted container never became ready');
    await new Promise((r) => setTimeout(r, 250));
  }
  const { models } = await ok<{ models: { id: string }[] }>('{ models { id } }');
  assert.ok(models.some((m) => m.id === ids.model));
});

test('SIGTERM stops the service cleanly, and a new container on the same volume has every registration, job and artifact', { skip: noDocker }, async () => {
  const client = await getContainerRuntimeClient();
  const id = container!.getId();
  const stopping = Date.now();
  await container!.stop({ timeout: 20_000, remove: false });
  container = undefined;
  const stopped = await client.container.dockerode.getContainer(id).inspect();
  await client.container.dockerode.getContainer(id).remove();
  assert.equal(stopped.State.ExitCode, 0, `exit code after SIGTERM${logTail()}`);
  assert.ok(Date.now() - stopping < 15_000, 'the service took until SIGKILL to stop');

  container = await start();
  const { models, datasets } = await ok<{ models: { id: string }[]; datasets: { id: string }[] }>('{ models { id } datasets { id } }');
  assert.ok(models.some((m) => m.id === ids.model));
  assert.ok(datasets.some((d) => d.id === ids.data));
  const compress = await waitJob(ids.compress, 5_000);
  assert.equal(compress.status, 'SUCCEEDED');
  assert.equal((compress.result!.artifact as { sha256: string }).sha256, ids.artifact);
  const again = await ok<{ plan: { id: string; status: string } }>(`query ($i: PlanInput!) { plan(input: $i) { id status } }`, { i: ids.planInput });
  assert.deepEqual(again.plan, { id: ids.plan, status: 'SUCCEEDED' });
  const dl = await fetch(`${base}/artifacts/${ids.artifact}`, { headers: auth });
  assert.equal(dl.status, 200);
  assert.equal(sha256(new Uint8Array(await dl.arrayBuffer())), ids.artifact);
});
