import type { Command } from 'commander';
import { InvalidArgumentError } from '../core/errors.js';
import { PROVIDERS, type Provider, type SessionOptions } from '../runtime/session.js';

export interface RuntimeCliOptions {
  provider?: string;
  threads?: string;
}

/** --provider and --threads, shared by every command that runs a model. */
export function addRuntimeOptions(cmd: Command): Command {
  return cmd
    .option('--provider <name>', `execution provider: ${PROVIDERS.join(', ')}`, 'cpu')
    .option('--threads <n>', 'intra-op threads (default: onnxruntime picks)');
}

export function sessionOptions(o: RuntimeCliOptions): SessionOptions {
  const provider = (o.provider ?? 'cpu') as Provider;
  if (!PROVIDERS.includes(provider)) {
    throw new InvalidArgumentError('--provider', `"${o.provider}" is not a provider; use one of ${PROVIDERS.join(', ')}`);
  }
  const out: SessionOptions = { provider, optimization: 'all' };
  if (o.threads !== undefined) out.threads = positiveInt('--threads', o.threads);
  return out;
}

export function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(name, `must be a positive integer, got "${text}"`);
  return n;
}
