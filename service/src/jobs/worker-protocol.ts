import type { JobErrorCode, JobProgress, JobResult, JobSpec } from './job.js';

/** The one message a worker receives: the job to run and where the data directory is. */
export interface RunMessage {
  type: 'run';
  id: string;
  spec: JobSpec;
  dataDir: string;
}

export type WorkerMessage =
  | ({ type: 'progress' } & JobProgress)
  | { type: 'result'; result: JobResult }
  /** `detail` (a stack trace) is for the service's log, never for clients */
  | { type: 'error'; code: JobErrorCode; message: string; detail?: string };

export function isWorkerMessage(m: unknown): m is WorkerMessage {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return t === 'progress' || t === 'result' || t === 'error';
}
