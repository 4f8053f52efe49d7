import { JobFailedError, ServiceAuthError, ServiceRequestError, ServiceUnreachableError } from './errors.js';

export type Fetch = typeof fetch;
export type Sleep = (ms: number) => Promise<void>;

export interface StrataClientOptions {
  /** the service's base URL, without a trailing slash */
  url: string;
  /** bearer token; empty when the service runs without one */
  token: string;
  fetch?: Fetch;
  sleep?: Sleep;
}

export type JobStatus = 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';

export interface JobState {
  id: string;
  status: JobStatus;
  progress: { phase: string; fraction: number | null; message: string | null } | null;
  error: { code: string; message: string } | null;
}

export interface WaitOptions {
  intervalMs: number;
  onUpdate?: (job: JobState) => void;
  /** consecutive failed polls tolerated before giving up: a long job should survive a network blip */
  retries?: number;
}

interface GraphQLResponse<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

const realSleep: Sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Requests that carry a model can be large; the rest should answer quickly. */
const TRANSFER_TIMEOUT_MS = 15 * 60_000;
const REQUEST_TIMEOUT_MS = 60_000;

const POLL_QUERY = 'query StrataJob($id: ID!) { job(id: $id) { id status progress { phase fraction message } error { code message } } }';

/** The strata service over HTTP: raw uploads, GraphQL, artifact downloads. */
export class StrataClient {
  private readonly fetch: Fetch;
  private readonly sleep: Sleep;

  constructor(private readonly options: StrataClientOptions) {
    this.fetch = options.fetch ?? fetch;
    this.sleep = options.sleep ?? realSleep;
  }

  /** Stores bytes on the service; the answer is their content address. */
  async upload(bytes: Uint8Array, operation: string): Promise<{ sha256: string; size: number }> {
    const res = await this.send('/upload', operation, TRANSFER_TIMEOUT_MS, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: bytes,
    });
    const body = await readJson(res);
    if (res.status !== 201) throw routeError(operation, res.status, body);
    const { sha256, size } = (body ?? {}) as { sha256?: unknown; size?: unknown };
    if (typeof sha256 !== 'string' || typeof size !== 'number') throw new ServiceRequestError(operation, 'BAD_RESPONSE', 'the answer holds no sha256');
    return { sha256, size };
  }

  /** Runs one GraphQL operation; any error in the answer fails it with the error's code. */
  async graphql<T>(operation: string, query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const res = await this.send('/graphql', operation, REQUEST_TIMEOUT_MS, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await readJson(res)) as GraphQLResponse<T> | null;
    const first = body?.errors?.[0];
    if (first) throw new ServiceRequestError(operation, first.extensions?.code ?? `HTTP ${res.status}`, first.message);
    if (res.status !== 200 || !body?.data) throw new ServiceRequestError(operation, `HTTP ${res.status}`, 'the answer holds no data');
    return body.data;
  }

  /** A stored file, by the path the service gave (`/artifacts/<sha256>`). */
  async download(path: string, operation: string): Promise<Uint8Array> {
    const res = await this.send(path, operation, TRANSFER_TIMEOUT_MS, { method: 'GET' });
    if (res.status !== 200) throw routeError(operation, res.status, await readJson(res));
    return new Uint8Array(await res.arrayBuffer());
  }

  /**
   * Polls a job until it has finished. Only SUCCEEDED returns; a failed or cancelled job
   * throws with the service's error code.
   */
  async waitForJob(id: string, options: WaitOptions): Promise<JobState> {
    const retries = options.retries ?? 5;
    let failures = 0;
    for (;;) {
      let job: JobState;
      try {
        job = (await this.graphql<{ job: JobState }>(`polling job ${id}`, POLL_QUERY, { id })).job;
        failures = 0;
      } catch (e) {
        // a refused token or an unknown job will not get better by asking again
        if (!(e instanceof ServiceUnreachableError) || ++failures > retries) throw e;
        await this.sleep(options.intervalMs * 2 ** failures);
        continue;
      }
      options.onUpdate?.(job);
      switch (job.status) {
        case 'SUCCEEDED':
          return job;
        case 'FAILED':
        case 'CANCELLED':
          throw new JobFailedError(id, job.status, job.error?.code ?? null, job.error?.message ?? 'no reason given');
        case 'QUEUED':
        case 'RUNNING':
          await this.sleep(options.intervalMs);
          break;
        default:
          throw new ServiceRequestError(`polling job ${id}`, 'BAD_RESPONSE', `unknown job status "${String(job.status)}"`);
      }
    }
  }

  private async send(path: string, operation: string, timeoutMs: number, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.options.token !== '') headers.set('Authorization', `Bearer ${this.options.token}`);
    let res: Response;
    try {
      res = await this.fetch(`${this.options.url}${path}`, { ...init, headers, signal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      throw new ServiceUnreachableError(this.options.url, operation, networkCause(e));
    }
    if (res.status === 401) throw new ServiceAuthError(this.options.url);
    return res;
  }
}

async function readJson(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

/** The plain HTTP routes answer `{"error": {"code", "message"}}`. */
function routeError(operation: string, status: number, body: unknown): ServiceRequestError {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = typeof error?.code === 'string' ? error.code : `HTTP ${status}`;
  const message = typeof error?.message === 'string' ? error.message : `the service answered ${status}`;
  return new ServiceRequestError(operation, code, message);
}

/** fetch hides the reason behind "fetch failed"; its cause says "connect ECONNREFUSED …", "getaddrinfo ENOTFOUND …". */
function networkCause(e: unknown): string {
  if (e instanceof Error && e.name === 'TimeoutError') return 'no answer in time';
  const cause = (e as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  if (cause && typeof cause.message === 'string' && cause.message !== '') return cause.message;
  if (cause && typeof cause.code === 'string') return cause.code;
  return e instanceof Error ? e.message : String(e);
}
