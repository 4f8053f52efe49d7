/**
 * Every query and mutation in process, through Apollo's executeOperation, with jobs run for real
 * in worker processes on the fixture models; and every error code an API call can end with.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../service/src/config.js';
import { encodeNpz } from '../../service/src/core/data/npy.js';
import { decodeModel, encodeModel } from '../../service/src/core/onnx/codec.js';
import { StrataApp } from '../../service/src/graphql/app.js';
import { DataDirLockedError, LOCK_FILE } from '../../service/src/store/data-dir-lock.js';
import { CALIB_DATA, EVAL_DATA, fixtureModel } from '../helpers/paths.js';

interface GqlError {
  message: string;
  extensions: { code: string; parameter?: string; stacktrace?: unknown };
}
interface Gql<T> {
  data?: T | null;
  errors?: GqlError[];
}
interface Job {
  id: string;
  kind: string;
  status: string;
  startedAt: string | null;
  finishedAt: string | null;
  progress: { phase: string } | null;
  error: { code: string; message: string } | null;
  result: Record<string, unknown> & { __typename: string };
}

const JOB = `
  id kind status startedAt finishedAt progress { phase fraction message } error { code message }
  result {
    __typename
    ... on StructureResult { units { id kind removable reason parameters macs outputShape parent children conv { kernel inChannels outChannels } skip } warnings inputShapes { input dims } }
    ... on SimilarityResult { layers { id kind } matrix estimator samples batches degenerate }
    ... on SegmentsResult { layers { id removable } segments k kRule cost costCurve }
    ... on PlanResult { method budget { kind value } remove predictedLatencyMs baselineLatencyMs predictedSpeedup latencyBatch importanceLost segments importance { unit value } document }
    ... on CompressResult { artifact { sha256 size url } report { removed removedNodes parametersBefore parametersAfter latencyRatio speedup accuracyBefore accuracyAfter agreement samples } }
    ... on TradeoffResult { baselineLatencyMs latencyBatch points { budget { kind value } feasible reason plan { remove } artifact { sha256 } report { latencyRatio accuracyAfter } } }
  }`;

let dir = '';
let roots = '';
let app: StrataApp;
const ids = { resnet: '', vit: '', calib: '', eval: '', plan: '', planDoc: {} as Record<string, unknown> };

async function gql<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>, on: StrataApp = app): Promise<Gql<T>> {
  const r = await on.execute({ query, ...(variables ? { variables } : {}) });
  assert.equal(r.body.kind, 'single');
  // plain objects (GraphQL builds null-prototype ones), as a client over HTTP would see them
  return JSON.parse(JSON.stringify((r.body as { singleResult: Gql<T> }).singleResult)) as Gql<T>;
}

async function ok<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>, on: StrataApp = app): Promise<T> {
  const r = await gql<T>(query, variables, on);
  assert.equal(r.errors, undefined, JSON.stringify(r.errors));
  return r.data as T;
}

/** The error of a call that must fail: its code, message, and no stack trace. */
async function fails(query: string, variables: Record<string, unknown> | undefined, code: string, message: RegExp): Promise<GqlError> {
  const r = await gql(query, variables);
  assert.ok(r.errors && r.errors.length > 0, `expected ${code}, got ${JSON.stringify(r.data)}`);
  const e = r.errors[0]!;
  assert.equal(e.extensions.code, code, e.message);
  assert.match(e.message, message);
  assert.equal(e.extensions.stacktrace, undefined, 'no stack trace outside development');
  return e;
}

