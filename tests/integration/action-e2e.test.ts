/**
 * The bundled action (action/dist/index.js) run as the runner runs it: a child process whose
 * inputs are INPUT_<NAME> variables, with the runner's files (event, step summary, outputs), a
 * real strata service on loopback, and a stand-in for the GitHub REST API that records every
 * request and keeps comments.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { parseConfig } from '../../service/src/config.js';
import { startService, type RunningService } from '../../service/src/graphql/serve.js';
import { CALIB_DATA, ROOT, fixtureModel } from '../helpers/paths.js';

const ACTION = join(ROOT, 'action', 'dist', 'index.js');
const STRATA_TOKEN = 'action-test-token-0123456789';
const GITHUB_TOKEN = 'ghs_stand-in-token';
const REPO = 'acme/models';
const MARKER = '<!-- strata-report -->';
const PR = 7;
const RELEASE_SHA = 'a'.repeat(40);
const LONE_SHA = 'b'.repeat(40);

let dir = '';
let workspace = '';
let service: RunningService;
let github: GitHubStandIn;

// ---- a stand-in for the GitHub REST API ----------------------------------------------------

interface Recorded {
  method: string;
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
  body: { body?: string } | null;
}

interface StoredComment {
  id: number;
  body: string;
  user: { login: string; type: string };
}

/** Pages are this short whatever per_page asks, so a thread of a few comments already needs paging. */
const PAGE = 2;

class GitHubStandIn {
  readonly requests: Recorded[] = [];
  readonly issueComments = new Map<number, StoredComment[]>();
  readonly commitComments = new Map<string, StoredComment[]>();
  readonly pulls = new Map<string, { number: number; state: string; merged_at: string | null }[]>();
  private nextId = 1000;
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  comment(body: string, login = 'octocat'): StoredComment {
    return { id: this.nextId++, body, user: { login, type: login.endsWith('[bot]') ? 'Bot' : 'User' } };
  }

  since(n: number): Recorded[] {
    return this.requests.slice(n);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? '/', this.url);
    const text = Buffer.concat(chunks).toString('utf8');
    const body = text === '' ? null : (JSON.parse(text) as { body?: string });
    this.requests.push({ method: req.method ?? '', path: url.pathname, query: url.searchParams, authorization: req.headers.authorization, body });
    const send = (status: number, data: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(JSON.stringify(data));
    };
    if (req.headers.authorization !== `Bearer ${GITHUB_TOKEN}`) return send(401, { message: 'Bad credentials' });
    const base = `/repos/${REPO}`;
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^${base}/issues/(\\d+)/comments$`).exec(url.pathname))) {
      const list = this.issueComments.get(Number(m[1])) ?? [];
      this.issueComments.set(Number(m[1]), list);
      if (req.method === 'GET') return this.page(url, list, send);
      if (req.method === 'POST') {
        const c = this.comment(body!.body!, 'github-actions[bot]');
        list.push(c);
        return send(201, c);
      }
    }
    if ((m = new RegExp(`^${base}/issues/comments/(\\d+)$`).exec(url.pathname)) && req.method === 'PATCH') {
      const c = [...this.issueComments.values()].flat().find((x) => x.id === Number(m![1]));
      if (!c) return send(404, { message: 'Not Found' });
      c.body = body!.body!;
      return send(200, c);
    }
    if ((m = new RegExp(`^${base}/commits/([0-9a-f]{40})/pulls$`).exec(url.pathname)) && req.method === 'GET') {
      return this.page(url, this.pulls.get(m[1]!) ?? [], send);
    }
    if ((m = new RegExp(`^${base}/commits/([0-9a-f]{40})/comments$`).exec(url.pathname))) {
      const list = this.commitComments.get(m[1]!) ?? [];
      this.commitComments.set(m[1]!, list);
      if (req.method === 'GET') return this.page(url, list, send);
      if (req.method === 'POST') {
        const c = this.comment(body!.body!, 'github-actions[bot]');
        list.push(c);
        return send(201, c);
      }
    }
    if ((m = new RegExp(`^${base}/comments/(\\d+)$`).exec(url.pathname)) && req.method === 'PATCH') {
      const c = [...this.commitComments.values()].flat().find((x) => x.id === Number(m![1]));
      if (!c) return send(404, { message: 'Not Found' });
      c.body = body!.body!;
      return send(200, c);
    }
    send(404, { message: 'Not Found' });
  }

  private page(url: URL, list: unknown[], send: (status: number, data: unknown, headers?: Record<string, string>) => void): void {
    const page = Number(url.searchParams.get('page') ?? '1');
    const last = Math.max(1, Math.ceil(list.length / PAGE));
    const headers: Record<string, string> = {};
    if (page < last) {
      const next = new URL(url);
      next.searchParams.set('page', String(page + 1));
      const lastUrl = new URL(url);
      lastUrl.searchParams.set('page', String(last));
      headers.Link = `<${next.href}>; rel="next", <${lastUrl.href}>; rel="last"`;
    }
    send(200, list.slice((page - 1) * PAGE, page * PAGE), headers);
  }
}

// ---- running the action as the runner would -------------------------------------------------

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  summary: string;
}

interface EventSpec {
  name: string;
  payload: Record<string, unknown>;
  sha: string;
}

const PULL_EVENT: EventSpec = { name: 'pull_request', payload: { action: 'synchronize', number: PR, pull_request: { number: PR, head: { sha: 'c'.repeat(40) } } }, sha: 'd'.repeat(40) };

function baseInputs(): Record<string, string> {
  return {
    'service-url': service.http.url,
    token: STRATA_TOKEN,
    model: 'models/classifier.onnx',
    data: 'data/calibration.npz',
    budgets: '0.9, 0.6, remove:3, 0.01ms',
    samples: '64',
    'latency-batch': '4',
    'max-accuracy-drop': '100',
    'min-speedup': '1.0',
    'output-dir': 'strata-models',
    'github-token': GITHUB_TOKEN,
    'poll-interval': '0.2',
  };
}

/** GitHub's rule for input variables: upper case, spaces to underscores, dashes kept. */
function inputVariable(name: string): string {
  return `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
}

