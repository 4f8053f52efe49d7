import { StrataError } from '../core/errors.js';

/** Shared by every subcommand: JSON vs human output, one-line errors, progress on stderr. */
export interface GlobalOptions {
  json?: boolean;
  debug?: boolean;
  quiet?: boolean;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Reports a failure as one line (the stack only with --debug) and sets exit code 1. */
export function reportError(e: unknown, debug: boolean): void {
  if (debug && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  const message =
    e instanceof StrataError
      ? e.message
      : e instanceof Error
        ? `unexpected error: ${e.message.split('\n')[0]} (run with --debug for details)`
        : `unexpected error: ${String(e)}`;
  process.stderr.write(`strata: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exitCode = 1;
}

/**
 * Progress on stderr: a line rewritten in place on a terminal, one line per phase otherwise
 * (CI logs), nothing with --quiet.
 */
export class Progress {
  private readonly tty = process.stderr.isTTY === true;
  private lastPhase = '';
  private lastDraw = 0;

  constructor(private readonly quiet = false) {}

  update(phase: string, fraction?: number, message?: string): void {
    if (this.quiet) return;
    const pct = fraction === undefined ? '' : ` ${(fraction * 100).toFixed(0).padStart(3)}%`;
    const line = `${phase}${pct}${message ? ` ${message}` : ''}`;
    if (this.tty) {
      const now = Date.now();
      if (phase === this.lastPhase && now - this.lastDraw < 100 && fraction !== 1) return;
      this.lastDraw = now;
      process.stderr.write(`\r\x1b[2K${line}`);
      if (fraction === 1) process.stderr.write('\n');
    } else if (phase !== this.lastPhase) {
      process.stderr.write(`${line}\n`);
    }
    this.lastPhase = phase;
  }

  done(): void {
    if (!this.quiet && this.tty && this.lastPhase) process.stderr.write('\r\x1b[2K');
    this.lastPhase = '';
  }
}

export function table(rows: (string | number)[][], header: string[]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) => r.map((c, i) => (i === 0 || i === r.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}

export function formatCount(n: number | null): string {
  if (n === null) return '?';
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}
