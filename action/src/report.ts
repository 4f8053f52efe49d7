/**
 * The report as markdown, for a pull-request comment and the job summary. Pure: plain data in,
 * a string out; no environment, no clock.
 */
import { count, ms, percent, pt, x } from './format.js';
import type { LayerMergeInputs } from './inputs.js';
import type { MergedConvData, Outcome, ReportRow } from './outcome.js';

/** Finds the comment an earlier run left, so later runs edit it instead of adding another. */
export const COMMENT_MARKER = '<!-- strata-report -->';

/** GitHub refuses a comment body longer than this. */
export const GITHUB_COMMENT_LIMIT = 65_536;

export interface ReportData {
  /** the model path as the workflow gave it */
  model: string;
  /** "SGLP", "LAYERMERGE" */
  method: string;
  /** the LayerMerge options the plans were made with (method LAYERMERGE); absent or null otherwise */
  layerMerge?: LayerMergeInputs | null;
  /** the evaluation data path as given */
  evalData: string;
  /** samples accuracy was measured on */
  evalSamples: number | null;
  latencyBatch: number;
  outcome: Outcome;
  /** a link to the workflow run, where the job summary holds the uncut report */
  runUrl: string | null;
  commit: string | null;
}

export interface RenderOptions {
  /** the longest report to produce; plan details are cut first to stay within it */
  maxLength?: number;
}

export function renderReport(data: ReportData, options: RenderOptions = {}): string {
  const max = options.maxLength ?? GITHUB_COMMENT_LIMIT;
  const head = renderHead(data);
  const table = renderTable(data);
  const chart = renderChart(data);
  const footer = renderFooter(data);
  const measured = data.outcome.rows.filter((r) => r.feasible);
  const merges = mergesConvs(data);
  const details = measured.map((r) => detailBlock(r, merges));
  const full = join([head, table, chart, ...details, footer]);
  if (full.length <= max) return full;

  // Details go first: the table, the chart and the gates are what a reviewer needs. The best
  // model's plan keeps its details before the others do.
  const reserved = truncationNote(measured.length, measured.length, data.runUrl, max);
  let room = max - join([head, table, chart, reserved, footer]).length;
  const best = data.outcome.best === null ? -1 : measured.indexOf(data.outcome.rows[data.outcome.best]!);
  const order = best < 0 ? [...details.keys()] : [best, ...[...details.keys()].filter((i) => i !== best)];
  const kept: string[] = new Array<string>(details.length).fill('');
  let cut = 0;
  for (const i of order) {
    const block = details[i]!;
    const stub = stubBlock(measured[i]!, merges);
    if (block.length + 2 <= room) {
      kept[i] = block;
      room -= block.length + 2;
    } else {
      cut++;
      if (stub.length + 2 <= room) {
        kept[i] = stub;
        room -= stub.length + 2;
      }
    }
  }
  const note = truncationNote(cut, measured.length, data.runUrl, max);
  const shortened = join([head, table, chart, note, ...kept, footer]);
  if (shortened.length <= max) return shortened;

  // Only names thousands of characters long get here; the table itself no longer fits.
  const tail = `\n\n${truncationNote(measured.length, measured.length, data.runUrl, max)}\n`;
  return join([head, table, footer]).slice(0, Math.max(0, max - tail.length)) + tail;
}

/** LayerMerge merges convolutions as well as removing units: its rows count both. */
function mergesConvs(data: ReportData): boolean {
  return data.method === 'LAYERMERGE';
}

/** "14 units removed", and for LayerMerge ", 5 merged convs" after it. */
function changes(r: ReportRow, merges: boolean): string {
  return `${plural(r.removed.length, 'unit')} removed${merges ? `, ${plural(r.merged.length, 'merged conv')}` : ''}`;
}

function join(parts: string[]): string {
  return parts.filter((p) => p !== '').join('\n\n') + '\n';
}

function renderHead(data: ReportData): string {
  const { outcome } = data;
  const lines = [COMMENT_MARKER, `### strata: ${code(clip(data.model, 200))}, ${data.method} over ${plural(outcome.rows.length, 'budget')}`, ''];
  const best = outcome.best === null ? null : outcome.rows[outcome.best]!;
  if (best) {
    const accuracy =
      best.accuracy !== null && outcome.original.accuracy !== null
        ? `, accuracy ${percent(outcome.original.accuracy)} → ${percent(best.accuracy)} (${pt(best.accuracyChangePt!)})`
        : '';
    const file = best.file ? `: ${code(best.file)}` : '';
    lines.push(`**Best: ${best.label}**, **${x(best.speedup!)}** faster at batch ${data.latencyBatch}${accuracy}, ${changes(best, mergesConvs(data))}${file}`);
  } else if (outcome.rows.some((r) => r.feasible)) {
    lines.push('**No compressed model is within the accuracy limit.**');
  } else {
    lines.push('**No budget could be met.**');
  }
  const failed = outcome.gates.filter((g) => !g.passed);
  const passed = outcome.gates.filter((g) => g.passed);
  if (failed.length > 0) {
    lines.push('', '> [!CAUTION]');
    failed.forEach((g, i) => lines.push(...(i > 0 ? ['>'] : []), `> ❌ **Gate failed: \`${g.input}: ${g.limit}\`**: ${escapeText(g.message)}`));
  }
  for (const g of passed) lines.push('', `✅ Gate passed: \`${g.input}: ${g.limit}\`: ${escapeText(g.message)}`);
  return lines.join('\n');
}