/** `name<<delimiter` blocks, as @actions/core writes GITHUB_OUTPUT. */
function parseOutputs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/^([^\n<]+)<<(\S+)\n([\s\S]*?)\n\2$/gm)) out[m[1]!] = m[3]!;
  return out;
}

async function runAction(inputs: Record<string, string>, event: EventSpec = PULL_EVENT): Promise<Run> {
  const runDir = mkdtempSync(join(dir, 'run-'));
  const eventPath = join(runDir, 'event.json');
  const summaryPath = join(runDir, 'summary.md');
  const outputPath = join(runDir, 'output.txt');
  writeFileSync(eventPath, JSON.stringify(event.payload));
  writeFileSync(summaryPath, '');
  writeFileSync(outputPath, '');
  // a clean environment: nothing of a surrounding CI job (its own GITHUB_* variables) leaks in
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: runDir,
    GITHUB_ACTIONS: 'true',
    GITHUB_WORKSPACE: workspace,
    GITHUB_EVENT_NAME: event.name,
    GITHUB_EVENT_PATH: eventPath,
    GITHUB_SHA: event.sha,
    GITHUB_REPOSITORY: REPO,
    GITHUB_API_URL: github.url,
    GITHUB_SERVER_URL: 'https://github.com',
    GITHUB_RUN_ID: '4242',
    GITHUB_STEP_SUMMARY: summaryPath,
    GITHUB_OUTPUT: outputPath,
    RUNNER_TEMP: runDir,
  };
  for (const [k, v] of Object.entries(inputs)) env[inputVariable(k)] = v;
  const child = spawn(process.execPath, [ACTION], { cwd: workspace, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // async, not spawnSync: the service answering the action lives in this process's event loop
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stdout, stderr, outputs: parseOutputs(readFileSync(outputPath, 'utf8')), summary: readFileSync(summaryPath, 'utf8') };
}

function errorLines(run: Run): string[] {
  return run.stdout.split('\n').filter((l) => l.startsWith('::error'));
}

function markerComments(list: StoredComment[] | undefined): StoredComment[] {
  return (list ?? []).filter((c) => c.body.includes(MARKER));
}

