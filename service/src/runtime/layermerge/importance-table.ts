/**
 * The LayerMerge importance table, forward passes only: for each candidate block, the network with
 * only that block changed — its kept convs merged into one, the activations inside it removed, its
 * other convs replaced by identity — scored on calibration data by the task loss against the labels
 * (mean cross-entropy), or, for unlabelled data, by the mean KL divergence of its softmax from the
 * original's. The table stores Δ = loss(changed) − loss(original) and the importance I = −Δ, which
 * is additive in the DP (a sum of per-block loss increases approximates the loss increase of a plan).
 * The official method fine-tunes every entry for an epoch instead; that is what makes its table cost
 * GPU-days, and what strata replaces by this proxy plus the optional least-squares refit.
 *
 * Work is shared across candidates. Per batch, one run of the original with extra outputs captures the
 * input of every block start, the original value of every tensor a block replaces, and whatever else
 * the rest of the network reads; then each candidate runs only its merged conv on the captured input,
 * and the "suffix" from its replaced tensor to the output (one sub-model per distinct tensor, shared
 * by every candidate ending there). Candidates are processed in groups so that the sessions and
 * refit sums alive at once stay bounded; each group re-runs the capture (one forward per batch), and
 * nothing is kept across batches but sums.
 *
 * Refit (optional): the merged conv's weights are fitted in closed form to the original block's
 * output (see core/layermerge/refit.ts); the im2col Gram sums run in onnxruntime per batch, are
 * summed in float64 here, then solved; a second pass scores the refit block the same way.
 */
import * as ort from 'onnxruntime-node';
import { InvalidArgumentError } from '../../core/errors.js';
import { crossEntropy, klDivergence } from '../../core/importance/measures.js';
import { type Candidate, mergeCandidate } from '../../core/layermerge/chain.js';
import type { ConvSpec } from '../../core/layermerge/conv.js';
import { blockIsNoop } from '../../core/layermerge/emit.js';
import { type ExtractedChain, replacedTensor } from '../../core/layermerge/extract.js';
import { NormalEquations, solveRefit } from '../../core/layermerge/refit.js';
import { blockModel, gramModel, suffixModel } from '../../core/layermerge/standalone.js';
import { type ImportanceEntry, type ImportanceTableDoc, candidateKey } from '../../core/layermerge/tables.js';
import { encodeModel } from '../../core/onnx/codec.js';
import { addOutputs, cloneModel } from '../../core/onnx/edit.js';
import type { Dim } from '../../core/onnx/graph.js';
import type { ModelProto } from '../../core/onnx/proto.js';
import type { Dataset, LabelArray } from '../dataset.js';
import { batchFeeds } from '../analysis/feeds.js';
import { createSession, type Feeds, type Session, type SessionOptions } from '../session.js';

export const TABLE_REFIT_MAX = 1200;

export interface ImportanceTableOptions {
  samples?: number;
  batchSize?: number;
  refit?: boolean;
  /** see solveRefit; default 1e-3 */
  ridge?: number;
  session?: SessionOptions;
  /**
   * refit only merged convs with at most this many unknowns per output channel (cin/group·kh·kw);
   * default TABLE_REFIT_MAX. The factorization grows as d³, and a table refits every candidate: a
   * 1,728-unknown solve takes seconds in JavaScript, and MobileNet-like chains have dozens of them.
   * The plan's own blocks are refit at emission up to a larger bound (refit-plan.ts).
   */
  refitMaxUnknowns?: number;
  /** candidate keys not to score (see dominatedCandidates) */
  skip?: ReadonlySet<string>;
  /** upper bound on refit sums held at once; default 512 MB */
  refitMemoryBytes?: number;
  onProgress?(done: number, total: number, message?: string): void;
}

export interface ImportanceTableResult {
  table: ImportanceTableDoc;
  /** refit weights by candidate key, for the candidates that were refit */
  refits: Map<string, ConvSpec>;
  /** seconds spent per phase */
  seconds: { capture: number; blocks: number; suffix: number; refitSums: number; refitSolve: number; total: number };
}

