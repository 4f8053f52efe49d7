import 'reflect-metadata';
import { Arg, ID, Int, Mutation, Query, Resolver, Root, Subscription } from 'type-graphql';
import { InvalidArgumentError } from '../core/errors.js';
import type { JobKind, JobRecord, JobStatus } from '../jobs/job.js';
import type { Services, StrataContext } from './context.js';
import { JobKindEnum, JobStatusEnum } from './enums.type.js';
import { JobType, jobView } from './job.type.js';

const MAX_LIST = 200;

@Resolver(() => JobType)
export class JobResolver {
  constructor(private readonly services: Services) {}

  @Query(() => JobType, { description: 'NOT_FOUND when there is none' })
  job(@Arg('id', () => ID) id: string): JobType {
    return jobView(this.services.jobs.get(id));
  }

  @Query(() => [JobType], { description: 'newest first' })
  jobs(
    @Arg('status', () => JobStatusEnum, { nullable: true }) status?: JobStatus | null,
    @Arg('kind', () => JobKindEnum, { nullable: true }) kind?: JobKind | null,
    @Arg('limit', () => Int, { defaultValue: 50 }) limit = 50,
  ): JobType[] {
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST) throw new InvalidArgumentError('limit', `must be from 1 to ${MAX_LIST}, got ${limit}`);
    return this.services.jobs.list({ ...(status ? { status } : {}), ...(kind ? { kind } : {}), limit }).map(jobView);
  }

  @Mutation(() => JobType, { description: 'stops a queued or running job (it ends CANCELLED); a finished job is returned unchanged' })
  cancelJob(@Arg('id', () => ID) id: string): JobType {
    return jobView(this.services.jobs.cancel(id));
  }

  @Subscription(() => JobType, {
    description: 'the job now, then on every change of status or progress; completes when the job has finished',
    subscribe: ({ args, context }) => (context as StrataContext).services.jobs.watch(String(args.id)),
  })
  jobUpdated(@Root() job: JobRecord, @Arg('id', () => ID) _id: string): JobType {
    return jobView(job);
  }
}
