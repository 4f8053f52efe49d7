/**
 * LayerMerge through the GraphQL service, in process (Apollo's executeOperation) with jobs run for
 * real in worker processes: the tables query, plans under latency budgets from the cached tables,
 * compression with a LayerMerge plan (the model runs in onnxruntime), the trade-off sweep, and
 * the errors that belong to the method. Kept small: 64 calibration samples, latency at batch 4.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { parseConfig } from '../../service/src/config.js';
import { decodeModel } from '../../service/src/core/onnx/codec.js';
import { StrataApp } from '../../service/src/graphql/app.js';
import { CALIB_DATA, fixtureModel } from '../helpers/paths.js';

interface GqlError {
  message: string;
  extensions: { code: string; parameter?: string; stacktrace?: unknown };
}
interface Gql<T> {
  data?: T | null;
  errors?: GqlError[];
}
interface Job<R = Record<string, unknown>> {
  id: string;
  kind: string;
  status: string;
  error: { code: string; message: string } | null;
  result: (R & { __typename: string }) | null;
}

interface Block {
  i: number;
  j: number;
  k: number;
  kh: number;
  kw: number;
  kept: number[];
  keptIds: string[];
  removedIds: string[];
  removedActivations: string[];
  foldedSkips: string[];
  unchanged: boolean;
  latencyMs: number;
  refit: boolean;
}
interface Plan {
  method: string;
  budget: { kind: string; value: number };
  remove: string[];
  predictedLatencyMs: number;
  baselineLatencyMs: number;
  latencyBatch: number;
  segments: string[][];
  layermerge: { variant: string; quantumMs: number; chain: string[]; restMs: number; budgetMs: number; refit: boolean; blocks: Block[] } | null;
  document: Record<string, unknown>;
}
interface Candidate {
  key: string;
  i: number;
  j: number;
  k: number;
  identity: boolean;
  latencyMs: number;
  dominated: boolean;
  importance: { deltaLoss: number; importance: number; fidelity: number } | null;
}
interface Tables {
  chain: string[];
  residuals: string[];
  candidateCount: number;
  dominatedCount: number;
  batch: number;
  originalMs: number;
  restMs: number;
  samples: number;
  importanceBasis: string;
  candidates: Candidate[];
  document: { format: string; importance: { entries: Record<string, unknown>; dominated: string[] } };
}
interface Merged {
  i: number;
  j: number;
  from: string[];
  kh: number;
  kw: number;
  foldedSkips: string[];
  refit: boolean;
}
interface Report {
  removed: string[];
  merged: Merged[];
  parametersBefore: number;
  parametersAfter: number;
  latencyRatio: number;
  predictedRatio: number;
  accuracyBefore: number | null;
  accuracyAfter: number | null;
  samples: number | null;
}

const PLAN_FIELDS = `method budget { kind value } remove predictedLatencyMs baselineLatencyMs latencyBatch segments document
  layermerge { variant quantumMs chain restMs budgetMs refit blocks { i j k kh kw kept keptIds removedIds removedActivations foldedSkips unchanged latencyMs refit } }`;
const REPORT_FIELDS = 'removed merged { i j from kh kw foldedSkips refit } parametersBefore parametersAfter latencyRatio predictedRatio accuracyBefore accuracyAfter samples';
const JOB = `
  id kind status error { code message }
  result {
    __typename
    ... on LayerMergeTablesResult {
      chain residuals candidateCount dominatedCount batch originalMs restMs samples importanceBasis document
      candidates { key i j k identity latencyMs dominated importance { deltaLoss importance fidelity } }
    }
    ... on PlanResult { ${PLAN_FIELDS} }
    ... on CompressResult { artifact { sha256 size url } report { ${REPORT_FIELDS} } }
    ... on TradeoffResult { baselineLatencyMs latencyBatch points { budget { kind value } feasible reason plan { ${PLAN_FIELDS} } artifact { sha256 } report { ${REPORT_FIELDS} } } }
  }`;

let dir = '';
let app: StrataApp;
const ids = { resnet: '', calib: '', plan: '' };
let tables: Tables;
let plan: Plan;

async function gql<T>(query: string, variables?: Record<string, unknown>): Promise<Gql<T>> {
  const r = await app.execute({ query, ...(variables ? { variables } : {}) });
  assert.equal(r.body.kind, 'single');
  return JSON.parse(JSON.stringify((r.body as { singleResult: Gql<T> }).singleResult)) as Gql<T>;
}

async function ok<T>(query: string, variables?: Record<string, unknown>): Promise<T> {
  const r = await gql<T>(query, variables);
  assert.equal(r.errors, undefined, JSON.stringify(r.errors));
  return r.data as T;
}

async function fails(query: string, variables: Record<string, unknown>, code: string, parameter: string, message: RegExp): Promise<void> {
  const r = await gql(query, variables);
  assert.ok(r.errors && r.errors.length > 0, `expected ${code}, got ${JSON.stringify(r.data)}`);
  const e = r.errors[0]!;
  assert.equal(e.extensions.code, code, e.message);
  assert.equal(e.extensions.parameter, parameter, e.message);
  assert.match(e.message, message);
}

async function waitJob<R>(id: string, timeoutMs = 120_000): Promise<Job<R>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await ok<{ job: Job<R> }>(`query ($id: ID!) { job(id: $id) { ${JOB} } }`, { id });
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(job.status)) return job;
    assert.ok(Date.now() < deadline, `job ${id} still ${job.status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function run<R>(field: string, input: Record<string, unknown>, type: string): Promise<Job<R>> {
  const data = await ok<Record<string, { id: string }>>(`query ($input: ${type}!) { ${field}(input: $input) { id } }`, { input });
  return waitJob<R>(data[field]!.id);
}

/** The analysis inputs every request here shares, so they share one set of tables. */
const analysis = () => ({ model: ids.resnet, dataset: ids.calib, samples: 64, batchSize: 32, latencyBatch: 4 });
/**
 * The exact merges, spelled out: refit is the default, and its tables are another analysis (timed
 * in the refit test, on smaller kernels). Most tests here share these tables instead.
 */
