/**
 * The action's HTTP clients with fetch replaced: how answers become errors, how polling rides out
 * a blip, how pages are followed, and where a report comment goes for each event.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commentTargets } from '../../action/src/comment-target.js';
import { GitHubApiError, JobFailedError, ServiceAuthError, ServiceRequestError, ServiceUnreachableError } from '../../action/src/errors.js';
import { GitHubClient } from '../../action/src/github-client.js';
import { ProgressLog } from '../../action/src/progress.js';
import { StrataClient, type Fetch, type JobState } from '../../action/src/strata-client.js';

type Answer = Response | Error;

/** A fetch that answers from a script, in order, and remembers what it was asked. */
function scripted(answers: Answer[]) {
  const calls: { url: string; init: RequestInit | undefined }[] = [];
  const fetch: Fetch = async (input, init) => {
    calls.push({ url: String(input), init });
    const next = answers.shift();
    if (!next) throw new Error('no scripted answer left');
    if (next instanceof Error) throw next;
    return next;
  };
  return { fetch, calls };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });

function refused(): Error {
  return new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:4000'), { code: 'ECONNREFUSED' }) });
}

const job = (status: string, extra: Partial<JobState> = {}) => json(200, { data: { job: { id: 'j1', status, progress: null, error: null, ...extra } } });

const noSleep = async () => {};

test('requests carry the bearer token; a 401 is ServiceAuthError, a refused connection ServiceUnreachableError naming the cause', async () => {
  const { fetch, calls } = scripted([json(401, { errors: [{ message: 'no', extensions: { code: 'UNAUTHENTICATED' } }] }), refused()]);
  const client = new StrataClient({ url: 'http://10.0.0.5:4000', token: 'secret-token-123456', fetch, sleep: noSleep });
  await assert.rejects(client.graphql('listing models', '{ models { id } }'), ServiceAuthError);
  assert.equal(new Headers(calls[0]!.init!.headers).get('authorization'), 'Bearer secret-token-123456');
  await assert.rejects(
    client.upload(new Uint8Array(3), 'uploading m.onnx'),
    (e: unknown) => e instanceof ServiceUnreachableError && e.message === 'the strata service at http://10.0.0.5:4000 is unreachable (connect ECONNREFUSED 10.0.0.5:4000) while uploading m.onnx',
  );
});

test('a GraphQL error is ServiceRequestError with its code; a plain route error with the code of its body', async () => {
  const { fetch } = scripted([
    json(200, { data: null, errors: [{ message: 'not an ONNX model: truncated', extensions: { code: 'INVALID_MODEL' } }] }),
    json(413, { error: { code: 'PAYLOAD_TOO_LARGE', message: 'over 512 MiB' } }),
  ]);
  const client = new StrataClient({ url: 'http://s', token: '', fetch, sleep: noSleep });
  await assert.rejects(
    client.graphql('registering the model m.onnx', 'mutation { x }'),
    (e: unknown) => e instanceof ServiceRequestError && e.code === 'INVALID_MODEL' && e.message === 'registering the model m.onnx failed (INVALID_MODEL): not an ONNX model: truncated',
  );
  await assert.rejects(client.upload(new Uint8Array(1), 'uploading big.onnx'), (e: unknown) => e instanceof ServiceRequestError && e.code === 'PAYLOAD_TOO_LARGE');
});

test('polling reports every state, sleeps between polls, rides out a network blip and returns on SUCCEEDED', async () => {
  const { fetch } = scripted([job('QUEUED'), refused(), job('RUNNING', { progress: { phase: 'similarity', fraction: 0.5, message: null } }), job('SUCCEEDED')]);
  const sleeps: number[] = [];
  const client = new StrataClient({ url: 'http://s', token: '', fetch, sleep: async (ms) => void sleeps.push(ms) });
  const seen: string[] = [];
  const done = await client.waitForJob('j1', { intervalMs: 100, onUpdate: (j) => seen.push(j.status) });
  assert.equal(done.status, 'SUCCEEDED');
  assert.deepEqual(seen, ['QUEUED', 'RUNNING', 'SUCCEEDED']);
  assert.deepEqual(sleeps, [100, 200, 100], 'a failed poll backs off');
});

test('polling gives up after the retries, and a failed job is JobFailedError with the service code', async () => {
  const down = new StrataClient({ url: 'http://s', token: '', fetch: scripted([refused(), refused(), refused()]).fetch, sleep: noSleep });
  await assert.rejects(down.waitForJob('j1', { intervalMs: 1, retries: 2 }), ServiceUnreachableError);
  const failing = new StrataClient({ url: 'http://s', token: '', fetch: scripted([job('FAILED', { error: { code: 'WORKER_CRASHED', message: 'signal SIGSEGV' } })]).fetch, sleep: noSleep });
  await assert.rejects(
    failing.waitForJob('j1', { intervalMs: 1 }),
    (e: unknown) => e instanceof JobFailedError && e.message === 'strata job j1 failed (WORKER_CRASHED): signal SIGSEGV',
  );
});

