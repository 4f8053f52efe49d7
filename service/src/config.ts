/**
 * The service's configuration: environment variables and `strata serve` flags, validated once at
 * start. This is the one module that reads process.env; everything else is handed a Config.
 */
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { InvalidArgumentError } from './core/errors.js';
import type { Provider } from './runtime/session.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

// Listed here rather than imported from runtime/session.ts: that module loads onnxruntime's native
// library, which the request-serving process never needs.
const PROVIDERS = ['cpu', 'cuda', 'tensorrt', 'webgpu'] as const satisfies readonly Provider[];

export interface Config {
  host: string;
  port: number;
  /** holds artifacts/, records/ and the analysis cache */
  dataDir: string;
  /** bearer token clients must send; null only on a loopback host */
  token: string | null;
  maxUploadBytes: number;
  /** folders whose files may be registered by server-side path (symlinks resolved) */
  fileRoots: string[];
  concurrency: number;
  jobTimeoutMs: number;
  /** how long a shutdown waits for running jobs before it stops them */
  shutdownGraceMs: number;
  provider: Provider;
  threads: number | null;
  maxQueryDepth: number;
  maxQueryFields: number;
  logLevel: LogLevel;
  /** NODE_ENV=development: stack traces in error responses */
  development: boolean;
}

/** What `strata serve` can override; flags win over the environment. */
export interface ConfigFlags {
  host?: string;
  port?: string;
  dataDir?: string;
}

export type Environment = Readonly<Record<string, string | undefined>>;

export const DEFAULT_PORT = 4000;
export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024 * 1024;
const MIN_TOKEN_LENGTH = 16;

/** True for addresses only this machine can reach; any other host needs a token. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

export function parseConfig(env: Environment, flags: ConfigFlags = {}): Config {
  const host = flags.host ?? env.STRATA_HOST ?? DEFAULT_HOST;
  if (host.trim() === '') throw new InvalidArgumentError(flags.host !== undefined ? '--host' : 'STRATA_HOST', 'must not be empty');
  const port = flags.port !== undefined ? int('--port', flags.port, 0, 65535) : intEnv(env, 'STRATA_PORT', DEFAULT_PORT, 0, 65535);
  const dataDirText = flags.dataDir ?? env.STRATA_DATA_DIR ?? join(homedir(), '.strata');
  if (dataDirText.trim() === '') throw new InvalidArgumentError(flags.dataDir !== undefined ? '--data-dir' : 'STRATA_DATA_DIR', 'must not be empty');

  const tokenText = env.STRATA_TOKEN;
  const token = tokenText === undefined || tokenText === '' ? null : tokenText;
  if (token !== null && (token.length < MIN_TOKEN_LENGTH || /\s/.test(token))) {
    throw new InvalidArgumentError('STRATA_TOKEN', `must be at least ${MIN_TOKEN_LENGTH} characters without whitespace (e.g. \`openssl rand -hex 32\`)`);
  }
  if (token === null && !isLoopback(host)) {
    throw new InvalidArgumentError(
      'STRATA_TOKEN',
      `is required when the service listens on ${host}, which is not a loopback address: set STRATA_TOKEN to a secret ` +
        `(clients send "Authorization: Bearer <token>"), or listen on 127.0.0.1`,
    );
  }

  const provider = (env.STRATA_PROVIDER ?? 'cpu') as Provider;
  if (!(PROVIDERS as readonly string[]).includes(provider)) {
    throw new InvalidArgumentError('STRATA_PROVIDER', `must be one of ${PROVIDERS.join(', ')}, got "${provider}"`);
  }
  const logLevel = (env.STRATA_LOG_LEVEL ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new InvalidArgumentError('STRATA_LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);

  return {
    host,
    port,
    dataDir: resolve(dataDirText),
    token,
    maxUploadBytes: intEnv(env, 'STRATA_MAX_UPLOAD_BYTES', DEFAULT_MAX_UPLOAD_BYTES, 1, Number.MAX_SAFE_INTEGER),
    fileRoots: fileRoots(env.STRATA_FILE_ROOTS),
    concurrency: intEnv(env, 'STRATA_CONCURRENCY', 1, 1, 256),
    jobTimeoutMs: intEnv(env, 'STRATA_JOB_TIMEOUT_S', 3600, 1, 7 * 24 * 3600) * 1000,
    shutdownGraceMs: intEnv(env, 'STRATA_SHUTDOWN_GRACE_S', 30, 0, 24 * 3600) * 1000,
    provider,
    threads: env.STRATA_THREADS === undefined || env.STRATA_THREADS === '' ? null : int('STRATA_THREADS', env.STRATA_THREADS, 1, 1024),
    maxQueryDepth: intEnv(env, 'STRATA_MAX_QUERY_DEPTH', 12, 1, 1000),
    maxQueryFields: intEnv(env, 'STRATA_MAX_QUERY_FIELDS', 500, 1, 1_000_000),
    logLevel,
    development: env.NODE_ENV === 'development',
  };
}

/** The configuration of this process: its environment plus the flags given. */
export function loadConfig(flags: ConfigFlags = {}): Config {
  return parseConfig(process.env, flags);
}

function fileRoots(text: string | undefined): string[] {
  if (text === undefined || text.trim() === '') return [];
  return text
    .split(':')
    .filter((p) => p !== '')
    .map((p) => {
      if (!isAbsolute(p)) throw new InvalidArgumentError('STRATA_FILE_ROOTS', `entries must be absolute paths, got "${p}"`);
      return resolve(p);
    });
}

function intEnv(env: Environment, name: string, fallback: number, min: number, max: number): number {
  const text = env[name];
  return text === undefined || text === '' ? fallback : int(name, text, min, max);
}

function int(name: string, text: string, min: number, max: number): number {
  const n = Number(text.trim());
  if (text.trim() === '' || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(name, `must be a whole number from ${min} to ${max}, got "${text}"`);
  }
  return n;
}