const exact = { refit: false };

/** The cached analyses: file name → modification time. */
function analyses(): Map<string, number> {
  const folder = join(dir, 'data', 'analyses');
  if (!existsSync(folder)) return new Map();
  return new Map(readdirSync(folder).map((f) => [f, statSync(join(folder, f)).mtimeMs]));
}

function assertTiles(lm: NonNullable<Plan['layermerge']>): void {
  let at = 0;
  for (const b of lm.blocks) {
    assert.equal(b.i, at, `block (${b.i}, ${b.j}] starts where the previous ended`);
    assert.ok(b.j > b.i);
    at = b.j;
  }
  assert.equal(at, lm.chain.length, 'the blocks cover the whole chain');
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-gql-layermerge-'));
  app = await StrataApp.open(parseConfig({ STRATA_LOG_LEVEL: 'silent' }, { dataDir: join(dir, 'data'), port: '0' }));
  const model = app.artifacts.put(new Uint8Array(readFileSync(fixtureModel('resnet20'))));
  ids.resnet = (await ok<{ registerModel: { id: string } }>(`mutation ($s: String!) { registerModel(sha256: $s, name: "resnet20") { id } }`, { s: model.sha256 }))
    .registerModel.id;
  const data = await app.artifacts.ingestFile(CALIB_DATA);
  ids.calib = (await ok<{ registerDataset: { id: string } }>(`mutation ($s: String!) { registerDataset(sha256: $s, name: "calib") { id } }`, { s: data.sha256 }))
    .registerDataset.id;
});
after(async () => {
  await app.close(0);
  rmSync(dir, { recursive: true, force: true });
});

test('layerMergeTables: the chain, every candidate with its measured latency, an importance entry for each one not dominated', async () => {
  const job = await run<Tables>('layerMergeTables', { ...analysis(), ...exact }, 'LayerMergeTablesInput');
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error));
  assert.equal(job.kind, 'TABLES');
  assert.equal(job.result!.__typename, 'LayerMergeTablesResult');
  tables = job.result!;
  assert.equal(tables.chain.length, 19);
  assert.equal(tables.residuals.length, 9);
  assert.equal(tables.candidateCount, tables.candidates.length);
  assert.ok(tables.candidates.length > tables.chain.length, 'merges are offered beside the single convolutions');
  assert.equal(tables.batch, 4);
  assert.equal(tables.samples, 64);
  assert.equal(tables.importanceBasis, 'cross-entropy');
  assert.ok(tables.originalMs > 0 && tables.restMs >= 0 && tables.restMs < tables.originalMs);
  for (const c of tables.candidates) {
    assert.ok(Number.isFinite(c.latencyMs), c.key);
    if (!c.identity) assert.ok(c.latencyMs > 0, `${c.key} computes something and takes time`);
    assert.equal(c.importance === null, c.dominated, `${c.key}: an importance exactly when not dominated`);
    if (c.importance) assert.ok(Number.isFinite(c.importance.deltaLoss) && c.importance.fidelity >= 0, c.key);
  }
  const scored = tables.candidates.filter((c) => !c.dominated);
  assert.equal(tables.dominatedCount, tables.candidates.length - scored.length);
  assert.equal(tables.document.format, 'strata-layermerge-tables');
  assert.deepEqual(Object.keys(tables.document.importance.entries).sort(), scored.map((c) => c.key).sort());
  // the tables are kept in the data folder, as `strata tables -o` writes them
  const kept = [...analyses().keys()];
  assert.equal(kept.length, 1);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'data', 'analyses', kept[0]!), 'utf8')), tables.document);
});