test('GitHub lists follow rel="next" on the API origin only, so the token never leaves it', async () => {
  const { fetch, calls } = scripted([
    json(200, [{ id: 1, body: 'a' }], { Link: '<https://api.github.com/repos/o/r/issues/3/comments?per_page=100&page=2>; rel="next", <https://api.github.com/x?page=9>; rel="last"' }),
    json(200, [{ id: 2, body: 'b' }], { Link: '<https://evil.example.com/steal?page=3>; rel="next"' }),
  ]);
  const gh = new GitHubClient({ apiUrl: 'https://api.github.com', token: 'ghs_x', repository: 'o/r', fetch });
  const comments = await gh.listIssueComments(3);
  assert.deepEqual(comments.map((c) => c.id), [1, 2]);
  assert.deepEqual(calls.map((c) => c.url), ['https://api.github.com/repos/o/r/issues/3/comments?per_page=100', 'https://api.github.com/repos/o/r/issues/3/comments?per_page=100&page=2']);
  assert.equal((calls[0]!.init!.headers as Record<string, string>).Authorization, 'Bearer ghs_x');
});

test('GitHub Enterprise: the API URL keeps its path', async () => {
  const { fetch, calls } = scripted([json(201, { id: 5 })]);
  const gh = new GitHubClient({ apiUrl: 'https://ghe.example.com/api/v3', token: 't', repository: 'o/r', fetch });
  await gh.createCommitComment('f'.repeat(40), 'hi');
  assert.equal(calls[0]!.url, `https://ghe.example.com/api/v3/repos/o/r/commits/${'f'.repeat(40)}/comments`);
});

test('a GitHub refusal is GitHubApiError with the status and GitHub message', async () => {
  const { fetch } = scripted([json(403, { message: 'Resource not accessible by integration' })]);
  const gh = new GitHubClient({ apiUrl: 'https://api.github.com', token: 't', repository: 'o/r', fetch });
  await assert.rejects(
    gh.createIssueComment(1, 'x'),
    (e: unknown) => e instanceof GitHubApiError && e.status === 403 && e.message === 'GitHub API POST /repos/o/r/issues/1/comments answered 403: Resource not accessible by integration',
  );
});

test('comment targets: the pull request; for a release its merged pull requests, else its commit; nothing for other events', async () => {
  const sha = '1'.repeat(40);
  const pulls = (list: { number: number; merged_at: string | null }[]) => ({ pullsForCommit: async () => list });
  assert.deepEqual((await commentTargets({ name: 'pull_request', payload: { pull_request: { number: 12 } }, sha }, pulls([]))).targets, [{ kind: 'pull', number: 12 }]);
  assert.deepEqual(
    (await commentTargets({ name: 'release', payload: {}, sha }, pulls([{ number: 4, merged_at: '2025-01-01T00:00:00Z' }, { number: 5, merged_at: null }]))).targets,
    [{ kind: 'pull', number: 4 }],
  );
  assert.deepEqual((await commentTargets({ name: 'release', payload: {}, sha }, pulls([{ number: 5, merged_at: null }]))).targets, [{ kind: 'commit', sha }]);
  const push = await commentTargets({ name: 'push', payload: {}, sha }, pulls([{ number: 4, merged_at: 'x' }]));
  assert.deepEqual(push.targets, []);
  assert.match(push.why, /a push event has no pull request or release/);
});

test('progress: one line per new status, phase or tenth of a phase', () => {
  const log = new ProgressLog();
  const state = (status: JobState['status'], phase?: string, fraction: number | null = null, message: string | null = null): JobState => ({
    id: 'j',
    status,
    progress: phase ? { phase, fraction, message } : null,
    error: null,
  });
  const lines = [
    log.line(state('QUEUED'), 0),
    log.line(state('RUNNING', 'similarity', 0.01), 1500),
    log.line(state('RUNNING', 'similarity', 0.05), 2000),
    log.line(state('RUNNING', 'similarity', 0.12), 4000),
    log.line(state('RUNNING', 'budget 1/3: evaluating', null, 'batch 2'), 65_000),
    log.line(state('SUCCEEDED', 'done', 1), 70_000),
  ];
  assert.deepEqual(lines, ['[0s] queued', '[1s] running: similarity 0%', null, '[4s] running: similarity 10%', '[1m05s] running: budget 1/3: evaluating (batch 2)', '[1m10s] succeeded']);
});
