/**
 * Refit of a plan's blocks at emission time, one block after another from the input side. The table's
 * refits were fitted on the original network's activations; in the compressed network a block sees
 * what the blocks before it (themselves changed) produce. So each block is fitted on its input in the
 * network with the earlier blocks already applied, against the original's output at its end: the
 * errors of earlier blocks are compensated instead of compounding.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import { mergeCandidate } from '../../core/layermerge/chain.js';
import { type BlockChoice, blockIsNoop, emitLayerMerge } from '../../core/layermerge/emit.js';
import { type ExtractedChain, replacedTensor } from '../../core/layermerge/extract.js';
import { NormalEquations, type RefitResult, solveRefit } from '../../core/layermerge/refit.js';
import { gramModel } from '../../core/layermerge/standalone.js';
import { encodeModel } from '../../core/onnx/codec.js';
import { addOutputs, cloneModel } from '../../core/onnx/edit.js';
import type { ModelProto } from '../../core/onnx/proto.js';
import { batchFeeds } from '../analysis/feeds.js';
import type { Dataset } from '../dataset.js';
import { createSession, type Session, type SessionOptions } from '../session.js';

/** Largest merged conv refit at emission (unknowns per output channel): its Gram matrix alone is 8·d² bytes. */
export const SEQUENTIAL_REFIT_MAX = 4096;

export interface SequentialRefitOptions {
  samples?: number;
  batchSize?: number;
  ridge?: number;
  session?: SessionOptions;
  onProgress?(done: number, total: number): void;
}

/** Refit weights for every block of `blocks` that merges convs and changes the function, by block key `${i}-${j}`. */
export async function refitSequentially(
  model: ModelProto,
  x: ExtractedChain,
  blocks: readonly BlockChoice[],
  dataset: Dataset,
  o: SequentialRefitOptions = {},
): Promise<Map<string, RefitResult>> {
  const ordered = [...blocks].sort((a, b) => a.i - b.i);
  const done: BlockChoice[] = [];
  const out = new Map<string, RefitResult>();
  const session: SessionOptions = { optimization: 'all', ...o.session };
  const total = Math.min(dataset.samples, o.samples ?? dataset.samples);
  const batchSize = o.batchSize ?? 64;
  const work = ordered.filter((b) => {
    const m = blockIsNoop(x, b) ? null : mergeCandidate(x.chain, { i: b.i, j: b.j, kept: [...b.kept] });
    return m !== null && (m.cin / m.group) * m.kh * m.kw <= SEQUENTIAL_REFIT_MAX;
  });
  let step = 0;
  for (const b of ordered) {
    const merged = blockIsNoop(x, b) ? null : mergeCandidate(x.chain, { i: b.i, j: b.j, kept: [...b.kept] });
    if (merged === null || (merged.cin / merged.group) * merged.kh * merged.kw > SEQUENTIAL_REFIT_MAX) {
      done.push(b);
      continue;
    }
    o.onProgress?.(step++, work.length);
    const emitted = emitLayerMerge(model, x, done);
    const inputName = x.layers[b.i]!.input;
    const fed = emitted.blocks.find((e) => e.replaced === inputName)?.tensor ?? inputName;
    const target = replacedTensor(x, b.i, b.j);
    const compressed = cloneModel(emitted.model);
    addOutputs(compressed, [fed]);
    const original = cloneModel(model);
    addOutputs(original, [target]);
    const layer = x.chain.layers[b.i]!;
    const sessions: Session[] = [];
    try {
      const a = await createSession(encodeModel(compressed), session);
      sessions.push(a);
      const r = await createSession(encodeModel(original), session);
      sessions.push(r);
      const g = await createSession(encodeModel(gramModel(merged, { c: layer.spec.cin, h: layer.inH, w: layer.inW }, 'N')), session);
      sessions.push(g);
      const eq = new NormalEquations(merged.group, (merged.cin / merged.group) * merged.kh * merged.kw, merged.cout / merged.group);
      const binding = dataset.validateAgainst(a.inputs);
      for await (const batch of dataset.batches(batchSize, { limit: total, binding })) {
        const feeds = batchFeeds(batch, binding);
        const input = (await a.run(feeds, [fed]))[fed]!;
        const y = (await r.run(feeds, [target]))[target]!;
        const sums = await g.run({ x: input, y }, ['gram', 'xy', 'sx', 'sy', 'yy']);
        eq.add({
          gram: sums['gram']!.data as Float32Array,
          xy: sums['xy']!.data as Float32Array,
          sx: sums['sx']!.data as Float32Array,
          sy: sums['sy']!.data as Float32Array,
          yy: sums['yy']!.data as Float32Array,
          rows: batch.count * (y.dims[2] as number) * (y.dims[3] as number),
        });
      }
      if (eq.rows === 0) throw new InvalidArgumentError('--samples', 'the data set gave no samples to refit on');
      const fit = solveRefit(eq, merged, o.ridge !== undefined ? { ridge: o.ridge } : {});
      out.set(`${b.i}-${b.j}`, fit);
      done.push({ ...b, spec: fit.spec });
    } finally {
      for (const s of sessions) await s.release();
    }
  }
  o.onProgress?.(work.length, work.length);
  return out;
}