test('plan: LAYERMERGE under a latency budget, from the cached tables; blocks tile the chain within the budget; asking again is the same job', async () => {
  const cached = analyses();
  // a quantum well below one convolution's time at batch 4, whatever the machine: every block's
  // latency is rounded up to it, which at the default 0.1 ms could add up to more than the budget saves
  const input = { ...analysis(), method: 'LAYERMERGE', layerMerge: { ...exact, quantumMs: 0.01 }, budget: { latencyFraction: 0.8 } };
  const job = await run<Plan>('plan', input, 'PlanInput');
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error));
  plan = job.result!;
  ids.plan = job.id;
  assert.equal(plan.method, 'LAYERMERGE');
  assert.deepEqual(plan.budget, { kind: 'LATENCY_FRACTION', value: 0.8 });
  assert.deepEqual(plan.segments, []);
  assert.equal(plan.baselineLatencyMs, tables.originalMs, 'planned from the same tables');
  assert.ok(plan.predictedLatencyMs <= 0.8 * plan.baselineLatencyMs + 1e-9, `${plan.predictedLatencyMs} > 0.8 × ${plan.baselineLatencyMs}`);
  const lm = plan.layermerge!;
  assert.equal(lm.variant, 'LAYERMERGE');
  assert.equal(lm.quantumMs, 0.01);
  assert.equal(lm.refit, false);
  assert.ok(lm.blocks.every((b) => !b.refit), 'refit: false emits the exact merges');
  assert.deepEqual(lm.chain, tables.chain);
  assertTiles(lm);
  assert.ok(lm.blocks.some((b) => !b.unchanged), 'a 0.8 budget changes something');
  assert.deepEqual(plan.remove.sort(), lm.blocks.flatMap((b) => [...b.removedIds, ...b.removedActivations]).sort());
  assert.equal(plan.document.method, 'layermerge');
  assert.deepEqual(analyses(), cached, 'the cached tables were read, not measured and written again');

  const again = await ok<{ plan: Job<Plan> }>(`query ($i: PlanInput!) { plan(input: $i) { ${JOB} } }`, {
    i: { ...input, layerMerge: { variant: 'LAYERMERGE', quantumMs: 0.01, refit: false, maxKernel: 7, ridge: 0.5 } },
  });
  assert.equal(again.plan.id, job.id, 'the other defaults spelled out, and a ridge without refit: the same request');
  assert.equal(again.plan.status, 'SUCCEEDED');

  // merged kernels are not faster than the convs they replace on every CPU: a loose budget is one
  // merge-only can always meet (the original tiling fits it)
  const mergeOnly = await run<Plan>(
    'plan',
    { ...input, layerMerge: { ...exact, variant: 'MERGE_ONLY', quantumMs: 0.01 }, budget: { latencyMs: 2 * tables.originalMs } },
    'PlanInput',
  );
  assert.equal(mergeOnly.status, 'SUCCEEDED', JSON.stringify(mergeOnly.error));
  assert.equal(mergeOnly.result!.layermerge!.variant, 'MERGE_ONLY');
  assertTiles(mergeOnly.result!.layermerge!);
  const blocks = mergeOnly.result!.layermerge!.blocks;
  assert.ok(blocks.every((b) => b.kept.length === b.j - b.i && b.removedIds.length === 0), 'merge-only keeps every convolution');
  assert.deepEqual(analyses(), cached, 'another variant and budget reuse the same tables');
});

