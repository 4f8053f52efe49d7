import * as core from '@actions/core';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, extname, isAbsolute, join, relative, sep } from 'node:path';
import { commentTargets, upsertComment, type CommentTarget, type EventContext } from './comment-target.js';
import { ActionError, GitHubApiError, InputError, ServiceRequestError } from './errors.js';
import { count, pt, x } from './format.js';
import { GitHubClient } from './github-client.js';
import { parseInputs, type ActionInputs, type Budget, type LayerMergeInputs } from './inputs.js';
import { budgetSlug, evaluateOutcome, type Outcome, type TradeoffData } from './outcome.js';
import { ProgressLog } from './progress.js';
import { COMMENT_MARKER, renderReport, type ReportData } from './report.js';
import { StrataClient } from './strata-client.js';

/** A step summary may hold 1 MiB; the rest of the page needs a little of it. */
const SUMMARY_LIMIT = 900_000;

const REGISTER_MODEL = 'mutation StrataRegisterModel($sha256: String!, $name: String!) { registerModel(sha256: $sha256, name: $name) { id } }';
const REGISTER_DATASET =
  'mutation StrataRegisterDataset($sha256: String!, $name: String!) { registerDataset(sha256: $sha256, name: $name) { id samples hasLabels } }';
const TRADEOFF = 'query StrataTradeoff($input: TradeoffInput!) { tradeoff(input: $input) { id status } }';
const RESULT = `query StrataTradeoffResult($id: ID!) { job(id: $id) { status result { __typename ... on TradeoffResult {
  baselineLatencyMs latencyBatch
  points {
    feasible reason budget { kind value } artifact { sha256 size url }
    plan { remove segments predictedSpeedup importanceLost }
    report { removed merged { from kh kw foldedSkips refit } parametersBefore parametersAfter originalMs compressedMs latencyRatioP10 latencyRatioP90 speedup accuracyBefore accuracyAfter agreement samples }
  } } } } }`;

/** Runs the action; every failure ends here as one line on the step. */
export async function run(): Promise<void> {
  try {
    await compressAndReport();
  } catch (e) {
    core.setFailed(e instanceof ActionError ? e.message : `unexpected error: ${(e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ')}`);
  }
}

async function compressAndReport(): Promise<void> {
  const env = process.env;
  const workspace = env.GITHUB_WORKSPACE || process.cwd();
  const inputs = parseInputs((name) => core.getInput(name), workspace);
  if (inputs.token !== '') core.setSecret(inputs.token);

  // Everything the service is asked for happens before GitHub hears anything, so a failure
  // leaves no half-made comment behind.
  const strata = new StrataClient({ url: inputs.serviceUrl, token: inputs.token });
  const { tradeoff, evalSamples } = await sweep(strata, inputs);
  const files = await downloadModels(strata, inputs, tradeoff, workspace);
  const outcome = evaluateOutcome(tradeoff, files, inputs);
  const event = eventContext(env);

  const data: ReportData = {
    model: inputs.model.given,
    method: inputs.method,
    layerMerge: inputs.layerMerge,
    evalData: inputs.evalData.given,
    evalSamples,
    latencyBatch: tradeoff.latencyBatch,
    outcome,
    runUrl: runUrl(env),
    commit: headSha(event) ?? (env.GITHUB_SHA || null),
  };
  const full = renderReport(data, { maxLength: SUMMARY_LIMIT });
  const reportPath = join(inputs.outputDir.path, 'strata-report.md');
  writeFileSync(reportPath, full);
  await writeSummary(full);
  logOutcome(outcome, inputs.method);
  setOutputs(outcome, reportPath, workspace);

  if (inputs.comment) await comment(inputs, env, event, renderReport(data));
  else core.info('strata: comment is false: the report is in the job summary only');

  const failed = outcome.gates.filter((g) => !g.passed);
  if (failed.length > 0) core.setFailed(failed.map((g) => `gate ${g.input} (${g.limit}) failed: ${g.message}`).join(' '));
}

