/**
 * The data directory's lock: who may take it over and who is refused. Real processes on this
 * machine for the host cases; a ProcessView played by the test for what only a container shows
 * (another hostname, pid 1 again in a new pid namespace after a restart).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDirLock, DataDirLockedError, LOCK_FILE, localProcessView, type LockHolder, type ProcessView } from '../../service/src/store/data-dir-lock.js';

let root = '';
let n = 0;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'strata-lock-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** A fresh data directory per case. */
const dataDir = () => join(root, `d${n++}`);
const lockOf = (dir: string) => join(dir, LOCK_FILE);
const readHolder = (dir: string) => JSON.parse(readFileSync(lockOf(dir), 'utf8')) as LockHolder;

function writeLock(dir: string, holder: Omit<LockHolder, 'token'>): void {
  DataDirLock.acquire(dir).release(); // creates the folder the way a service would
  writeFileSync(lockOf(dir), `${JSON.stringify({ ...holder, token: 'someone-else' })}\n`);
}

function refused(dir: string, view?: ProcessView): DataDirLockedError {
  try {
    DataDirLock.acquire(dir, view);
  } catch (e) {
    assert.ok(e instanceof DataDirLockedError, String(e));
    return e;
  }
  assert.fail('the lock was taken although its holder may be running');
}

function takenOver(dir: string, view?: ProcessView): void {
  const lock = DataDirLock.acquire(dir, view);
  assert.notEqual(readHolder(dir).token, 'someone-else');
  lock.release();
  assert.ok(!existsSync(lockOf(dir)));
}

/** A process that stays alive until the test ends it. */
async function liveChild() {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('spawn', resolve));
  return child;
}

// A container: its hostname, a pid namespace of its own, pid 1, a boot shared with the host.
const BOOT = 'b0a7b0a7-0000-4000-8000-000000000000';
function containerView(over: { hostname: string; pidNamespace: string; startTicks: number; pid?: number; processes?: Record<number, number> }): ProcessView {
  const pid = over.pid ?? 1;
  const processes = over.processes ?? { [pid]: over.startTicks };
  return {
    self: { pid, hostname: over.hostname, startedAt: new Date().toISOString(), bootId: BOOT, pidNamespace: over.pidNamespace, startTicks: over.startTicks },
    startTicks: (pid) => processes[pid] ?? null,
    alive: (pid) => pid in processes,
    now: () => Date.now(),
  };
}
const containerHolder = (hostname: string, pidNamespace: string, startTicks: number): Omit<LockHolder, 'token'> => ({
  pid: 1,
  hostname,
  startedAt: '2026-01-01T00:00:00.000Z',
  bootId: BOOT,
  pidNamespace,
  startTicks,
});

test('a lock records who holds the directory, refuses a second open, and is gone after release', () => {
  const dir = dataDir();
  const lock = DataDirLock.acquire(dir);
  const holder = readHolder(dir);
  assert.equal(holder.pid, process.pid);
  assert.equal(typeof holder.hostname, 'string');
  assert.ok(!Number.isNaN(Date.parse(holder.startedAt)));
  const e = refused(dir);
  assert.equal(e.code, 'BAD_USER_INPUT');
  assert.equal(e.dataDir, dir);
  assert.equal(e.holder?.pid, process.pid);
  assert.equal(
    e.message,
    `the data directory ${dir} is in use by another strata service (pid ${process.pid} on host ${holder.hostname}, started ${holder.startedAt}); ` +
      `give each service its own STRATA_DATA_DIR, or, if that service is no longer running, delete ${lockOf(dir)}`,
  );
  assert.ok(!e.message.includes('\n'));
  lock.release();
  assert.ok(!existsSync(lockOf(dir)));
  DataDirLock.acquire(dir).release();
});

test('REFUSED - a live process on this machine holds it; once that process has ended its lock is taken over', async () => {
  const dir = dataDir();
  const child = await liveChild();
  const here = localProcessView();
  writeLock(dir, { ...here.self, pid: child.pid!, startTicks: here.startTicks(child.pid!) ?? null });
  try {
    assert.equal(refused(dir).holder?.pid, child.pid);
  } finally {
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
  }
  takenOver(dir);
});