test('compress: a LayerMerge plan applied; the merged model runs in onnxruntime with the original output shape', async () => {
  const { compress } = await ok<{ compress: { id: string } }>(`mutation ($i: CompressInput!) { compress(input: $i) { id } }`, {
    i: { model: ids.resnet, plan: ids.plan, evalDataset: ids.calib },
  });
  const job = await waitJob<{ artifact: { sha256: string; size: number; url: string }; report: Report }>(compress.id);
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error));
  const { artifact, report } = job.result!;
  assert.equal(app.artifacts.size(artifact.sha256), artifact.size);
  assert.deepEqual([...report.removed].sort(), [...plan.remove].sort());
  const changed = plan.layermerge!.blocks.filter((b) => !b.unchanged && b.k > 0);
  assert.deepEqual(
    report.merged,
    changed.map((b) => ({ i: b.i, j: b.j, from: b.keptIds, kh: b.kh, kw: b.kw, foldedSkips: b.foldedSkips, refit: b.refit })),
  );
  // merging into larger kernels can add parameters: only that they were counted is certain
  assert.ok(report.parametersAfter > 0 && report.parametersBefore > 0);
  assert.equal(report.samples, 512);
  assert.ok(report.accuracyAfter! > 0.1, `accuracy ${report.accuracyAfter}`);
  assert.ok(Math.abs(report.predictedRatio - plan.predictedLatencyMs / plan.baselineLatencyMs) < 1e-12);

  // every removed conv is gone and each merged block is one conv (folded projection skips take theirs too)
  const convs = (bytes: Uint8Array) => (decodeModel(bytes).graph?.node ?? []).filter((n) => n.op_type === 'Conv').length;
  const removedConvs = plan.layermerge!.blocks.reduce((a, b) => a + b.removedIds.length, 0);
  const mergedAway = report.merged.reduce((a, m) => a + m.from.length - 1, 0);
  const before = convs(new Uint8Array(readFileSync(fixtureModel('resnet20'))));
  const after = convs(new Uint8Array(readFileSync(app.artifacts.path(artifact.sha256))));
  assert.ok(removedConvs + mergedAway > 0);
  assert.ok(after <= before - removedConvs - mergedAway, `${after} convs left of ${before}`);

  const original = await ort.InferenceSession.create(fixtureModel('resnet20'));
  const merged = await ort.InferenceSession.create(app.artifacts.path(artifact.sha256));
  try {
    const feed = { input: new ort.Tensor('float32', new Float32Array(2 * 784).map((_, i) => (i % 29) / 29), [2, 1, 28, 28]) };
    const [a, b] = [await original.run(feed), await merged.run(feed)];
    assert.deepEqual(b.logits!.dims, a.logits!.dims);
  } finally {
    await original.release();
    await merged.release();
  }

  const viaDocument = await ok<{ compress: { id: string } }>(`mutation ($i: CompressInput!) { compress(input: $i) { id } }`, {
    i: { model: ids.resnet, planDocument: plan.document, evalDataset: ids.calib },
  });
  assert.equal(viaDocument.compress.id, compress.id, 'the plan.json of the job is the same request');
});

test('tradeoff: LAYERMERGE budgets from the same tables, each met one compressed and measured; an impossible one is marked', async () => {
  const cached = analyses();
  const job = await run<{ baselineLatencyMs: number; latencyBatch: number; points: { feasible: boolean; reason: string | null; plan: Plan | null; report: Report | null }[] }>(
    'tradeoff',
    { ...analysis(), method: 'LAYERMERGE', layerMerge: { ...exact, quantumMs: 0.01 }, budgets: [{ latencyFraction: 0.8 }, { latencyFraction: 0.01 }] },
    'TradeoffInput',
  );
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error));
  const r = job.result!;
  assert.equal(r.baselineLatencyMs, tables.originalMs);
  assert.equal(r.latencyBatch, 4);
  const [met, impossible] = r.points;
  assert.ok(met!.feasible);
  assert.deepEqual(met!.plan!.layermerge!.blocks, plan.layermerge!.blocks, 'the same budget plans the same blocks as the plan query');
  assert.deepEqual([...met!.report!.removed].sort(), [...plan.remove].sort());
  assert.ok(met!.report!.merged.length > 0 || met!.report!.removed.length > 0);
  assert.equal(met!.report!.accuracyAfter, null, 'no evaluation data: latency only');
  assert.equal(impossible!.feasible, false);
  assert.match(impossible!.reason ?? '', /below the minimum reachable latency of [0-9.]+ ms/);
  assert.deepEqual(analyses(), cached);
});

