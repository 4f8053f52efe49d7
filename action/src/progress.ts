import type { JobState } from './strata-client.js';

/**
 * Turns job polls into log lines, one per change worth reading: a new status or phase, or the
 * phase's fraction passing another tenth. A poll every two seconds would otherwise repeat itself.
 */
export class ProgressLog {
  private last = '';

  /** The line to log for this poll, or null when it would repeat the previous one. */
  line(job: JobState, elapsedMs: number): string | null {
    const p = job.progress;
    let text = job.status.toLowerCase();
    if (p && (job.status === 'RUNNING' || job.status === 'QUEUED')) {
      text += `: ${p.phase}`;
      if (p.fraction !== null) text += ` ${Math.floor(Math.min(1, Math.max(0, p.fraction)) * 10) * 10}%`;
      if (p.message) text += ` (${p.message})`;
    }
    if (text === this.last) return null;
    this.last = text;
    return `[${formatElapsed(elapsedMs)}] ${text}`;
  }
}

function formatElapsed(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}
