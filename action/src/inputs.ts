import { isAbsolute, resolve } from 'node:path';
import { InputError } from './errors.js';

/** One budget of the sweep, as the service's `BudgetInput` takes it. */
export type Budget =
  | { kind: 'latency-fraction'; value: number }
  | { kind: 'latency-ms'; value: number }
  | { kind: 'remove'; value: number }
  | { kind: 'fraction'; value: number };

/** LayerMerge's options, as the service's `LayerMergeOptionsInput` takes them. */
export interface LayerMergeInputs {
  /** the service's `LayerMergeVariant` enum value: LAYERMERGE, LAYER_ONLY or MERGE_ONLY */
  variant: string;
  refit: boolean;
  /** null leaves the DP's latency quantum to the service */
  quantumMs: number | null;
}

export interface ActionInputs {
  serviceUrl: string;
  token: string;
  /** paths as the workflow wrote them (for the report) and resolved against the workspace (for reading) */
  model: { given: string; path: string };
  data: { given: string; path: string };
  evalData: { given: string; path: string };
  budgets: Budget[];
  /** the service's `PlanMethod` enum value */
  method: string;
  /** with method LAYERMERGE only; null otherwise */
  layerMerge: LayerMergeInputs | null;
  samples: number | null;
  latencyBatch: number | null;
  /** percentage points */
  maxAccuracyDrop: number | null;
  minSpeedup: number | null;
  outputDir: { given: string; path: string };
  githubToken: string;
  comment: boolean;
  pollIntervalMs: number;
}

/** The service takes at most this many budgets in one sweep. */
export const MAX_BUDGETS = 32;

/**
 * Reads and checks every input before anything is uploaded, so a typo fails in a second
 * rather than after a long analysis.
 */
export function parseInputs(read: (name: string) => string, workspace: string): ActionInputs {
  const required = (name: string) => {
    const v = read(name).trim();
    if (v === '') throw new InputError(name, 'is required');
    return v;
  };
  const file = (given: string) => ({ given, path: isAbsolute(given) ? given : resolve(workspace, given) });

  const url = serviceUrl(required('service-url'));
  const model = file(required('model'));
  const data = file(required('data'));
  const evalGiven = read('eval-data').trim();
  const outputGiven = read('output-dir').trim() || 'strata-models';
  const budgets = parseBudgets(read('budgets').trim() || '0.9, 0.7, 0.5');
  const planMethod = method(read('method').trim() || 'sglp');
  if (planMethod === 'LAYERMERGE') checkLatencyBudgets(budgets);
  const layerMerge = layerMergeOptions(read, planMethod);
  return {
    serviceUrl: url,
    token: read('token').trim(),
    model,
    data,
    evalData: evalGiven === '' ? data : file(evalGiven),
    budgets,
    method: planMethod,
    layerMerge,
    samples: optionalInteger('samples', read('samples')),
    latencyBatch: optionalInteger('latency-batch', read('latency-batch')),
    maxAccuracyDrop: optionalNumber('max-accuracy-drop', read('max-accuracy-drop'), (v) => v >= 0, 'a number of percentage points, 0 or more'),
    minSpeedup: optionalNumber('min-speedup', read('min-speedup'), (v) => v > 0, 'a positive factor, e.g. 1.2'),
    outputDir: file(outputGiven),
    githubToken: read('github-token').trim(),
    comment: bool('comment', read('comment').trim() || 'true'),
    pollIntervalMs: Math.round(1000 * (optionalNumber('poll-interval', read('poll-interval'), (v) => v > 0 && v <= 600, 'seconds, more than 0 and at most 600') ?? 2)),
  };
}

/**
 * `0.7` is a latency target (70% of the original's measured latency), `12ms` a latency in
 * milliseconds, `remove:3` a count of units, `fraction:0.25` a share of the removable units;
 * separated by commas or new lines.
 */
export function parseBudgets(text: string): Budget[] {
  const items = text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new InputError('budgets', 'give at least one budget, e.g. "0.9, 0.7, 0.5"');
  if (items.length > MAX_BUDGETS) throw new InputError('budgets', `give at most ${MAX_BUDGETS} budgets, got ${items.length}`);
  return items.map(parseBudget);
}

const NUMBER = String.raw`(\d+(?:\.\d*)?|\.\d+)`;