before(async () => {
  assert.ok(existsSync(ACTION), 'action/dist/index.js exists (npm run build:action)');
  dir = mkdtempSync(join(tmpdir(), 'strata-action-'));
  workspace = join(dir, 'workspace');
  mkdirSync(join(workspace, 'models'), { recursive: true });
  mkdirSync(join(workspace, 'data'), { recursive: true });
  copyFileSync(fixtureModel('resnet20'), join(workspace, 'models', 'classifier.onnx'));
  copyFileSync(CALIB_DATA, join(workspace, 'data', 'calibration.npz'));
  writeFileSync(join(workspace, 'models', 'junk.onnx'), 'this is not an onnx model');
  // one onnxruntime thread: the suite shares a small machine
  service = await startService(
    parseConfig({ STRATA_LOG_LEVEL: 'silent', STRATA_TOKEN, STRATA_THREADS: '1' }, { dataDir: join(dir, 'data'), port: '0' }),
  );
  github = new GitHubStandIn();
  await github.start();
  // three earlier comments by people: the report lands on the second page of the thread
  github.issueComments.set(PR, [github.comment('LGTM'), github.comment('can we make it faster?'), github.comment(`quoting the bot: ${'<!-- strata -->'}`)]);
  github.pulls.set(RELEASE_SHA, [
    { number: 9, state: 'closed', merged_at: '2025-06-01T12:00:00Z' },
    { number: 11, state: 'open', merged_at: null },
  ]);
});