function renderTable(data: ReportData): string {
  const { outcome } = data;
  const o = outcome.original;
  const merges = mergesConvs(data);
  const lines = [
    `| model | latency (ms) | speed-up | accuracy | change | parameters | ${merges ? 'units removed/merged' : 'units removed'} |`,
    '| :-- | --: | --: | --: | --: | --: | --: |',
    `| original | ${ms(o.latencyMs)} | ${x(1)} | ${o.accuracy === null ? '—' : percent(o.accuracy)} | — | ${o.parameters === null ? '—' : count(o.parameters)} | — |`,
  ];
  outcome.rows.forEach((r, i) => {
    const label = i === outcome.best ? `**${r.label}** ★` : r.label;
    if (!r.feasible) {
      lines.push(`| ${label} | — | — | — | — | — | not met |`);
      return;
    }
    lines.push(
      `| ${label} | ${ms(r.latencyMs!)} | ${x(r.speedup!)} | ${r.accuracy === null ? '—' : percent(r.accuracy)} | ${r.accuracyChangePt === null ? '—' : pt(r.accuracyChangePt)} | ${r.parameters === null ? '—' : count(r.parameters)} | ${r.removed.length}${merges ? ` / ${r.merged.length}` : ''} |`,
    );
  });
  const notes: string[] = [];
  for (const r of outcome.rows.filter((r) => !r.feasible)) notes.push(`- ${r.label} is not met: ${escapeText(clip(r.reason ?? 'no plan meets it', 300))}`);
  const where = data.evalSamples === null ? code(clip(data.evalData, 200)) : `${code(clip(data.evalData, 200))} (${count(data.evalSamples)} samples)`;
  const accuracy = o.accuracy === null ? `Accuracy is not measured: ${where} has no labels.` : `Accuracy: top-1 on ${where}.`;
  // Each budget is timed in its own interleaved run beside the original, so a busy machine
  // moves both; the original's range across those runs explains a latency that disagrees with
  // its speed-up.
  const paired = o.pairedMs === null ? '' : ` (the original measured ${ms(o.pairedMs[0])}–${ms(o.pairedMs[1])} ms beside them)`;
  const footnote =
    `<sub>Latency: median at batch ${data.latencyBatch} on the strata service. Speed-up: median of the ratios of interleaved runs of the original ` +
    `and the compressed model${paired}, steadier than the ratio of two medians. ${accuracy}${merges ? ` ${layerMergeNote(data.layerMerge ?? null)}` : ''}` +
    `${outcome.best === null ? '' : ' ★ the fastest model within the limits.'}</sub>`;
  return [lines.join('\n'), notes.join('\n'), footnote].filter((s) => s !== '').join('\n\n');
}

/** What the removed/merged counts mean, and how the plans were made (refit decides much of the accuracy). */
function layerMergeNote(o: LayerMergeInputs | null): string {
  const counts = 'Units removed/merged: convolutions and activations removed, and the convolutions that each stand for a merged block.';
  if (o === null) return counts;
  const variant = o.variant.toLowerCase().replace(/_/g, '-');
  const refit = o.refit ? 'merged convolutions refit by least squares' : 'exact merges, not refit';
  const quantum = o.quantumMs === null ? '' : `, ${o.quantumMs} ms latency quantum`;
  return `${counts} LayerMerge variant ${variant}, ${refit}${quantum}.`;
}

/**
 * GitHub renders Mermaid's `xychart-beta` (Mermaid 10.6 and later; plain `xychart` only in the
 * newest releases). Its x axis is categorical, so the points are ordered by accuracy, highest
 * first, and each category names its accuracy and budget.
 */
export function renderChart(data: ReportData): string {
  const { outcome } = data;
  const measured = outcome.rows.filter((r) => r.feasible && r.speedup !== null);
  if (measured.length === 0) return '';
  const withAccuracy = outcome.original.accuracy !== null && measured.every((r) => r.accuracy !== null);
  const points = [{ name: 'original', accuracy: outcome.original.accuracy, speedup: 1 }, ...measured.map((r) => ({ name: r.label, accuracy: r.accuracy, speedup: r.speedup! }))];
  if (withAccuracy) points.sort((a, b) => b.accuracy! - a.accuracy!);
  const seen = new Map<string, number>();
  const categories = points.map((p) => {
    let name = mermaidText(withAccuracy ? `${(p.accuracy! * 100).toFixed(2)} ${p.name}` : p.name);
    const n = (seen.get(name) ?? 0) + 1;
    seen.set(name, n);
    // a band axis merges equal categories, which would drop a point
    if (n > 1) name = `${name} (${n})`;
    return `"${name}"`;
  });
  const top = Math.max(1.5, Math.ceil(Math.max(...points.map((p) => p.speedup)) * 1.1 * 2) / 2);
  return [
    '```mermaid',
    'xychart-beta',
    `    title "${withAccuracy ? 'Speed-up against top-1 accuracy' : 'Speed-up by budget (accuracy not measured)'}"`,
    `    x-axis "${withAccuracy ? 'top-1 accuracy (%) and budget' : 'budget'}" [${categories.join(', ')}]`,
    `    y-axis "speed-up (x)" 0 --> ${top.toFixed(1)}`,
    `    line [${points.map((p) => p.speedup.toFixed(3)).join(', ')}]`,
    '```',
  ].join('\n');
}