async function sweep(strata: StrataClient, inputs: ActionInputs): Promise<{ tradeoff: TradeoffData; evalSamples: number | null }> {
  const model = await uploadFile(strata, 'model', inputs.model);
  const data = await uploadFile(strata, 'data', inputs.data);
  const evalData = inputs.evalData.path === inputs.data.path ? data : await uploadFile(strata, 'eval-data', inputs.evalData);

  const { registerModel } = await strata.graphql<{ registerModel: { id: string } }>(`registering the model ${inputs.model.given}`, REGISTER_MODEL, {
    sha256: model,
    name: registrationName(inputs.model.given),
  });
  const register = (sha256: string, given: string) =>
    strata.graphql<{ registerDataset: { id: string; samples: number; hasLabels: boolean } }>(`registering the data set ${given}`, REGISTER_DATASET, {
      sha256,
      name: registrationName(given),
    });
  const calibration = (await register(data, inputs.data.given)).registerDataset;
  const evaluation = evalData === data ? calibration : (await register(evalData, inputs.evalData.given)).registerDataset;
  core.info(`strata: registered ${inputs.model.given}; ${inputs.data.given} holds ${count(calibration.samples)} samples`);
  if (!evaluation.hasLabels) core.warning(`${inputs.evalData.given} has no labels: accuracy cannot be measured, only agreement with the original`);

  const input = {
    model: registerModel.id,
    dataset: calibration.id,
    evalDataset: evaluation.id,
    method: inputs.method,
    budgets: inputs.budgets.map(budgetInput),
    // sent only with method LAYERMERGE: the service refuses LayerMerge options with SGLP
    ...(inputs.layerMerge === null ? {} : { layerMerge: layerMergeInput(inputs.layerMerge) }),
    ...(inputs.samples === null ? {} : { samples: inputs.samples }),
    ...(inputs.latencyBatch === null ? {} : { latencyBatch: inputs.latencyBatch }),
  };
  const { tradeoff: job } = await strata.graphql<{ tradeoff: { id: string; status: string } }>('asking for the trade-off sweep', TRADEOFF, { input });
  core.info(`strata: trade-off job ${job.id}, ${inputs.budgets.length} budget${inputs.budgets.length === 1 ? '' : 's'}, ${job.status.toLowerCase()}`);
  if (inputs.layerMerge) core.info(`strata: ${describeLayerMerge(inputs.layerMerge)}`);

  const started = Date.now();
  const progress = new ProgressLog();
  await strata.waitForJob(job.id, {
    intervalMs: inputs.pollIntervalMs,
    onUpdate: (j) => {
      const line = progress.line(j, Date.now() - started);
      if (line) core.info(`strata: ${line}`);
    },
  });
  const { job: done } = await strata.graphql<{ job: { result: ({ __typename: string } & TradeoffData) | null } }>('reading the trade-off result', RESULT, { id: job.id });
  if (done.result?.__typename !== 'TradeoffResult') throw new ServiceRequestError('reading the trade-off result', 'BAD_RESPONSE', `job ${job.id} holds no trade-off result`);
  const samples = done.result.points.find((p) => p.report)?.report?.samples ?? null;
  return { tradeoff: done.result, evalSamples: evaluation.hasLabels ? samples : null };
}

async function uploadFile(strata: StrataClient, input: string, file: { given: string; path: string }): Promise<string> {
  if (!existsSync(file.path) || !statSync(file.path).isFile()) throw new InputError(input, `no file at ${file.given}`);
  const bytes = new Uint8Array(readFileSync(file.path));
  const { sha256 } = await strata.upload(bytes, `uploading ${file.given}`);
  // the content address is the service's receipt: a mismatch means the bytes were altered on the way
  if (sha256 !== sha256Hex(bytes)) throw new ServiceRequestError(`uploading ${file.given}`, 'BAD_RESPONSE', 'the service stored different bytes than were sent');
  core.info(`strata: uploaded ${file.given} (${count(bytes.byteLength)} bytes, sha256 ${sha256.slice(0, 12)})`);
  return sha256;
}

/** Writes every measured model into output-dir; the paths returned are relative to the workspace. */
async function downloadModels(strata: StrataClient, inputs: ActionInputs, tradeoff: TradeoffData, workspace: string): Promise<(string | null)[]> {
  mkdirSync(inputs.outputDir.path, { recursive: true });
  const stem = basename(inputs.model.given, extname(inputs.model.given)).replace(/[^\w.-]+/g, '_') || 'model';
  const fetched = new Map<string, Uint8Array>();
  const files: (string | null)[] = [];
  for (const point of tradeoff.points) {
    if (!point.feasible || !point.artifact) {
      files.push(null);
      continue;
    }
    const { sha256, url } = point.artifact;
    let bytes = fetched.get(sha256);
    if (!bytes) {
      bytes = await strata.download(url, `downloading the compressed model ${sha256.slice(0, 12)}`);
      if (sha256Hex(bytes) !== sha256) throw new ServiceRequestError(`downloading ${url}`, 'BAD_RESPONSE', 'the bytes do not match their sha256');
      fetched.set(sha256, bytes);
    }
    const path = join(inputs.outputDir.path, `${stem}-${budgetSlug(point.budget)}.onnx`);
    writeFileSync(path, bytes);
    files.push(workspacePath(path, workspace));
  }
  core.info(`strata: wrote ${files.filter((f) => f !== null).length} compressed model(s) to ${inputs.outputDir.given}`);
  return files;
}

function logOutcome(outcome: Outcome, method: string): void {
  for (const r of outcome.rows) {
    if (!r.feasible) {
      core.info(`strata: ${r.label}: not met (${r.reason})`);
      continue;
    }
    const merged = method === 'LAYERMERGE' ? `, ${r.merged.length} merged conv${r.merged.length === 1 ? '' : 's'}` : '';
    core.info(
      `strata: ${r.label}: ${x(r.speedup!)}${r.accuracyChangePt === null ? '' : `, accuracy ${pt(r.accuracyChangePt)}`}, ${r.removed.length} unit${r.removed.length === 1 ? '' : 's'} removed${merged} -> ${r.file}`,
    );
  }
  // a failed gate is reported once, by setFailed, so it is not annotated twice
  for (const g of outcome.gates) core.info(`strata: gate ${g.input} ${g.passed ? 'passed' : 'failed'}: ${g.message}`);
}