test('a pid that now belongs to a later process does not hold the lock', { skip: localProcessView().self.startTicks === null && 'no /proc here' }, async () => {
  const dir = dataDir();
  const child = await liveChild();
  try {
    const here = localProcessView();
    writeLock(dir, { ...here.self, pid: child.pid!, startTicks: here.startTicks(child.pid!)! - 1 });
    takenOver(dir);
  } finally {
    child.kill('SIGKILL');
  }
});

test('REFUSED - another hostname (a second container on the same volume) is refused while it may be running', () => {
  const dir = dataDir();
  writeLock(dir, containerHolder('aaaaaaaaaaaa', 'pid:[4026532001]', 100));
  const e = refused(dir, containerView({ hostname: 'bbbbbbbbbbbb', pidNamespace: 'pid:[4026532002]', startTicks: 5000 }));
  assert.match(e.message, /in use by another strata service \(pid 1 on host aaaaaaaaaaaa, started 2026-01-01T00:00:00\.000Z\)/);
});

test('a restarted container (same hostname, pid 1 again, a new pid namespace) takes over the lock its earlier run left', () => {
  const dir = dataDir();
  writeLock(dir, containerHolder('aaaaaaaaaaaa', 'pid:[4026532001]', 100));
  takenOver(dir, containerView({ hostname: 'aaaaaaaaaaaa', pidNamespace: 'pid:[4026532002]', startTicks: 5000 }));
  // the kernel may give the new namespace the old one's number: pid 1 is then this process, started later
  writeLock(dir, containerHolder('aaaaaaaaaaaa', 'pid:[4026532001]', 100));
  takenOver(dir, containerView({ hostname: 'aaaaaaaaaaaa', pidNamespace: 'pid:[4026532001]', startTicks: 5000 }));
});

test('REFUSED - same hostname in another pid namespace that started after ours: it may be running', () => {
  const dir = dataDir();
  writeLock(dir, containerHolder('aaaaaaaaaaaa', 'pid:[4026532001]', 9000));
  refused(dir, containerView({ hostname: 'aaaaaaaaaaaa', pidNamespace: 'pid:[4026532002]', startTicks: 5000 }));
});

test('REFUSED - another process of the same container that is still running (same namespace, same start)', () => {
  // pid 1 an init, the service pid 7, and this a second one started with `docker exec`
  const dir = dataDir();
  writeLock(dir, { ...containerHolder('aaaaaaaaaaaa', 'pid:[4026532001]', 300), pid: 7 });
  const view = containerView({ hostname: 'aaaaaaaaaaaa', pidNamespace: 'pid:[4026532001]', pid: 30, startTicks: 5000, processes: { 1: 200, 7: 300, 30: 5000 } });
  refused(dir, view);
});

test('a lock from before a reboot (another boot id) is taken over', () => {
  const dir = dataDir();
  writeLock(dir, { ...containerHolder('aaaaaaaaaaaa', 'pid:[4026532001]', 9000), bootId: 'an-earlier-boot' });
  takenOver(dir, containerView({ hostname: 'aaaaaaaaaaaa', pidNamespace: 'pid:[4026532001]', startTicks: 100, processes: { 1: 100 } }));
});

test('REFUSED - a lock file being written right now; one left unreadable by a crash is taken over after a while', () => {
  const dir = dataDir();
  DataDirLock.acquire(dir).release();
  writeFileSync(lockOf(dir), '');
  const e = refused(dir);
  assert.equal(e.holder, null);
  assert.match(e.message, /in use by another strata service that is starting right now/);
  const minuteAgo = new Date(Date.now() - 60_000);
  utimesSync(lockOf(dir), minuteAgo, minuteAgo);
  DataDirLock.acquire(dir).release();
});

test('release removes only its own lock', () => {
  const dir = dataDir();
  const lock = DataDirLock.acquire(dir);
  const theirs = `${JSON.stringify({ ...readHolder(dir), token: 'someone-else' })}\n`;
  writeFileSync(lockOf(dir), theirs);
  lock.release();
  assert.equal(readFileSync(lockOf(dir), 'utf8'), theirs);
});
