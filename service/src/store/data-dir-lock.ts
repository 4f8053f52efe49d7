import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { StrataError } from '../core/errors.js';

/** The lock's name inside the data directory. */
export const LOCK_FILE = 'strata.lock';

/** What a lock file records about the service that holds the data directory. */
export interface LockHolder {
  pid: number;
  hostname: string;
  /** when the holding process started (ISO 8601) */
  startedAt: string;
  /** the kernel's boot id (Linux; null elsewhere): a process from before a reboot is gone */
  bootId: string | null;
  /** the holder's pid namespace (Linux, e.g. "pid:[4026532301]"): its pid means something only there */
  pidNamespace: string | null;
  /** the holder's start in clock ticks since boot (/proc/<pid>/stat): tells it from a later process given the same pid */
  startTicks: number | null;
  /** this acquisition, so that a release removes its own lock and nobody else's */
  token: string;
}

/**
 * What this machine can tell about its processes. The service uses the real one
 * (localProcessView); tests pass their own to play a container restart or a reused pid.
 */
export interface ProcessView {
  /** this process, as it would record itself (token aside) */
  self: Omit<LockHolder, 'token'>;
  /** start of `pid` in this pid namespace, in clock ticks since boot; null when there is no such process; undefined when that cannot be known here */
  startTicks(pid: number): number | null | undefined;
  /** whether a process `pid` exists, where startTicks cannot tell */
  alive(pid: number): boolean;
  /** milliseconds since the epoch */
  now(): number;
}

/**
 * Another service holds the data directory. A StrataError with the code of a bad setting (the
 * setting is which directory to use), so that `strata serve` and the service's entry print its
 * one line as it is.
 */
export class DataDirLockedError extends StrataError {
  constructor(
    readonly dataDir: string,
    readonly lockPath: string,
    /** null when no lock record could be read: another service is writing its lock right now */
    readonly holder: LockHolder | null,
  ) {
    super(
      'BAD_USER_INPUT',
      holder === null
        ? `the data directory ${dataDir} is in use by another strata service that is starting right now (${lockPath} is being written); ` +
            'give each service its own STRATA_DATA_DIR'
        : `the data directory ${dataDir} is in use by another strata service (pid ${holder.pid} on host ${holder.hostname}, ` +
            `started ${holder.startedAt}); give each service its own STRATA_DATA_DIR, or, if that service is no longer running, delete ${lockPath}`,
      { dataDir, lockPath, holder },
    );
  }
}

/** An unreadable lock file younger than this may be one that a starting service is writing this instant. */
const UNREADABLE_GRACE_MS = 10_000;
/** Tries at taking over a stale lock while other services start on the same directory at once. */
const ATTEMPTS = 5;

/** Tokens of the locks this process holds, by lock path: a second open of the same directory in one process is refused too. */
const held = new Map<string, string>();

/**
 * One strata service per data directory: two would each run the queued jobs and overwrite each
 * other's records. The lock is a file created with O_EXCL, which is atomic on local file systems
 * and on NFS v3 and later, holding who took it. It is written by hand rather than taken from a
 * library: proper-lockfile, the widely used one (here only as a dependency of testcontainers),
 * decides staleness by an mtime it refreshes on a timer, so a service whose event loop stalls or
 * whose container is paused (`docker pause`) loses its lock to the next one to start, a restart
 * right after a crash is refused until the timeout has passed, and nothing names the holder in
 * the refusal. Facts about the holder decide here instead:
 *
 * - another hostname: a machine or container whose processes cannot be seen from here, so the
 *   lock stands until that service releases it or a person deletes the file (the message says so);
 * - the same hostname after a reboot (another boot id): stale;
 * - the same hostname in another pid namespace: `docker restart` keeps a container's hostname and
 *   gives it a new pid namespace, where the service is often pid 1 again. The earlier run ended
 *   with its namespace, so its lock is stale when it started before this namespace's pid 1 did.
 *   Two live containers given the same hostname by hand look exactly like that, which is why
 *   each container needs its own hostname (Docker's default, the container id) or its own volume;
 * - the same pid namespace: stale when its pid is gone or now belongs to a later process (start
 *   times differ), as with pid 1 of a restarted container whose namespace number was reused.
 */
export class DataDirLock {
  private released = false;

  private constructor(
    readonly path: string,
    private readonly token: string,
  ) {}