async function waitJob(id: string, on: StrataApp = app, timeoutMs = 120_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await ok<{ job: Job }>(`query ($id: ID!) { job(id: $id) { ${JOB} } }`, { id }, on);
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(job.status)) return job;
    assert.ok(Date.now() < deadline, `job ${id} still ${job.status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function run(field: string, input: Record<string, unknown>, type: string): Promise<Job> {
  const data = await ok<Record<string, Job>>(`query ($input: ${type}!) { ${field}(input: $input) { id status } }`, { input });
  return waitJob(data[field]!.id);
}

function config(dataDir: string, env: Record<string, string> = {}) {
  return parseConfig({ STRATA_LOG_LEVEL: 'silent', STRATA_FILE_ROOTS: roots, ...env }, { dataDir, port: '0' });
}

async function registerModelBytes(bytes: Uint8Array, name: string) {
  const { sha256 } = app.artifacts.put(bytes);
  return gql<{ registerModel: { id: string } }>(`mutation ($s: String!, $n: String!) { registerModel(sha256: $s, name: $n) { id } }`, { s: sha256, n: name });
}

const analysis = () => ({ model: ids.resnet, dataset: ids.calib, samples: 64, batchSize: 32 });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-gql-'));
  roots = join(dir, 'files');
  mkdirSync(roots);
  copyFileSync(fixtureModel('vit'), join(roots, 'vit.onnx'));
  copyFileSync(EVAL_DATA, join(roots, 'eval.npz'));
  app = await StrataApp.open(config(join(dir, 'data')));
});
after(async () => {
  await app.close(0);
  rmSync(dir, { recursive: true, force: true });
});

test('registerModel: an uploaded ONNX file becomes a model with its signature; the same again is the same model', async () => {
  const bytes = new Uint8Array(readFileSync(fixtureModel('resnet20')));
  const r = await registerModelBytes(bytes, 'resnet20');
  assert.equal(r.errors, undefined);
  ids.resnet = r.data!.registerModel.id;
  const { model } = await ok<{ model: Record<string, unknown> }>(
    `query ($id: ID!) { model(id: $id) { id name sha256 size source nodes opset producer inputs { name dtype dims } outputs { name dims } warnings createdAt } }`,
    { id: ids.resnet },
  );
  assert.equal(model.name, 'resnet20');
  assert.equal(model.size, bytes.byteLength);
  assert.equal(model.source, 'upload');
  assert.equal(model.opset, 17);
  assert.deepEqual(model.inputs, [{ name: 'input', dtype: 'float32', dims: ['batch', '1', '28', '28'] }]);
  assert.match(String(model.createdAt), /^\d{4}-\d\d-\d\dT/);
  assert.equal((await registerModelBytes(bytes, 'resnet20')).data!.registerModel.id, ids.resnet);
});

test('registerModelFile and registerDatasetFile read files inside STRATA_FILE_ROOTS', async () => {
  const m = await ok<{ registerModelFile: { id: string; source: string; name: string } }>(
    `mutation ($p: String!) { registerModelFile(path: $p) { id source name } }`,
    { p: join(roots, 'vit.onnx') },
  );
  assert.deepEqual([m.registerModelFile.source, m.registerModelFile.name], ['file', 'vit.onnx']);
  ids.vit = m.registerModelFile.id;
  const d = await ok<{ registerDatasetFile: { id: string; samples: number; hasLabels: boolean } }>(
    `mutation ($p: String!) { registerDatasetFile(path: $p, name: "eval") { id samples hasLabels } }`,
    { p: join(roots, 'eval.npz') },
  );
  assert.equal(d.registerDatasetFile.samples, 1000);
  assert.equal(d.registerDatasetFile.hasLabels, true);
  ids.eval = d.registerDatasetFile.id;
});

test('BAD CALL - a path outside the roots, with "..", relative, or a symlink leading out is refused', async () => {
  const q = `mutation ($p: String!) { registerModelFile(path: $p) { id } }`;
  await fails(q, { p: fixtureModel('resnet20') }, 'BAD_USER_INPUT', /not inside the folders the service may read/);
  await fails(q, { p: `${roots}/../files/vit.onnx` }, 'BAD_USER_INPUT', /must not contain "\.\." segments/);
  await fails(q, { p: 'files/vit.onnx' }, 'BAD_USER_INPUT', /must be an absolute path/);
  symlinkSync(fixtureModel('resnet20'), join(roots, 'link.onnx'));
  await fails(q, { p: join(roots, 'link.onnx') }, 'BAD_USER_INPUT', /not inside the folders/);
  await fails(q, { p: join(roots, 'absent.onnx') }, 'NOT_FOUND', /file not found/);
});

test('registerDataset: an uploaded npz becomes a data set with its arrays; datasets lists it', async () => {
  const { sha256 } = await app.artifacts.ingestFile(CALIB_DATA);
  const r = await ok<{ registerDataset: { id: string; format: string; samples: number; arrays: { name: string; dtype: string; shape: number[] }[] } }>(
    `mutation ($s: String!) { registerDataset(sha256: $s, name: "calib") { id format samples arrays { name dtype shape } } }`,
    { s: sha256 },
  );
  ids.calib = r.registerDataset.id;
  assert.equal(r.registerDataset.format, 'npz');
  assert.equal(r.registerDataset.samples, 512);
  assert.deepEqual(r.registerDataset.arrays.map((a) => a.name).sort(), ['input', 'labels']);
  const list = await ok<{ datasets: { id: string }[]; dataset: { name: string }; models: { id: string }[] }>(
    `query ($id: ID!) { datasets { id } dataset(id: $id) { name } models { id } }`,
    { id: ids.calib },
  );
  assert.deepEqual(list.datasets.map((d) => d.id).sort(), [ids.calib, ids.eval].sort());
  assert.equal(list.dataset.name, 'calib');
  assert.equal(list.models.length, 2);
});

test('BAD MODEL - bytes that are not ONNX are INVALID_MODEL and nothing is registered', async () => {
  const before = (await ok<{ models: unknown[] }>('{ models { id } }')).models.length;
  const junk = new Uint8Array(4096).map((_, i) => (i * 7919) % 256);
  const r = await registerModelBytes(junk, 'junk');
  assert.equal(r.errors?.[0]?.extensions.code, 'INVALID_MODEL');
  const bytes = new Uint8Array(readFileSync(fixtureModel('resnet20')));
  const t = await registerModelBytes(bytes.subarray(0, bytes.length >> 1), 'truncated');
  assert.equal(t.errors?.[0]?.extensions.code, 'INVALID_MODEL');
  assert.match(t.errors![0]!.message, /truncated/);
  assert.equal((await ok<{ models: unknown[] }>('{ models { id } }')).models.length, before);
});

test('BAD MODEL - unknown operators and external weights are UNSUPPORTED_MODEL', async () => {
  const model = decodeModel(new Uint8Array(readFileSync(fixtureModel('resnet20'))));
  model.graph!.node!.find((n) => n.op_type === 'Relu')!.op_type = 'SuperRelu';
  const r = await registerModelBytes(encodeModel(model), 'unknown-op');
  assert.equal(r.errors?.[0]?.extensions.code, 'UNSUPPORTED_MODEL');
  assert.match(r.errors![0]!.message, /SuperRelu/);
  const ext = decodeModel(new Uint8Array(readFileSync(fixtureModel('resnet20'))));
  const w = ext.graph!.initializer![0]!;
  w.raw_data = new Uint8Array(0);
  w.data_location = 1;
  w.external_data = [{ key: 'location', value: 'weights.bin' }];
  const e = await registerModelBytes(encodeModel(ext), 'external');
  assert.equal(e.errors?.[0]?.extensions.code, 'UNSUPPORTED_MODEL');
  assert.match(e.errors![0]!.message, /external data/);
});

test('BAD DATA - a file that is not npz/npy is BAD_DATASET', async () => {
  const { sha256 } = app.artifacts.put(new TextEncoder().encode('not numpy at all'));
  await fails(`mutation ($s: String!) { registerDataset(sha256: $s, name: "x") { id } }`, { s: sha256 }, 'BAD_DATASET', /neither a \.npz .* nor a \.npy/);
});

test('NOT FOUND - unknown ids and unknown uploads are NOT_FOUND', async () => {
  await fails('{ model(id: "nope") { id } }', undefined, 'NOT_FOUND', /no model with id "nope"/);
  await fails('{ dataset(id: "nope") { id } }', undefined, 'NOT_FOUND', /no data set/);
  await fails('{ job(id: "nope") { id } }', undefined, 'NOT_FOUND', /no job/);
  await fails('mutation { cancelJob(id: "nope") { id } }', undefined, 'NOT_FOUND', /no job/);
  await fails(`mutation { registerModel(sha256: "${'0'.repeat(64)}", name: "x") { id } }`, undefined, 'NOT_FOUND', /POST the file to \/upload first/);
  await fails(`query ($i: PlanInput!) { plan(input: $i) { id } }`, { i: { model: ids.resnet, dataset: 'nope', budget: { remove: 1 } } }, 'NOT_FOUND', /no data set/);
});

test('structure: the units of a model, from its declared shapes or from a data set', async () => {
  const job = await run('structure', { model: ids.resnet }, 'StructureInput');
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error));
  assert.equal(job.kind, 'STRUCTURE');
  const units = job.result.units as { id: string; kind: string; removable: boolean; reason: string | null }[];
  assert.equal(units.filter((u) => u.kind === 'RESIDUAL').length, 9);
  assert.ok(units.some((u) => u.kind === 'RESIDUAL' && !u.removable && /projection/.test(u.reason ?? '')));
  assert.deepEqual(job.result.inputShapes, [{ input: 'input', dims: [1, 1, 28, 28] }]);
  const withData = await run('structure', { model: ids.vit, dataset: ids.calib }, 'StructureInput');
  assert.ok((withData.result.units as { kind: string }[]).some((u) => u.kind === 'TRANSFORMER'));
  await fails(
    `query ($i: StructureInput!) { structure(input: $i) { id } }`,
    { i: { model: ids.vit, dataset: ids.calib, shapes: [{ input: 'input', dims: [1, 1, 28, 28] }] } },
    'BAD_USER_INPUT',
    /data set or shapes, not both/,
  );
});

test('similarity: a symmetric CKA matrix over the layers', async () => {
  const job = await run('similarity', analysis(), 'AnalysisInput');
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error));
  const m = job.result.matrix as number[][];
  assert.equal(m.length, (job.result.layers as unknown[]).length);
  for (let i = 0; i < m.length; i++) {
    assert.ok(Math.abs(m[i]![i]! - 1) < 1e-6);
    for (let j = 0; j < m.length; j++) assert.ok(Math.abs(m[i]![j]! - m[j]![i]!) < 1e-9);
  }
  assert.equal(job.result.samples, 64);
  assert.equal(job.result.estimator, 'UNBIASED');
});

test('segments: k given is k segments covering the layers in order', async () => {
  const job = await run('segments', { ...analysis(), k: 3 }, 'SegmentsInput');
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error));
  const segments = job.result.segments as string[][];
  assert.equal(segments.length, 3);
  assert.deepEqual(segments.flat(), (job.result.layers as { id: string }[]).map((l) => l.id));
  assert.equal(job.result.kRule, 'given');
});

test('plan: SGLP under a removal budget; the same request again is the same finished job', async () => {
  const input = { ...analysis(), method: 'SGLP', budget: { remove: 2 }, latencyBatch: 4 };
  const job = await run('plan', input, 'PlanInput');
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error));
  assert.equal(job.result.__typename, 'PlanResult');
  assert.equal((job.result.remove as string[]).length, 2);
  assert.deepEqual(job.result.budget, { kind: 'REMOVE', value: 2 });
  assert.ok((job.result.predictedLatencyMs as number) < (job.result.baselineLatencyMs as number));
  ids.plan = job.id;
  ids.planDoc = job.result.document as Record<string, unknown>;
  assert.equal(ids.planDoc.format, 'strata-plan');
  const again = await ok<{ plan: Job }>(`query ($i: PlanInput!) { plan(input: $i) { ${JOB} } }`, { i: { ...input, method: undefined } });
  assert.equal(again.plan.id, job.id, 'defaults filled in: the same request');
  assert.equal(again.plan.status, 'SUCCEEDED');
  assert.deepEqual(again.plan.result.remove, job.result.remove);
});

test('BUDGET - an impossible latency budget fails the job with BUDGET_INFEASIBLE', async () => {
  const job = await run('plan', { ...analysis(), budget: { latencyMs: 0.0001 }, latencyBatch: 4 }, 'PlanInput');
  assert.equal(job.status, 'FAILED');
  assert.equal(job.error?.code, 'BUDGET_INFEASIBLE');
  assert.match(job.error!.message, /cannot be met: .* reaches [0-9.]+ ms at best/);
});

test('BAD CALL - budgets with no field, two fields or out of range are BAD_USER_INPUT naming the field', async () => {
  const q = `query ($i: PlanInput!) { plan(input: $i) { id } }`;
  const e = await fails(q, { i: { ...analysis(), budget: {} } }, 'BAD_USER_INPUT', /set exactly one of latencyFraction/);
  assert.equal(e.extensions.parameter, 'input.budget');
  await fails(q, { i: { ...analysis(), budget: { remove: 1, latencyMs: 3 } } }, 'BAD_USER_INPUT', /got remove, latencyMs|got latencyMs, remove/);
  await fails(q, { i: { ...analysis(), budget: { latencyFraction: 1.5 } } }, 'BAD_USER_INPUT', /input\.budget\.latencyFraction: must be in \(0, 1\]/);
  await fails(q, { i: { ...analysis(), batchSize: 2, budget: { remove: 1 } } }, 'BAD_USER_INPUT', /input\.batchSize: must be a whole number from 4/);
  await fails(q, { i: { ...analysis(), method: 'LAYERMERGE', budget: { remove: 1 } } }, 'BAD_USER_INPUT', /LAYERMERGE/);
});

test('compress: a plan job applied; the compressed model is stored and measured; a plan.json gives the same job', async () => {
  const { compress } = await ok<{ compress: { id: string } }>(`mutation ($i: CompressInput!) { compress(input: $i) { id } }`, {
    i: { model: ids.resnet, plan: ids.plan, evalDataset: ids.calib },
  });
  const job = await waitJob(compress.id);
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error));
  const artifact = job.result.artifact as { sha256: string; size: number; url: string };
  assert.equal(artifact.url, `/artifacts/${artifact.sha256}`);
  assert.equal(app.artifacts.size(artifact.sha256), artifact.size);
  const report = job.result.report as { removed: string[]; parametersAfter: number; parametersBefore: number; samples: number; accuracyAfter: number };
  assert.deepEqual(report.removed, ids.planDoc.remove);
  assert.ok(report.parametersAfter < report.parametersBefore);
  assert.equal(report.samples, 512);
  assert.ok(report.accuracyAfter > 0.1);
  const viaDocument = await ok<{ compress: { id: string; status: string } }>(`mutation ($i: CompressInput!) { compress(input: $i) { id status } }`, {
    i: { model: ids.resnet, planDocument: ids.planDoc, evalDataset: ids.calib },
  });
  assert.deepEqual(viaDocument.compress, { id: compress.id, status: 'SUCCEEDED' });
});

test('BAD CALL - compress with both plans, neither, a plan for another model, or a job that is not a plan', async () => {
  const q = `mutation ($i: CompressInput!) { compress(input: $i) { id } }`;
  await fails(q, { i: { model: ids.resnet } }, 'BAD_USER_INPUT', /exactly one of plan .* or planDocument/);
  await fails(q, { i: { model: ids.resnet, plan: ids.plan, planDocument: ids.planDoc } }, 'BAD_USER_INPUT', /exactly one/);
  await fails(q, { i: { model: ids.vit, plan: ids.plan } }, 'BAD_USER_INPUT', /plan was made for another model/);
  await fails(q, { i: { model: ids.resnet, planDocument: { hello: 1 } } }, 'BAD_USER_INPUT', /input\.planDocument: not a strata plan/);
  await fails(q, { i: { model: ids.resnet, planDocument: { ...ids.planDoc, method: 'something-else' } } }, 'BAD_USER_INPUT', /input\.planDocument: method "something-else"/);
  const { jobs } = await ok<{ jobs: { id: string }[] }>('{ jobs(kind: STRUCTURE, limit: 1) { id } }');
  await fails(q, { i: { model: ids.resnet, plan: jobs[0]!.id } }, 'BAD_USER_INPUT', /is a structure job, not a plan/);
});

test('tradeoff: several budgets from one analysis, each compressed and measured; an impossible one is marked', async () => {
  const job = await run(
    'tradeoff',
    { ...analysis(), latencyBatch: 4, budgets: [{ remove: 1 }, { fraction: 0.5 }, { latencyMs: 0.0001 }], evalDataset: ids.eval },
    'TradeoffInput',
  );
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error));
  const points = job.result.points as { feasible: boolean; reason: string | null; plan: { remove: string[] } | null; artifact: { sha256: string } | null; report: { accuracyAfter: number } | null }[];
  assert.equal(points.length, 3);
  assert.ok(points[0]!.feasible && points[1]!.feasible);
  assert.equal(points[0]!.plan!.remove.length, 1);
  assert.ok(points[1]!.plan!.remove.length > 1);
  assert.notEqual(points[0]!.artifact!.sha256, points[1]!.artifact!.sha256);
  assert.ok(points[1]!.report!.accuracyAfter > 0);
  assert.equal(points[2]!.feasible, false);
  assert.match(points[2]!.reason ?? '', /cannot be met/);
});

test('cancelJob: a queued or running job ends CANCELLED; a finished one is returned unchanged', async () => {
  const { similarity } = await ok<{ similarity: { id: string } }>(`query ($i: AnalysisInput!) { similarity(input: $i) { id } }`, {
    i: { ...analysis(), samples: 96, estimator: 'BIASED' },
  });
  const { cancelJob } = await ok<{ cancelJob: { id: string; status: string } }>(`mutation ($id: ID!) { cancelJob(id: $id) { id status } }`, { id: similarity.id });
  assert.equal(cancelJob.status, 'CANCELLED');
  const finished = await ok<{ cancelJob: { status: string } }>(`mutation ($id: ID!) { cancelJob(id: $id) { status } }`, { id: ids.plan });
  assert.equal(finished.cancelJob.status, 'SUCCEEDED');
  const again = await ok<{ similarity: { id: string } }>(`query ($i: AnalysisInput!) { similarity(input: $i) { id } }`, {
    i: { ...analysis(), samples: 96, estimator: 'BIASED' },
  });
  assert.notEqual(again.similarity.id, similarity.id, 'a cancelled job is not a cached result');
  assert.equal((await waitJob(again.similarity.id)).status, 'SUCCEEDED');
});

test('jobs: newest first, filtered by kind and status', async () => {
  const { jobs } = await ok<{ jobs: { kind: string; status: string; createdAt: string }[] }>('{ jobs(limit: 100) { kind status createdAt } }');
  assert.ok(jobs.length >= 8);
  for (let i = 1; i < jobs.length; i++) assert.ok(jobs[i - 1]!.createdAt >= jobs[i]!.createdAt);
  const failed = await ok<{ jobs: { status: string; kind: string }[] }>('{ jobs(status: FAILED, kind: PLAN) { status kind } }');
  assert.ok(failed.jobs.length >= 1);
  assert.ok(failed.jobs.every((j) => j.status === 'FAILED' && j.kind === 'PLAN'));
  await fails('{ jobs(limit: 0) { id } }', undefined, 'BAD_USER_INPUT', /limit: must be from 1 to 200/);
});

test('BAD DATA - a data set that does not fit the model fails the job with BAD_DATASET', async () => {
  const npz = encodeNpz({ input: { data: new Float32Array(8 * 3 * 28 * 28), dtype: 'float32', shape: [8, 3, 28, 28] } });
  const { sha256 } = app.artifacts.put(npz);
  const { registerDataset } = await ok<{ registerDataset: { id: string } }>(`mutation ($s: String!) { registerDataset(sha256: $s, name: "wrong") { id } }`, { s: sha256 });
  const job = await run('similarity', { model: ids.resnet, dataset: registerDataset.id, batchSize: 4 }, 'AnalysisInput');
  assert.equal(job.status, 'FAILED');
  assert.equal(job.error?.code, 'BAD_DATASET');
  assert.match(job.error!.message, /input/);
});

test('BAD REQUEST - parse, validation and variable errors keep GraphQL codes; a flood of fields is QUERY_TOO_COMPLEX', async () => {
  await fails('{ models { id ', undefined, 'GRAPHQL_PARSE_FAILED', /Syntax Error/);
  await fails('{ models { nope } }', undefined, 'GRAPHQL_VALIDATION_FAILED', /Cannot query field "nope"/);
  await fails('query ($id: ID!) { model(id: $id) { id } }', { id: { x: 1 } }, 'BAD_USER_INPUT', /\$id/);
  const flood = `{ ${Array.from({ length: 600 }, (_, i) => `m${i}: models { id }`).join(' ')} }`;
  await fails(flood, undefined, 'QUERY_TOO_COMPLEX', /more than 500 fields/);
});

test('RUNTIME - a provider this onnxruntime cannot use fails the job with RUNTIME_UNAVAILABLE', async () => {
  const other = await StrataApp.open(config(join(dir, 'cuda'), { STRATA_PROVIDER: 'cuda' }));
  try {
    const bytes = new Uint8Array(readFileSync(fixtureModel('resnet20')));
    const { sha256 } = other.artifacts.put(bytes);
    const { registerModel } = await ok<{ registerModel: { id: string } }>(`mutation ($s: String!) { registerModel(sha256: $s, name: "r") { id } }`, { s: sha256 }, other);
    const data = await other.artifacts.ingestFile(CALIB_DATA);
    const { registerDataset } = await ok<{ registerDataset: { id: string } }>(`mutation ($s: String!) { registerDataset(sha256: $s, name: "c") { id } }`, { s: data.sha256 }, other);
    const { similarity } = await ok<{ similarity: { id: string } }>(`query ($i: AnalysisInput!) { similarity(input: $i) { id } }`, {
      i: { model: registerModel.id, dataset: registerDataset.id, samples: 8, batchSize: 8 },
    }, other);
    const job = await waitJob(similarity.id, other);
    assert.equal(job.status, 'FAILED');
    assert.equal(job.error?.code, 'RUNTIME_UNAVAILABLE');
    assert.match(job.error!.message, /cuda/i);
  } finally {
    await other.close(0);
  }
});

test('in development, errors carry their stack trace', async () => {
  const dev = await StrataApp.open(config(join(dir, 'dev'), { NODE_ENV: 'development' }));
  try {
    const r = await gql('{ model(id: "nope") { id } }', undefined, dev);
    assert.equal(r.errors?.[0]?.extensions.code, 'NOT_FOUND');
    assert.ok(Array.isArray(r.errors?.[0]?.extensions.stacktrace));
  } finally {
    await dev.close(0);
  }
});

test('one app per data directory, in process too: a second open is refused until the first has closed', async () => {
  await assert.rejects(StrataApp.open(config(join(dir, 'data'))), (e: unknown) => e instanceof DataDirLockedError && /in use by another strata service/.test(e.message));
  const folder = join(dir, 'twice');
  const first = await StrataApp.open(config(folder));
  await assert.rejects(StrataApp.open(config(folder)), DataDirLockedError);
  await first.close(0);
  assert.ok(!existsSync(join(folder, LOCK_FILE)), 'released on close');
  // a restart in the same process, as tests and embedders do
  const second = await StrataApp.open(config(folder));
  await second.close(0);
  assert.ok(!existsSync(join(folder, 'service.lock')), 'one lock: no pid-only lock file beside it');
});
