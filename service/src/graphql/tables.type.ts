import 'reflect-metadata';
import { GraphQLJSONObject } from 'graphql-scalars';
import { Field, Float, Int, ObjectType } from 'type-graphql';
import { entryLatency, type ImportanceEntry, type TablesDoc } from '../core/layermerge/tables.js';
import type { TablesResult } from '../jobs/job.js';

@ObjectType('LayerMergeRefitImportance', { description: 'the same block with its merged convolution refit by least squares' })
export class LayerMergeRefitImportanceType {
  @Field(() => Float)
  deltaLoss!: number;

  @Field(() => Float)
  importance!: number;

  @Field(() => Float)
  fidelity!: number;

  @Field(() => String, { description: 'cholesky or cg' })
  solver!: string;

  @Field(() => Float, { description: 'relative error of the fit on the calibration rows before the refit (the exact merge)' })
  fitBefore!: number;

  @Field(() => Float, { description: 'and after it' })
  fitAfter!: number;
}

@ObjectType('LayerMergeImportance', { description: "a candidate block's entry in the importance table" })
export class LayerMergeImportanceType {
  @Field(() => Float, { description: 'mean task loss change over the calibration samples (cross-entropy with labels, else KL from the original)' })
  deltaLoss!: number;

  @Field(() => Float, { description: '−deltaLoss: additive over blocks, higher is better' })
  importance!: number;

  @Field(() => Float, { description: "‖y − y₀‖/‖y₀‖ of the block's output against the original's" })
  fidelity!: number;

  @Field(() => LayerMergeRefitImportanceType, { nullable: true, description: 'with refit only' })
  refit!: LayerMergeRefitImportanceType | null;
}

@ObjectType('LayerMergeCandidate', { description: 'a block (i, j] of the conv chain with the convolutions it keeps: one row of both tables' })
export class LayerMergeCandidateType {
  @Field(() => String, { description: '"i-j:kept", the key of both tables' })
  key!: string;

  @Field(() => Int)
  i!: number;

  @Field(() => Int)
  j!: number;

  @Field(() => Int, { description: 'merged kernel size; 0 for the identity' })
  k!: number;

  @Field(() => Int)
  kh!: number;

  @Field(() => Int)
  kw!: number;

  @Field(() => [Int], { description: 'chain positions kept and merged' })
  kept!: number[];

  @Field(() => [Int], { description: 'chain positions replaced by the identity' })
  removed!: number[];

  @Field(() => [Int], { description: 'activation positions removed' })
  removedActivations!: number[];

  @Field(() => [Int], { description: 'residuals folded into the merged convolution' })
  foldedResiduals!: number[];

  @Field(() => Boolean)
  identity!: boolean;

  @Field(() => Boolean, { description: 'the merge is exact at every position (no padding effects at the borders)' })
  exactEverywhere!: boolean;

  @Field(() => Float, { description: "the latency table's entry, in wall-clock milliseconds of the network at the table's batch; 0 when it computes nothing" })
  latencyMs!: number;

  @Field(() => Boolean, { description: 'at least as slow as the original convolutions of its span: no optimal plan uses it, so it was not scored' })
  dominated!: boolean;

  @Field(() => LayerMergeImportanceType, { nullable: true, description: 'null for dominated candidates' })
  importance!: LayerMergeImportanceType | null;
}

@ObjectType('LayerMergeTablesResult', { description: "LayerMerge's latency and importance tables, as `strata tables` measures them" })
export class LayerMergeTablesResultType {
  kind!: 'tables';

  @Field(() => [String], { description: 'conv unit ids of the chain, in order' })
  chain!: string[];

  @Field(() => [String], { description: 'the residual skips over the chain: (start, end] and their kind' })
  residuals!: string[];

  @Field(() => Int)
  candidateCount!: number;

  @Field(() => Int, { description: 'candidates ruled out of every plan by their latency alone' })
  dominatedCount!: number;

  @Field(() => Int, { description: 'the batch size latencies were measured at' })
  batch!: number;

  @Field(() => Float, { description: 'the measured latency of the original model' })
  originalMs!: number;

  @Field(() => Float, { description: 'latency of the network outside the chain: with the original blocks it sums to originalMs' })
  restMs!: number;

  @Field(() => String)
  provider!: string;

  @Field(() => Int, { nullable: true })
  threads!: number | null;

  @Field(() => Int, { description: 'calibration samples the importances were measured on' })
  samples!: number;

  @Field(() => String, { description: 'cross-entropy (labelled data) or kl' })
  importanceBasis!: string;

  @Field(() => String)
  importanceDescription!: string;

  @Field(() => Float)
  baselineLoss!: number;

  @Field(() => Float, { nullable: true, description: 'ridge of the refits; null when none were computed' })
  ridge!: number | null;

  @Field(() => [LayerMergeCandidateType])
  candidates!: LayerMergeCandidateType[];

  @Field(() => GraphQLJSONObject, { description: 'the tables as `strata tables -o` writes them: `strata plan --method layermerge --tables` reads this' })
  document!: TablesDoc;
}

function importanceView(e: ImportanceEntry): LayerMergeImportanceType {
  return { deltaLoss: e.deltaLoss, importance: e.importance, fidelity: e.fidelity, refit: e.refit ?? null };
}

export function tablesView(r: TablesResult): LayerMergeTablesResultType {
  const t = r.tables;
  const dominated = new Set(t.importance.dominated);
  return {
    kind: 'tables',
    chain: t.chain.layers,
    residuals: t.chain.residuals,
    candidateCount: t.candidates.length,
    dominatedCount: dominated.size,
    batch: t.latency.batch,
    originalMs: t.latency.originalMs,
    restMs: t.latency.restMs,
    provider: t.latency.provider,
    threads: t.latency.threads,
    samples: t.importance.samples,
    importanceBasis: t.importance.basis,
    importanceDescription: t.importance.description,
    baselineLoss: t.importance.baselineLoss,
    ridge: t.importance.ridge,
    candidates: t.candidates.map((c) => {
      const entry = t.importance.entries[c.key];
      return {
        ...c,
        latencyMs: entryLatency(t.latency, c.key),
        dominated: dominated.has(c.key),
        importance: entry ? importanceView(entry) : null,
      };
    }),
    document: t,
  };
}
