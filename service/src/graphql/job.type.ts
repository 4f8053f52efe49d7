import 'reflect-metadata';
import { createUnionType, Field, Float, GraphQLISODateTime, ID, ObjectType } from 'type-graphql';
import { UnreachableCaseError } from '../core/errors.js';
import type { JobRecord, JobResult } from '../jobs/job.js';
import { CompressResultType, compressView, TradeoffResultType, tradeoffView } from './compress.type.js';
import { JobKindEnum, JobStatusEnum } from './enums.type.js';
import { ErrorCode, JOB_ERROR_CODES } from './error-code.js';
import { PlanResultType, planView } from './plan.type.js';
import { SegmentsResultType, segmentsView, SimilarityResultType, similarityView } from './similarity.type.js';
import { StructureResultType, structureView } from './structure.type.js';
import { LayerMergeTablesResultType, tablesView } from './tables.type.js';

@ObjectType('JobProgress')
export class JobProgressType {
  @Field(() => String)
  phase!: string;

  @Field(() => Float, { nullable: true, description: '0–1 within the phase, when the phase can tell' })
  fraction!: number | null;

  @Field(() => String, { nullable: true })
  message!: string | null;
}

@ObjectType('JobError')
export class JobErrorType {
  @Field(() => ErrorCode)
  code!: ErrorCode;

  @Field(() => String)
  message!: string;
}

type ResultView =
  | StructureResultType
  | SimilarityResultType
  | SegmentsResultType
  | LayerMergeTablesResultType
  | PlanResultType
  | TradeoffResultType
  | CompressResultType;

export const JobResultUnion = createUnionType({
  name: 'JobResult',
  description: "a finished job's result; its type follows the job's kind",
  types: () =>
    [StructureResultType, SimilarityResultType, SegmentsResultType, LayerMergeTablesResultType, PlanResultType, TradeoffResultType, CompressResultType] as const,
  resolveType: (value: ResultView) => {
    switch (value.kind) {
      case 'structure':
        return StructureResultType;
      case 'similarity':
        return SimilarityResultType;
      case 'segments':
        return SegmentsResultType;
      case 'tables':
        return LayerMergeTablesResultType;
      case 'plan':
        return PlanResultType;
      case 'tradeoff':
        return TradeoffResultType;
      case 'compress':
        return CompressResultType;
      default:
        throw new UnreachableCaseError(value);
    }
  },
});

@ObjectType('Job', { description: 'work that takes longer than a request: poll job(id) or subscribe to jobUpdated(id)' })
export class JobType {
  @Field(() => ID)
  id!: string;

  @Field(() => JobKindEnum)
  kind!: string;

  @Field(() => JobStatusEnum)
  status!: string;

  @Field(() => GraphQLISODateTime)
  createdAt!: Date;

  @Field(() => GraphQLISODateTime, { nullable: true })
  startedAt!: Date | null;

  @Field(() => GraphQLISODateTime, { nullable: true })
  finishedAt!: Date | null;

  @Field(() => JobProgressType, { nullable: true })
  progress!: JobProgressType | null;

  @Field(() => JobErrorType, { nullable: true, description: 'set when the job failed' })
  error!: JobErrorType | null;

  @Field(() => JobResultUnion, { nullable: true, description: 'set when the job succeeded' })
  result!: ResultView | null;
}

function resultView(r: JobResult): ResultView {
  switch (r.kind) {
    case 'structure':
      return structureView(r);
    case 'similarity':
      return similarityView(r);
    case 'segments':
      return segmentsView(r);
    case 'tables':
      return tablesView(r);
    case 'plan':
      return planView(r);
    case 'tradeoff':
      return tradeoffView(r);
    case 'compress':
      return compressView(r);
    default:
      throw new UnreachableCaseError(r);
  }
}

/**
 * Views already built, by record. A job record is never changed in place: every change of state
 * or progress is a new object (JobService), so a view found here is the view of that record as it
 * is, and a changed job misses. Weak: records that are replaced take their views with them.
 */
const views = new WeakMap<JobRecord, JobType>();

/** The GraphQL view of a job; a finished plan polled by every pipeline run is built once, not per request. */
export function jobView(job: JobRecord): JobType {
  let view = views.get(job);
  if (view === undefined) {
    view = buildJobView(job);
    views.set(job, view);
  }
  return view;
}

function buildJobView(job: JobRecord): JobType {
  const s = job.state;
  const base = { id: job.id, kind: job.spec.kind, status: s.status, createdAt: new Date(job.createdAt), progress: job.progress };
  const date = (t: string | null) => (t === null ? null : new Date(t));
  switch (s.status) {
    case 'queued':
      return { ...base, startedAt: null, finishedAt: null, error: null, result: null };
    case 'running':
      return { ...base, startedAt: date(s.startedAt), finishedAt: null, error: null, result: null };
    case 'succeeded':
      return { ...base, startedAt: date(s.startedAt), finishedAt: date(s.finishedAt), error: null, result: resultView(s.result) };
    case 'failed':
      return {
        ...base,
        startedAt: date(s.startedAt),
        finishedAt: date(s.finishedAt),
        error: { code: JOB_ERROR_CODES[s.error.code], message: s.error.message },
        result: null,
      };
    case 'cancelled':
      return { ...base, startedAt: date(s.startedAt), finishedAt: date(s.finishedAt), error: null, result: null };
    default:
      throw new UnreachableCaseError(s);
  }
}