after(async () => {
  await service?.close();
  await github?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a pull request run: uploads, sweeps with progress in the log, downloads the models, sets outputs and the summary, and comments once', { timeout: 300_000 }, async () => {
  const seen = github.requests.length;
  const run = await runAction(baseInputs());
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.deepEqual(errorLines(run), []);
  assert.match(run.stdout, /strata: uploaded models\/classifier\.onnx \(1,095,257 bytes, sha256 [0-9a-f]{12}\)/);
  assert.match(run.stdout, /strata: \[\d+s\] running: /, 'progress lines while the job runs');
  assert.match(run.stdout, /strata: \[\d+s\] succeeded/);

  const models = JSON.parse(run.outputs.models!) as string[];
  assert.deepEqual(models, ['strata-models/classifier-latency-0.9.onnx', 'strata-models/classifier-latency-0.6.onnx', 'strata-models/classifier-remove-3.onnx']);
  const original = statSync(join(workspace, 'models', 'classifier.onnx')).size;
  for (const m of models) assert.ok(statSync(join(workspace, m)).size < original, `${m} is smaller than the original`);
  assert.ok(models.includes(run.outputs['best-model']!));
  assert.ok(Number(run.outputs['best-speedup']) >= 1, run.outputs['best-speedup']);
  assert.match(run.outputs['accuracy-change']!, /^-?\d+\.\d\d$/);
  assert.equal(run.outputs['report-path'], 'strata-models/strata-report.md');

  const session = await ort.InferenceSession.create(join(workspace, run.outputs['best-model']!));
  const out = await session.run({ input: new ort.Tensor('float32', new Float32Array(784).fill(0.1), [1, 1, 28, 28]) });
  assert.deepEqual(out.logits!.dims, [1, 10]);
  await session.release();

  const report = readFileSync(join(workspace, run.outputs['report-path']!), 'utf8');
  assert.equal(run.summary.trim(), report.trim(), 'the job summary holds the report');
  assert.match(report, /^<!-- strata-report -->\n### strata: `models\/classifier\.onnx`, SGLP over 4 budgets/);
  assert.match(report, /\| original \| [\d.]+ \| 1\.00× \| [\d.]+% \| — \| 271,402 \| — \|/);
  assert.match(report, /\| remove 3 \| [\d.]+ \| [\d.]+× \| [\d.]+% \| [−+±][\d.]+ pt \| [\d,]+ \| 3 \|/);
  assert.match(report, /\| 0\.01 ms \| — \| — \| — \| — \| — \| not met \|/);
  assert.match(report, /```mermaid\nxychart-beta\n/);
  assert.match(report, /✅ Gate passed: `min-speedup: 1`/);

  const calls = github.since(seen);
  assert.ok(calls.every((c) => c.authorization === `Bearer ${GITHUB_TOKEN}`));
  assert.deepEqual(
    calls.map((c) => `${c.method} ${c.path}${c.query.get('page') ? `?page=${c.query.get('page')}` : ''}`),
    [`GET /repos/${REPO}/issues/${PR}/comments`, `GET /repos/${REPO}/issues/${PR}/comments?page=2`, `POST /repos/${REPO}/issues/${PR}/comments`],
  );
  const ours = markerComments(github.issueComments.get(PR));
  assert.equal(ours.length, 1);
  assert.equal(ours[0]!.body, report, 'a report this small goes into the comment whole');
  assert.match(run.stdout, /strata: created the report comment on pull request #7/);
});

test('a second run edits the same comment, found past the first page, and adds none', { timeout: 120_000 }, async () => {
  const before = markerComments(github.issueComments.get(PR));
  const seen = github.requests.length;
  const run = await runAction(baseInputs());
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  const calls = github.since(seen).map((c) => `${c.method} ${c.path}`);
  assert.deepEqual(calls, [
    `GET /repos/${REPO}/issues/${PR}/comments`,
    `GET /repos/${REPO}/issues/${PR}/comments`,
    `PATCH /repos/${REPO}/issues/comments/${before[0]!.id}`,
  ]);
  assert.equal(github.issueComments.get(PR)!.length, 4);
  assert.equal(markerComments(github.issueComments.get(PR)).length, 1);
  assert.match(run.stdout, /strata: updated the report comment on pull request #7/);
});

test('a release comments on the pull request merged as its commit', { timeout: 120_000 }, async () => {
  const seen = github.requests.length;
  const run = await runAction(baseInputs(), { name: 'release', payload: { action: 'published', release: { tag_name: 'v1.2.0', target_commitish: 'main' } }, sha: RELEASE_SHA });
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  const calls = github.since(seen).map((c) => `${c.method} ${c.path}`);
  assert.deepEqual(calls, [`GET /repos/${REPO}/commits/${RELEASE_SHA}/pulls`, `GET /repos/${REPO}/issues/9/comments`, `POST /repos/${REPO}/issues/9/comments`]);
  assert.equal(markerComments(github.issueComments.get(9)).length, 1);
  assert.equal(github.issueComments.get(11), undefined, 'an open pull request that merely contains the commit gets nothing');
});

test('a release whose commit came in without a pull request comments on the commit', { timeout: 120_000 }, async () => {
  const seen = github.requests.length;
  const run = await runAction(baseInputs(), { name: 'release', payload: { action: 'published', release: { tag_name: 'v1.3.0' } }, sha: LONE_SHA });
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  const calls = github.since(seen).map((c) => `${c.method} ${c.path}`);
  assert.deepEqual(calls, [`GET /repos/${REPO}/commits/${LONE_SHA}/pulls`, `GET /repos/${REPO}/commits/${LONE_SHA}/comments`, `POST /repos/${REPO}/commits/${LONE_SHA}/comments`]);
  assert.equal(markerComments(github.commitComments.get(LONE_SHA)).length, 1);
});

test('method layermerge: the sweep plans with LayerMerge on the service, and the merged model it writes runs', { timeout: 300_000 }, async () => {
  const seen = github.requests.length;
  // gates off: whether merged kernels beat the convolutions they replace depends on the CPU
  const run = await runAction({
    ...baseInputs(),
    method: 'layermerge',
    budgets: '0.8, 0.01',
    'latency-batch': '32',
    'max-accuracy-drop': '',
    'min-speedup': '',
    comment: 'false',
    'output-dir': 'strata-layermerge',
  });
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.deepEqual(errorLines(run), []);
  assert.deepEqual(JSON.parse(run.outputs.models!), ['strata-layermerge/classifier-latency-0.8.onnx']);
  const session = await ort.InferenceSession.create(join(workspace, run.outputs['best-model']!));
  const out = await session.run({ input: new ort.Tensor('float32', new Float32Array(784).fill(0.1), [1, 1, 28, 28]) });
  assert.deepEqual(out.logits!.dims, [1, 10]);
  await session.release();
  const report = readFileSync(join(workspace, run.outputs['report-path']!), 'utf8');
  assert.match(report, /^<!-- strata-report -->\n### strata: `models\/classifier\.onnx`, LAYERMERGE over 2 budgets/);
  // refit is the default: every merged convolution the service reports carries refit weights
  assert.match(run.stdout, /strata: LayerMerge variant layermerge, merged convolutions refit by least squares, the service's latency quantum/);
  assert.match(report, /\| units removed\/merged \|\n/);
  const row = /^\| (?:\*\*)?latency ×0\.8\b[^\n]*\| (\d+) \/ (\d+) \|$/m.exec(report);
  assert.ok(row, `the 0.8 row counts units removed and convolutions merged:\n${report}`);
  const merged = Number(row[2]);
  assert.match(report, new RegExp(`<summary><b>latency ×0\\.8</b>: \\d+ units? removed, ${merged} merged convs?, [\\d.]+×`));
  const added = report.split('\n').filter((l) => l.startsWith('+ '));
  assert.equal(added.length, merged, 'each merged convolution is an added line of the plan details');
  assert.ok(added.every((l) => /^\+ \d+×\d+ conv from \S+.*, refit$/.test(l)), added.join('\n'));
  assert.match(report, /LayerMerge variant layermerge, merged convolutions refit by least squares\./);
  assert.match(report, /\| latency ×0\.01 \| — \| — \| — \| — \| — \| not met \|/);
  assert.deepEqual(github.since(seen), [], 'comment: false posts nothing');
});

test('BAD INPUT - method layermerge with a count of units as a budget fails before anything is uploaded', { timeout: 60_000 }, async () => {
  const run = await runAction({ ...baseInputs(), method: 'layermerge' });
  assert.notEqual(run.code, 0);
  assert.deepEqual(errorLines(run), ['::error::input `budgets`: "remove:3": method layermerge takes latency budgets only, e.g. 0.7 or 12ms']);
});

test('GATE - a speed-up below min-speedup fails the step; the report is still posted and names the gate', { timeout: 120_000 }, async () => {
  const run = await runAction({ ...baseInputs(), 'min-speedup': '50' });
  assert.notEqual(run.code, 0);
  const errors = errorLines(run);
  assert.equal(errors.length, 1, errors.join('\n'));
  assert.match(errors[0]!, /^::error::gate min-speedup \(50\) failed: the best speed-up within the accuracy limit is [\d.]+× \(.+\), below the required 50\.00×\.$/);
  const ours = markerComments(github.issueComments.get(PR));
  assert.equal(ours.length, 1, 'still one comment');
  assert.match(ours[0]!.body, /> \[!CAUTION\]\n> ❌ \*\*Gate failed: `min-speedup: 50`\*\*/);
  assert.match(run.summary, /Gate failed: `min-speedup: 50`/);
  assert.ok(run.outputs['best-model'], 'outputs are set even when a gate fails');
});

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

test('BAD SERVICE - an unreachable service fails in one line and posts nothing', { timeout: 60_000 }, async () => {
  const seen = github.requests.length;
  const url = `http://127.0.0.1:${await closedPort()}`;
  const run = await runAction({ ...baseInputs(), 'service-url': url });
  assert.notEqual(run.code, 0);
  const errors = errorLines(run);
  assert.equal(errors.length, 1, run.stdout);
  assert.match(errors[0]!, new RegExp(`^::error::the strata service at ${url.replace(/[.]/g, '\\.')} is unreachable \\(connect ECONNREFUSED [^)]+\\) while uploading models/classifier\\.onnx$`));
  assert.deepEqual(github.since(seen), []);
  assert.equal(run.summary, '');
});

test('BAD TOKEN - a token the service refuses fails in one line and posts nothing', { timeout: 60_000 }, async () => {
  const seen = github.requests.length;
  const run = await runAction({ ...baseInputs(), token: 'not-the-right-token-at-all' });
  assert.notEqual(run.code, 0);
  const errors = errorLines(run);
  assert.equal(errors.length, 1, run.stdout);
  assert.match(errors[0]!, /^::error::the strata service at http:\/\/127\.0\.0\.1:\d+ refused the token \(401 UNAUTHENTICATED\): check the `token` input$/);
  assert.ok(!errors[0]!.includes('not-the-right-token-at-all'));
  assert.deepEqual(github.since(seen), []);
});

test('BAD MODEL - a model the service rejects fails in one line with its error code and posts nothing', { timeout: 60_000 }, async () => {
  const seen = github.requests.length;
  const run = await runAction({ ...baseInputs(), model: 'models/junk.onnx' });
  assert.notEqual(run.code, 0);
  const errors = errorLines(run);
  assert.equal(errors.length, 1, run.stdout);
  assert.match(errors[0]!, /^::error::registering the model models\/junk\.onnx failed \(INVALID_MODEL\): .+$/);
  assert.deepEqual(github.since(seen), []);
});

test('BAD INPUT - a missing model file fails before anything is uploaded', { timeout: 60_000 }, async () => {
  const seen = github.requests.length;
  const run = await runAction({ ...baseInputs(), model: 'models/missing.onnx' });
  assert.notEqual(run.code, 0);
  assert.deepEqual(errorLines(run), ['::error::input `model`: no file at models/missing.onnx']);
  assert.deepEqual(github.since(seen), []);
});