function setOutputs(outcome: Outcome, reportPath: string, workspace: string): void {
  const best = outcome.best === null ? null : outcome.rows[outcome.best]!;
  core.setOutput('report-path', workspacePath(reportPath, workspace));
  core.setOutput('models', JSON.stringify(outcome.rows.flatMap((r) => (r.file ? [r.file] : []))));
  core.setOutput('best-model', best?.file ?? '');
  core.setOutput('best-speedup', best ? best.speedup!.toFixed(3) : '');
  core.setOutput('accuracy-change', best?.accuracyChangePt == null ? '' : best.accuracyChangePt.toFixed(2));
}

async function writeSummary(report: string): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return void core.info('strata: no GITHUB_STEP_SUMMARY: the report is only in the report file');
  try {
    await core.summary.addRaw(report).write();
  } catch (e) {
    core.warning(`could not write the job summary: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * The comment is a courtesy on top of the outputs and the summary: a token without write access
 * (a pull request from a fork) warns instead of failing the compression.
 */
async function comment(inputs: ActionInputs, env: NodeJS.ProcessEnv, event: EventContext, body: string): Promise<void> {
  const repository = env.GITHUB_REPOSITORY ?? '';
  if (inputs.githubToken === '' || repository === '') {
    core.warning('no github-token or GITHUB_REPOSITORY: the report is in the job summary only');
    return;
  }
  const github = new GitHubClient({ apiUrl: env.GITHUB_API_URL || 'https://api.github.com', token: inputs.githubToken, repository });
  try {
    const { targets, why } = await commentTargets(event, github);
    if (targets.length === 0) return void core.info(`strata: no comment: ${why}; the report is in the job summary`);
    for (const target of targets) {
      const r = await upsertComment(github, target, COMMENT_MARKER, body);
      core.info(`strata: ${r.action} the report comment on ${describe(target)}`);
    }
  } catch (e) {
    const hint =
      e instanceof GitHubApiError && (e.status === 403 || e.status === 404)
        ? ' (the job needs `permissions: pull-requests: write` and `contents: write` for commit comments; pull requests from forks get a read-only token)'
        : '';
    core.warning(`could not post the report comment: ${e instanceof Error ? e.message : String(e)}${hint}`);
  }
}

function eventContext(env: NodeJS.ProcessEnv): EventContext {
  let payload: Record<string, unknown> = {};
  const path = env.GITHUB_EVENT_PATH;
  if (path && existsSync(path)) {
    try {
      payload = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    } catch {
      core.warning(`GITHUB_EVENT_PATH ${path} is not JSON`);
    }
  }
  return { name: env.GITHUB_EVENT_NAME ?? '', payload, sha: env.GITHUB_SHA ?? '' };
}

/** On a pull request GITHUB_SHA is a merge commit nobody pushed; the head is what was reviewed. */
function headSha(event: EventContext): string | null {
  const sha = (event.payload.pull_request as { head?: { sha?: unknown } } | undefined)?.head?.sha;
  return typeof sha === 'string' ? sha : null;
}

function describe(t: CommentTarget): string {
  return t.kind === 'pull' ? `pull request #${t.number}` : `commit ${t.sha.slice(0, 7)}`;
}

function runUrl(env: NodeJS.ProcessEnv): string | null {
  if (!env.GITHUB_REPOSITORY || !env.GITHUB_RUN_ID) return null;
  return `${env.GITHUB_SERVER_URL || 'https://github.com'}/${env.GITHUB_REPOSITORY}/actions/runs/${env.GITHUB_RUN_ID}`;
}

function budgetInput(b: Budget): Record<string, number> {
  switch (b.kind) {
    case 'latency-fraction':
      return { latencyFraction: b.value };
    case 'latency-ms':
      return { latencyMs: b.value };
    case 'remove':
      return { remove: b.value };
    case 'fraction':
      return { fraction: b.value };
  }
}

/** The service's `LayerMergeOptionsInput`; a quantum left out is the service's default. */
function layerMergeInput(o: LayerMergeInputs): Record<string, string | number | boolean> {
  return { variant: o.variant, refit: o.refit, ...(o.quantumMs === null ? {} : { quantumMs: o.quantumMs }) };
}

function describeLayerMerge(o: LayerMergeInputs): string {
  const quantum = o.quantumMs === null ? "the service's latency quantum" : `a ${o.quantumMs} ms latency quantum`;
  return `LayerMerge variant ${o.variant.toLowerCase().replace(/_/g, '-')}, ${o.refit ? 'merged convolutions refit by least squares' : 'exact merges (no refit)'}, ${quantum}`;
}

function registrationName(given: string): string {
  return basename(given).slice(0, 200) || 'unnamed';
}

function workspacePath(path: string, workspace: string): string {
  const rel = relative(workspace, path);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return path;
  return rel.split(sep).join('/');
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
