import { StrataError } from '../core/errors.js';
import { executeJob } from './execute.js';
import type { JobProgress } from './job.js';
import { type RunMessage, type WorkerMessage } from './worker-protocol.js';

/** The IPC side of a worker process: what `process` offers when forked with an IPC channel. */
export interface WorkerPort {
  send?(message: WorkerMessage, callback?: (error: Error | null) => void): boolean;
  once(event: 'message', listener: (message: RunMessage) => void): unknown;
  once(event: 'disconnect', listener: () => void): unknown;
  exit(code?: number): never;
}

const PROGRESS_INTERVAL_MS = 100;

/** Waits for the one job, runs it, sends its result or error, and exits. */
export function runWorker(port: WorkerPort): void {
  // the service is gone (killed, crashed): nobody will read the result, so stop using the CPU
  port.once('disconnect', () => port.exit(1));
  port.once('message', (message: RunMessage) => {
    void run(port, message);
  });
}

async function run(port: WorkerPort, message: RunMessage): Promise<void> {
  const send = (m: WorkerMessage) =>
    new Promise<void>((resolve) => {
      if (!port.send) resolve();
      else port.send(m, () => resolve());
    });
  let last: JobProgress | null = null;
  let lastSent = 0;
  const onProgress = (phase: string, fraction?: number, text?: string) => {
    const now = Date.now();
    // a new phase always goes out; updates within one are thinned so IPC stays quiet
    if (last && last.phase === phase && fraction !== 1 && now - lastSent < PROGRESS_INTERVAL_MS) return;
    last = { phase, fraction: fraction ?? null, message: text ?? null };
    lastSent = now;
    void send({ type: 'progress', ...last });
  };
  try {
    const result = await executeJob(message.spec, { dataDir: message.dataDir, onProgress });
    await send({ type: 'result', result });
  } catch (e) {
    if (e instanceof StrataError) await send({ type: 'error', code: e.code, message: e.message });
    else {
      await send({
        type: 'error',
        code: 'INTERNAL_SERVER_ERROR',
        message: 'the job failed with an unexpected error; the service log has the details',
        detail: e instanceof Error ? (e.stack ?? e.message) : String(e),
      });
    }
  }
  port.exit(0);
}