interface Work {
  c: Candidate;
  key: string;
  input: string;
  replaced: string;
  merged: ConvSpec | null;
  refit: boolean;
}

interface Score {
  loss: number;
  sq: number;
  ref: number;
}

function toLabels(labels: LabelArray): Int32Array | BigInt64Array {
  if (labels instanceof BigInt64Array || labels instanceof Int32Array) return labels;
  return Int32Array.from(labels as ArrayLike<number | bigint>, (v) => Number(v));
}

function now(): number {
  return performance.now() / 1000;
}

export async function measureImportanceTable(
  model: ModelProto,
  x: ExtractedChain,
  candidates: readonly Candidate[],
  shapes: Map<string, Dim[]>,
  dataset: Dataset,
  o: ImportanceTableOptions = {},
): Promise<ImportanceTableResult> {
  const t0 = now();
  const seconds = { capture: 0, blocks: 0, suffix: 0, refitSums: 0, refitSolve: 0, total: 0 };
  const batchSize = o.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new InvalidArgumentError('batchSize', `must be a positive integer, got ${batchSize}`);
  const ridge = o.ridge ?? 1e-3;
  const entries: Record<string, ImportanceEntry> = {};
  const work: Work[] = [];
  const dominated: string[] = [];
  for (const c of candidates) {
    const key = candidateKey(c);
    if (o.skip?.has(key)) {
      dominated.push(key);
      continue;
    }
    if (blockIsNoop(x, { i: c.i, j: c.j, kept: c.kept })) {
      entries[key] = { key, deltaLoss: 0, importance: 0, fidelity: 0 };
      continue;
    }
    const merged = mergeCandidate(x.chain, c);
    const changed = c.removedActivations.length > 0 || c.removed.length > 0 || !c.exactEverywhere;
    const unknowns = merged ? (merged.cin / merged.group) * merged.kh * merged.kw : 0;
    const refit = o.refit === true && merged !== null && changed && unknowns <= (o.refitMaxUnknowns ?? TABLE_REFIT_MAX);
    work.push({ c, key, input: x.layers[c.i]!.input, replaced: replacedTensor(x, c.i, c.j), merged, refit });
  }

  const sampleShape = (t: string): number[] => {
    const s = shapes.get(t);
    if (!s || s.slice(1).some((d) => typeof d !== 'number')) throw new InvalidArgumentError('shapes', `the shape of "${t}" is not known`);
    return s.slice(1) as number[];
  };
  const shape3 = (t: string) => {
    const [c, h, w] = sampleShape(t) as [number, number, number];
    return { c, h, w };
  };

  const suffixes = new Map<string, { model: ModelProto; inputs: string[] }>();
  for (const w of work) if (!suffixes.has(w.replaced)) suffixes.set(w.replaced, suffixModel(model, w.replaced, sampleShape, 'N'));
  const logitsName = model.graph?.output?.[0]?.name ?? '';
  const capture = new Set<string>([logitsName]);
  for (const w of work) {
    capture.add(w.input);
    capture.add(w.replaced);
    for (const t of suffixes.get(w.replaced)!.inputs) capture.add(t);
  }
  const graphInputs = new Set((model.graph?.input ?? []).map((v) => v.name ?? ''));
  const tapped = cloneModel(model);
  addOutputs(tapped, [...capture].filter((t) => !graphInputs.has(t)));
  const session: SessionOptions = { optimization: 'all', ...o.session };
  const captureSession = await createSession(encodeModel(tapped), session);
  const suffixSessions = new Map<string, Session>();
  const total = Math.min(dataset.samples, o.samples ?? dataset.samples);
  const binding = dataset.validateAgainst(captureSession.inputs);
  const exact = new Map<string, Score>();
  const refitScore = new Map<string, Score>();
  const refits = new Map<string, ConvSpec>();
  const refitInfo = new Map<string, { solver: 'cholesky' | 'cg'; fitBefore: number; fitAfter: number }>();
  let baselineLoss = 0;
  let seen = 0;
  let withLabels = dataset.hasLabels;

  // Groups bounded by count (sessions) and by refit sums (memory).
  const budget = o.refitMemoryBytes ?? 512 * 2 ** 20;
  const groups: Work[][] = [];
  let cur: Work[] = [];
  let bytes = 0;
  for (const w of work) {
    const need = w.refit && w.merged ? NormalEquations.bytes(w.merged.group, (w.merged.cin / w.merged.group) * w.merged.kh * w.merged.kw, w.merged.cout / w.merged.group) : 0;
    if (cur.length > 0 && (cur.length >= 32 || bytes + need > budget)) {
      groups.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(w);
    bytes += need;
  }
  if (cur.length > 0) groups.push(cur);
  const passes = groups.reduce((n, g) => n + (g.some((w) => w.refit) ? 2 : 1), 0);
  let pass = 0;

  const suffixSession = async (r: string): Promise<Session> => {
    let s = suffixSessions.get(r);
    if (!s) {
      s = await createSession(encodeModel(suffixes.get(r)!.model), session);
      suffixSessions.set(r, s);
    }
    return s;
  };

  const run = async (
    group: readonly Work[],
    blocks: Map<string, Session | null>,
    scores: Map<string, Score>,
    sums: Map<string, NormalEquations> | null,
    gramSessions: Map<string, Session> | null,
    first: boolean,
  ): Promise<void> => {
    for (const w of group) scores.set(w.key, { loss: 0, sq: 0, ref: 0 });
    for await (const batch of dataset.batches(batchSize, { limit: total, binding })) {
      const feeds = batchFeeds(batch, binding);
      let t = now();
      const captured: Record<string, ort.Tensor> = { ...feeds, ...(await captureSession.run(feeds, [...capture].filter((n) => !graphInputs.has(n)))) };
      seconds.capture += now() - t;
      const n = batch.count;
      const reference = captured[logitsName]!.data as Float32Array;
      const classes = reference.length / n;
      if (withLabels && !batch.labels) withLabels = false;
      const labels = withLabels && batch.labels ? toLabels(batch.labels) : null;
      const lossOf = (logits: Float32Array): number => (labels ? crossEntropy(logits, labels, n, classes) : klDivergence(reference, logits, n, classes));
      if (first) {
        baselineLoss += (labels ? crossEntropy(reference, labels, n, classes) : 0) * n;
        seen += n;
      }
      for (const w of group) {
        const input = captured[w.input]!;
        const target = captured[w.replaced]!;
        t = now();
        const block = blocks.get(w.key);
        let y: ort.Tensor;
        if (block) {
          const r = await block.run({ x: input }, ['y']);
          y = r['y']!;
        } else {
          y = input;
        }
        seconds.blocks += now() - t;
        const yd = y.data as Float32Array;
        const td = target.data as Float32Array;
        if (yd.length !== td.length) throw new Error(`layermerge: block ${w.key} produces ${yd.length} values where the original has ${td.length}`);
        const s = scores.get(w.key)!;
        for (let k = 0; k < yd.length; k++) {
          const dv = yd[k]! - td[k]!;
          s.sq += dv * dv;
          s.ref += td[k]! * td[k]!;
        }
        t = now();
        const sfx = suffixes.get(w.replaced)!;
        const suffixFeeds: Feeds = { [w.replaced]: y };
        for (const name of sfx.inputs.slice(1)) suffixFeeds[name] = captured[name]!;
        const out = await (await suffixSession(w.replaced)).run(suffixFeeds, [logitsName]);
        s.loss += lossOf(out[logitsName]!.data as Float32Array) * n;
        seconds.suffix += now() - t;
        const gram = gramSessions?.get(w.key);
        if (gram && sums) {
          t = now();
          const r = await gram.run({ x: input, y: target }, ['gram', 'xy', 'sx', 'sy', 'yy']);
          const rows = n * (target.dims[2] as number) * (target.dims[3] as number);
          sums.get(w.key)!.add({
            gram: r['gram']!.data as Float32Array,
            xy: r['xy']!.data as Float32Array,
            sx: r['sx']!.data as Float32Array,
            sy: r['sy']!.data as Float32Array,
            yy: r['yy']!.data as Float32Array,
            rows,
          });
          seconds.refitSums += now() - t;
        }
      }
      o.onProgress?.(pass * total + Math.min(total, batch.start + n), passes * total, `pass ${pass + 1}/${passes}`);
    }
    pass++;
  };

  const release = async (sessions: Iterable<Session | null>): Promise<void> => {
    for (const s of sessions) if (s) await s.release();
  };

  try {
    let first = true;
    for (const group of groups) {
      const blocks = new Map<string, Session | null>();
      const grams = new Map<string, Session>();
      const sums = new Map<string, NormalEquations>();
      try {
        for (const w of group) {
          const m = w.merged ? blockModel({ conv: w.merged, input: shape3(w.input), batch: 'N', opset: [{ domain: '', version: 17 }] }) : null;
          blocks.set(w.key, m ? await createSession(encodeModel(m), session) : null);
          if (w.refit && w.merged) {
            grams.set(w.key, await createSession(encodeModel(gramModel(w.merged, shape3(w.input), 'N')), session));
            const g = w.merged.group;
            sums.set(w.key, new NormalEquations(g, (w.merged.cin / g) * w.merged.kh * w.merged.kw, w.merged.cout / g));
          }
        }
        await run(group, blocks, exact, sums, grams, first);
        first = false;
        await release(grams.values());
        grams.clear();
        if (sums.size === 0) continue;
        const refitBlocks = new Map<string, Session | null>();
        try {
          for (const w of group) {
            const eq = sums.get(w.key);
            if (!eq || !w.merged) continue;
            const t = now();
            const r = solveRefit(eq, w.merged, { ridge });
            seconds.refitSolve += now() - t;
            sums.delete(w.key);
            refits.set(w.key, r.spec);
            refitInfo.set(w.key, { solver: r.solver, fitBefore: r.fidelityBefore, fitAfter: r.fidelityAfter });
            const m = blockModel({ conv: r.spec, input: shape3(w.input), batch: 'N', opset: [{ domain: '', version: 17 }] })!;
            refitBlocks.set(w.key, await createSession(encodeModel(m), session));
          }
          await run(
            group.filter((w) => refitBlocks.has(w.key)),
            refitBlocks,
            refitScore,
            null,
            null,
            false,
          );
        } finally {
          await release(refitBlocks.values());
        }
      } finally {
        await release(blocks.values());
        await release(grams.values());
      }
    }
    if (groups.length === 0) {
      // Nothing to score, but the baseline loss is still reported.
      await run([], new Map(), exact, null, null, true);
    }
  } finally {
    await captureSession.release();
    await release(suffixSessions.values());
  }

  if (seen === 0) throw new InvalidArgumentError('--samples', 'the data set gave no samples to score the candidates on');
  const base = withLabels ? baselineLoss / seen : 0;
  for (const w of work) {
    const s = exact.get(w.key)!;
    const delta = s.loss / seen - base;
    const entry: ImportanceEntry = { key: w.key, deltaLoss: delta, importance: -delta, fidelity: s.ref > 0 ? Math.sqrt(s.sq / s.ref) : 0 };
    const r = refitScore.get(w.key);
    const info = refitInfo.get(w.key);
    if (r && info) {
      const d = r.loss / seen - base;
      entry.refit = { deltaLoss: d, importance: -d, fidelity: r.ref > 0 ? Math.sqrt(r.sq / r.ref) : 0, ...info };
    }
    entries[w.key] = entry;
  }
  seconds.total = now() - t0;
  return {
    table: {
      format: 'strata-layermerge-importance',
      version: 1,
      basis: withLabels ? 'cross-entropy' : 'kl',
      description: withLabels
        ? 'importance = −(mean cross-entropy against the labels with only this block changed − that of the original)'
        : "importance = −(mean KL divergence of the network's softmax with only this block changed from the original's)",
      samples: seen,
      baselineLoss: base,
      ridge: o.refit ? ridge : null,
      entries,
      dominated,
    },
    refits,
    seconds,
  };
}