  /** Takes the data directory (creating it if needed) or throws DataDirLockedError naming who has it. */
  static acquire(dataDir: string, view: ProcessView = localProcessView()): DataDirLock {
    mkdirSync(dataDir, { recursive: true });
    const path = join(dataDir, LOCK_FILE);
    const token = randomBytes(12).toString('hex');
    const record = `${JSON.stringify({ ...view.self, token } satisfies LockHolder)}\n`;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      if (create(path, record)) {
        held.set(path, token);
        return new DataDirLock(path, token);
      }
      const text = readText(path);
      if (text === null) continue; // released between the two calls: try again
      const holder = parseHolder(text);
      if (holder === null ? !unreadableIsOld(path, view) : !holderIsGone(holder, view, path)) throw new DataDirLockedError(dataDir, path, holder);
      takeOver(path, text);
    }
    // every try lost to another service starting on the same directory at the same moment
    throw new DataDirLockedError(dataDir, path, null);
  }

  /** Gives the data directory up; leaves a lock that is no longer this one's (taken over meanwhile) alone. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (held.get(this.path) === this.token) held.delete(this.path);
    const text = readText(this.path);
    if (text !== null && parseHolder(text)?.token === this.token) rmSync(this.path, { force: true });
  }
}

/** The machine's own view: /proc where there is one (Linux, containers), process.kill(pid, 0) elsewhere. */
export function localProcessView(): ProcessView {
  const startTicks = (pid: number): number | null | undefined => {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return undefined;
      return procMounted() ? null : undefined;
    }
    // the command name, in parentheses, may hold spaces: count fields after its closing one
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    return Number.isSafeInteger(ticks) ? ticks : undefined;
  };
  return {
    self: {
      pid: process.pid,
      hostname: hostname(),
      startedAt: PROCESS_STARTED_AT,
      bootId: firstLine('/proc/sys/kernel/random/boot_id'),
      pidNamespace: link('/proc/self/ns/pid'),
      startTicks: startTicks(process.pid) ?? null,
    },
    startTicks,
    alive: (pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code === 'EPERM';
      }
    },
    now: () => Date.now(),
  };
}

// once, so that this process records the same start whenever it takes a lock
const PROCESS_STARTED_AT = new Date(Date.now() - process.uptime() * 1000).toISOString();

function holderIsGone(h: LockHolder, view: ProcessView, path: string): boolean {
  const me = view.self;
  if (h.hostname !== me.hostname) return false;
  if (h.bootId !== null && me.bootId !== null && h.bootId !== me.bootId) return true;
  if (h.pidNamespace !== null && me.pidNamespace !== null && h.pidNamespace !== me.pidNamespace) {
    const init = view.startTicks(1);
    return typeof init === 'number' && h.startTicks !== null && h.startTicks < init;
  }
  // this very process: held unless it has been released (an open that failed half-way)
  if (h.pid === me.pid && h.startedAt === me.startedAt) return held.get(path) !== h.token;
  // one pid space, and the holder is not this process: no live process shares this one's pid
  if (h.pid === me.pid) return true;
  const ticks = view.startTicks(h.pid);
  if (ticks === null) return true;
  if (ticks !== undefined && h.startTicks !== null) return ticks !== h.startTicks;
  return !view.alive(h.pid);
}

/** A lock file that is not a lock record: a start that crashed between creating and writing it, once it is old enough. */
function unreadableIsOld(path: string, view: ProcessView): boolean {
  try {
    return view.now() - statSync(path).mtimeMs > UNREADABLE_GRACE_MS;
  } catch {
    return true; // gone meanwhile: nothing left to respect
  }
}

/** O_EXCL: exactly one of several services starting at once creates the file. */
function create(path: string, record: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  let written = false;
  try {
    const bytes = Buffer.from(record, 'utf8');
    let off = 0;
    while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off);
    fsyncSync(fd);
    written = true;
  } finally {
    closeSync(fd);
    // a half-written lock (a full disk, say) would block the next start for a while: none at all
    if (!written) rmSync(path, { force: true });
  }
  return true;
}

/**
 * Removes a stale lock whose content was `seen`, without removing a fresh one that another
 * starting service put there in the meantime: the file is first moved aside (atomic), and if what
 * was moved is not what was judged, it is linked back (link fails rather than overwrite a lock
 * created in that instant). The caller then competes for the lock with O_EXCL like everyone else.
 */
function takeOver(path: string, seen: string): void {
  const aside = `${path}.stale-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    renameSync(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  try {
    if (readText(aside) !== seen) {
      try {
        linkSync(aside, path);
      } catch {
        // a third service created a lock in this instant: it holds the directory now
      }
    }
  } finally {
    rmSync(aside, { force: true });
  }
}

function parseHolder(text: string): LockHolder | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const r = v as Record<string, unknown>;
  const stringOrNull = (x: unknown) => typeof x === 'string' || x === null;
  if (!Number.isSafeInteger(r.pid) || typeof r.hostname !== 'string' || typeof r.startedAt !== 'string' || typeof r.token !== 'string') return null;
  if (!stringOrNull(r.bootId) || !stringOrNull(r.pidNamespace) || !(r.startTicks === null || Number.isSafeInteger(r.startTicks))) return null;
  return v as LockHolder;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

function firstLine(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

function link(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

function procMounted(): boolean {
  try {
    statSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
}