/** Mermaid strings end at a double quote and its lines at a newline; × is kept ASCII for older renderers. */
function mermaidText(s: string): string {
  return s.replace(/["\r\n]+/g, ' ').replace(/×/g, 'x').trim();
}

function detailBlock(r: ReportRow, merges: boolean): string {
  const facts = [
    r.file ? `model ${code(r.file)}` : null,
    r.predictedSpeedup !== null ? `predicted speed-up ${x(r.predictedSpeedup)}, measured ${x(r.speedup!)}` : null,
    r.speedupRange ? `p10–p90 ${x(r.speedupRange[0])}–${x(r.speedupRange[1])}` : null,
    r.agreement !== null ? `top-1 agreement with the original ${percent(r.agreement)}` : null,
  ].filter((f): f is string => f !== null);
  return [
    '<details>',
    `<summary>${summaryLine(r, merges)}</summary>`,
    '',
    facts.join(' · '),
    '',
    fenced('diff', planLines(r)),
    '',
    '</details>',
  ].join('\n');
}

function stubBlock(r: ReportRow, merges: boolean): string {
  return `- ${summaryLine(r, merges)} (list cut)`;
}

function summaryLine(r: ReportRow, merges: boolean): string {
  const accuracy = r.accuracyChangePt === null ? '' : `, accuracy ${pt(r.accuracyChangePt)}`;
  // LayerMerge plans have no segments: a count of none would only puzzle
  const segments = r.segments.length > 0 ? `, ${plural(r.segments.length, 'segment')}` : '';
  return `<b>${escapeHtml(r.label)}</b>: ${changes(r, merges)}${segments}, ${x(r.speedup!)}${accuracy}`;
}

/**
 * Each segment's units in order, removed ones as deleted diff lines (red on GitHub); LayerMerge's
 * merged convolutions follow as added lines (green), as the CLI describes them.
 */
function planLines(r: ReportRow): string[] {
  const removed = new Set(r.removed);
  const lines: string[] = [];
  const listed = new Set<string>();
  r.segments.forEach((segment, i) => {
    lines.push(`@@ segment ${i + 1} of ${r.segments.length} @@`);
    for (const unit of segment) {
      listed.add(unit);
      lines.push(`${removed.has(unit) ? '-' : ' '} ${oneLine(unit)}`);
    }
  });
  const outside = r.removed.filter((u) => !listed.has(u));
  if (outside.length > 0) {
    if (r.segments.length > 0) lines.push('@@ outside the segments @@');
    for (const unit of outside) lines.push(`- ${oneLine(unit)}`);
  }
  for (const m of r.merged) lines.push(`+ ${mergedLine(m)}`);
  if (lines.length === 0) lines.push('  (nothing removed)');
  return lines;
}

function mergedLine(m: MergedConvData): string {
  const skips = m.foldedSkips.length > 0 ? `, folds ${plural(m.foldedSkips.length, 'skip')}` : '';
  return oneLine(`${m.kh}×${m.kw} conv from ${m.from.join('+')}${skips}${m.refit ? ', refit' : ''}`);
}

function truncationNote(cut: number, total: number, runUrl: string | null, max: number): string {
  const where = runUrl ? `the [job summary of the run](${runUrl})` : 'the job summary of the run';
  return (
    `> [!NOTE]\n> The plan details of ${cut} of ${plural(total, 'budget')} were cut to fit GitHub's limit of ${count(max)} characters ` +
    `for a comment; the full report is in ${where} and in the report file.`
  );
}

function renderFooter(data: ReportData): string {
  const parts = ['made shallower by strata'];
  if (data.runUrl) parts.push(`<a href="${escapeHtml(data.runUrl)}">workflow run</a>`);
  if (data.commit) parts.push(`commit ${escapeHtml(data.commit.slice(0, 7))}`);
  return `<sub>${parts.join(' · ')}</sub>`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function clip(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

/** A code span that holds any text: the fence is longer than any backtick run inside. */
function code(s: string): string {
  const text = oneLine(s);
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longest + 1);
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

function fenced(lang: string, lines: string[]): string {
  const longest = Math.max(2, ...lines.flatMap((l) => l.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longest + 1);
  return [`${fence}${lang}`, ...lines, fence].join('\n');
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Text from the service shown as prose: no HTML, no accidental markdown, one line. */
function escapeText(s: string): string {
  return escapeHtml(oneLine(s)).replace(/([\\`*_[\]|#])/g, '\\$1');
}