test('refit by default: tables with refit scores are another analysis; the plan carries refit weights and compress applies them', async () => {
  const before = analyses();
  // refit left out: it is the default
  const input = { ...analysis(), method: 'LAYERMERGE', layerMerge: { maxKernel: 3, quantumMs: 0.01 }, budget: { latencyFraction: 0.8 } };
  const job = await run<Plan>('plan', input, 'PlanInput');
  assert.equal(job.status, 'SUCCEEDED', JSON.stringify(job.error));
  const refitPlan = job.result!;
  assert.equal(analyses().size, before.size + 1, 'refit tables are kept beside the plain ones');
  const spelled = await ok<{ plan: { id: string } }>(`query ($i: PlanInput!) { plan(input: $i) { id } }`, {
    i: { ...input, layerMerge: { ...input.layerMerge, refit: true, ridge: 0.001 } },
  });
  assert.equal(spelled.plan.id, job.id, 'refit: true and the default ridge spelled out: the same request');
  assert.equal(refitPlan.layermerge!.refit, true);
  assertTiles(refitPlan.layermerge!);
  const emitted = refitPlan.layermerge!.blocks.filter((b) => !b.unchanged && b.k > 0);
  const documentBlocks = (refitPlan.document.layermerge as { blocks: { i: number; weights?: { weight: string; bias: string } }[] }).blocks;
  for (const b of emitted) {
    assert.ok(b.refit, `block (${b.i}, ${b.j}] is refit`);
    assert.ok(documentBlocks.find((d) => d.i === b.i)!.weights, 'its weights travel in the plan document');
  }
  const { compress } = await ok<{ compress: { id: string } }>(`mutation ($i: CompressInput!) { compress(input: $i) { id } }`, {
    i: { model: ids.resnet, planDocument: refitPlan.document },
  });
  const done = await waitJob<{ report: Report }>(compress.id);
  assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done.error));
  assert.deepEqual(
    done.result!.report.merged.map((m) => [m.i, m.refit]),
    emitted.map((b) => [b.i, true]),
  );
});

test('BUDGET - a latency budget below what any plan reaches fails BUDGET_INFEASIBLE naming the minimum', async () => {
  const job = await run('plan', { ...analysis(), method: 'LAYERMERGE', layerMerge: exact, budget: { latencyFraction: 0.01 } }, 'PlanInput');
  assert.equal(job.status, 'FAILED');
  assert.equal(job.error?.code, 'BUDGET_INFEASIBLE');
  assert.match(job.error!.message, /latency budget [0-9.e-]+ ms is below the minimum reachable latency of [0-9.]+ ms/);
});

test('BAD CALL - LAYERMERGE with a unit-count budget, SGLP options, or out-of-range options is BAD_USER_INPUT naming the field', async () => {
  const plan = `query ($i: PlanInput!) { plan(input: $i) { id } }`;
  const lm = { ...analysis(), method: 'LAYERMERGE' };
  await fails(plan, { i: { ...lm, budget: { remove: 2 } } }, 'BAD_USER_INPUT', 'input.budget.remove', /method LAYERMERGE plans under a latency budget: give latencyFraction or latencyMs/);
  await fails(plan, { i: { ...lm, budget: { fraction: 0.5 } } }, 'BAD_USER_INPUT', 'input.budget.fraction', /latency budget/);
  await fails(
    `query ($i: TradeoffInput!) { tradeoff(input: $i) { id } }`,
    { i: { ...lm, budgets: [{ latencyFraction: 0.9 }, { remove: 1 }] } },
    'BAD_USER_INPUT',
    'input.budgets[1].remove',
    /latency budget/,
  );
  await fails(plan, { i: { ...lm, importance: 'ANGULAR', budget: { latencyFraction: 0.9 } } }, 'BAD_USER_INPUT', 'input.importance', /SGLP option/);
  await fails(plan, { i: { ...lm, k: 3, budget: { latencyFraction: 0.9 } } }, 'BAD_USER_INPUT', 'input.k', /SGLP option/);
  await fails(
    plan,
    { i: { ...analysis(), layerMerge: { variant: 'LAYER_ONLY' }, budget: { remove: 1 } } },
    'BAD_USER_INPUT',
    'input.layerMerge',
    /for method LAYERMERGE/,
  );
  await fails(plan, { i: { ...lm, layerMerge: { quantumMs: 0 }, budget: { latencyFraction: 0.9 } } }, 'BAD_USER_INPUT', 'input.layerMerge.quantumMs', /positive/);
  await fails(plan, { i: { ...lm, layerMerge: { refit: true, ridge: -1 }, budget: { latencyFraction: 0.9 } } }, 'BAD_USER_INPUT', 'input.layerMerge.ridge', /≥ 0/);
  await fails(
    `query ($i: LayerMergeTablesInput!) { layerMergeTables(input: $i) { id } }`,
    { i: { ...analysis(), maxKernel: 0 } },
    'BAD_USER_INPUT',
    'input.maxKernel',
    /positive whole number/,
  );
});