function parseBudget(item: string): Budget {
  let m = new RegExp(`^${NUMBER}$`).exec(item);
  if (m) {
    const value = Number(m[1]);
    if (!(value > 0 && value <= 1)) throw new InputError('budgets', `"${item}": a latency target is a fraction of the original latency in (0, 1]`);
    return { kind: 'latency-fraction', value };
  }
  m = new RegExp(`^${NUMBER}\\s*ms$`, 'i').exec(item);
  if (m) {
    const value = Number(m[1]);
    if (!(value > 0)) throw new InputError('budgets', `"${item}": a latency in milliseconds must be positive`);
    return { kind: 'latency-ms', value };
  }
  m = /^remove\s*:\s*(\d+)$/i.exec(item);
  if (m) {
    const value = Number(m[1]);
    if (!(value >= 1)) throw new InputError('budgets', `"${item}": remove at least one unit`);
    return { kind: 'remove', value };
  }
  m = new RegExp(`^fraction\\s*:\\s*${NUMBER}$`, 'i').exec(item);
  if (m) {
    const value = Number(m[1]);
    if (!(value >= 0 && value <= 1)) throw new InputError('budgets', `"${item}": a fraction of the removable units is in [0, 1]`);
    return { kind: 'fraction', value };
  }
  throw new InputError('budgets', `"${item}" is not a budget: write 0.7 (latency fraction), 12ms, remove:3 or fraction:0.25`);
}

function serviceUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InputError('service-url', `"${text}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InputError('service-url', `"${text}" is not an http(s) URL`);
  // a base path (a service behind a prefix) is kept; only the trailing slash would double up
  return url.href.replace(/\/+$/, '');
}

/** The service's `PlanMethod` enum value: `sglp` → SGLP, `layermerge` → LAYERMERGE. */
function method(text: string): string {
  if (!/^[a-z][a-z0-9_-]*$/i.test(text)) throw new InputError('method', `"${text}" is not a method name (sglp or layermerge)`);
  return text.toUpperCase().replace(/-/g, '_');
}

/**
 * LayerMerge trades latency and does not count units, so the service refuses `remove:` and
 * `fraction:` budgets for it; saying so here spares the uploads.
 */
function checkLatencyBudgets(budgets: Budget[]): void {
  for (const b of budgets) {
    if (b.kind === 'remove' || b.kind === 'fraction') {
      throw new InputError('budgets', `"${b.kind}:${b.value}": method layermerge takes latency budgets only, e.g. 0.7 or 12ms`);
    }
  }
}

/** The defaults of the layermerge-* inputs, as action.yml declares them. */
const LAYERMERGE_DEFAULTS = { variant: 'layermerge', refit: 'true', quantumMs: '' } as const;

const LAYERMERGE_VARIANTS = ['layermerge', 'layer-only', 'merge-only'];

/**
 * Every layermerge-* input is checked whatever the method, so a typo fails at once. With another
 * method they would change nothing: a value other than the default is refused rather than
 * ignored, since the workflow's author evidently meant LayerMerge to run with it.
 */
function layerMergeOptions(read: (name: string) => string, planMethod: string): LayerMergeInputs | null {
  const given = {
    variant: read('layermerge-variant').trim(),
    refit: read('layermerge-refit').trim(),
    quantumMs: read('layermerge-quantum-ms').trim(),
  };
  // `layer_only` and `LAYER_ONLY` (the service's spelling) are accepted too
  const variant = (given.variant || LAYERMERGE_DEFAULTS.variant).toLowerCase().replace(/_/g, '-');
  if (!LAYERMERGE_VARIANTS.includes(variant)) {
    throw new InputError('layermerge-variant', `"${given.variant}" is not a LayerMerge variant: layermerge, layer-only or merge-only`);
  }
  const refit = bool('layermerge-refit', given.refit || LAYERMERGE_DEFAULTS.refit);
  const quantumMs = optionalNumber('layermerge-quantum-ms', given.quantumMs, (v) => v > 0, 'a positive number of milliseconds, e.g. 0.1');
  if (planMethod !== 'LAYERMERGE') {
    const method = planMethod.toLowerCase().replace(/_/g, '-');
    const refuse = (name: string, text: string) => {
      throw new InputError(name, `"${text}" applies to method layermerge only, and method is ${method}: leave it out or set method: layermerge`);
    };
    if (variant !== LAYERMERGE_DEFAULTS.variant) refuse('layermerge-variant', given.variant);
    if (!refit) refuse('layermerge-refit', given.refit);
    if (quantumMs !== null) refuse('layermerge-quantum-ms', given.quantumMs);
    return null;
  }
  return { variant: variant.toUpperCase().replace(/-/g, '_'), refit, quantumMs };
}

function optionalInteger(name: string, text: string): number | null {
  const t = text.trim();
  if (t === '') return null;
  if (!/^\d+$/.test(t) || Number(t) < 1) throw new InputError(name, `"${t}" is not a positive integer`);
  return Number(t);
}

function optionalNumber(name: string, text: string, ok: (v: number) => boolean, what: string): number | null {
  const t = text.trim();
  if (t === '') return null;
  const v = Number(t);
  if (!Number.isFinite(v) || !ok(v)) throw new InputError(name, `"${t}" is not ${what}`);
  return v;
}

function bool(name: string, text: string): boolean {
  if (/^(true|yes|on|1)$/i.test(text)) return true;
  if (/^(false|no|off|0)$/i.test(text)) return false;
  throw new InputError(name, `"${text}" is not true or false`);
}
