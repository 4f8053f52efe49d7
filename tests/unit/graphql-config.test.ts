import { test } from 'node:test';
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isLoopback, parseConfig } from '../../service/src/config.js';
import { StrataError } from '../../service/src/core/errors.js';

const TOKEN = 'a-token-of-enough-length';

function refused(env: Record<string, string>, pattern: RegExp, flags = {}) {
  assert.throws(
    () => parseConfig(env, flags),
    (e: unknown) => e instanceof StrataError && e.code === 'BAD_USER_INPUT' && pattern.test(e.message),
  );
}

test('defaults: loopback 127.0.0.1:4000, ~/.strata, 512 MiB uploads, one job at a time, no file roots', () => {
  const c = parseConfig({});
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.port, 4000);
  assert.equal(c.dataDir, join(homedir(), '.strata'));
  assert.equal(c.maxUploadBytes, 512 * 1024 * 1024);
  assert.equal(c.concurrency, 1);
  assert.deepEqual(c.fileRoots, []);
  assert.equal(c.token, null);
  assert.equal(c.provider, 'cpu');
  assert.equal(c.development, false);
});

test('the environment sets everything; flags win over it', () => {
  const c = parseConfig(
    {
      STRATA_HOST: '0.0.0.0',
      STRATA_PORT: '8080',
      STRATA_DATA_DIR: '/var/lib/strata',
      STRATA_TOKEN: TOKEN,
      STRATA_MAX_UPLOAD_BYTES: '1024',
      STRATA_FILE_ROOTS: '/data:/models',
      STRATA_CONCURRENCY: '3',
      STRATA_JOB_TIMEOUT_S: '60',
      NODE_ENV: 'development',
    },
    { port: '9090', dataDir: '/srv/strata' },
  );
  assert.equal(c.host, '0.0.0.0');
  assert.equal(c.port, 9090);
  assert.equal(c.dataDir, '/srv/strata');
  assert.equal(c.token, TOKEN);
  assert.equal(c.maxUploadBytes, 1024);
  assert.deepEqual(c.fileRoots, ['/data', '/models']);
  assert.equal(c.concurrency, 3);
  assert.equal(c.jobTimeoutMs, 60_000);
  assert.equal(c.development, true);
});

test('loopback addresses are recognised; others are not', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) assert.ok(isLoopback(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.org', '128.0.0.1']) assert.ok(!isLoopback(h), h);
});

test('BAD CALL - a host that is not loopback without STRATA_TOKEN refuses to start, saying why', () => {
  refused({ STRATA_HOST: '0.0.0.0' }, /STRATA_TOKEN: is required when the service listens on 0\.0\.0\.0/);
  refused({}, /STRATA_TOKEN: is required when the service listens on ::/, { host: '::' });
});

test('BAD CALL - a short token is refused', () => {
  refused({ STRATA_TOKEN: 'short' }, /STRATA_TOKEN: must be at least 16 characters/);
});

test('BAD CALL - malformed numbers name the variable or flag', () => {
  refused({ STRATA_PORT: 'eighty' }, /^STRATA_PORT: must be a whole number from 0 to 65535, got "eighty"/);
  refused({}, /^--port: must be a whole number/, { port: '70000' });
  refused({ STRATA_CONCURRENCY: '0' }, /^STRATA_CONCURRENCY: must be a whole number from 1/);
  refused({ STRATA_MAX_UPLOAD_BYTES: '1.5' }, /^STRATA_MAX_UPLOAD_BYTES: /);
  refused({ STRATA_JOB_TIMEOUT_S: '-1' }, /^STRATA_JOB_TIMEOUT_S: /);
});

test('BAD CALL - relative file roots, unknown providers and log levels are refused', () => {
  refused({ STRATA_FILE_ROOTS: 'data' }, /^STRATA_FILE_ROOTS: entries must be absolute paths, got "data"/);
  refused({ STRATA_PROVIDER: 'tpu' }, /^STRATA_PROVIDER: must be one of cpu, cuda, tensorrt, webgpu/);
  refused({ STRATA_LOG_LEVEL: 'loud' }, /^STRATA_LOG_LEVEL: must be one of/);
});
