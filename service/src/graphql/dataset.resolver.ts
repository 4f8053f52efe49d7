import 'reflect-metadata';
import { Arg, ID, Mutation, Query, Resolver } from 'type-graphql';
import type { Services } from './context.js';
import { DatasetType, datasetView } from './dataset.type.js';

@Resolver(() => DatasetType)
export class DatasetResolver {
  constructor(private readonly services: Services) {}

  @Query(() => [DatasetType], { description: 'registered data sets, oldest first' })
  datasets(): DatasetType[] {
    return this.services.registry.datasets().map(datasetView);
  }

  @Query(() => DatasetType, { description: 'NOT_FOUND when there is none' })
  dataset(@Arg('id', () => ID) id: string): DatasetType {
    return datasetView(this.services.registry.dataset(id));
  }

  @Mutation(() => DatasetType, { description: 'registers a file uploaded to /upload as a data set once its arrays parse (BAD_DATASET otherwise)' })
  async registerDataset(@Arg('sha256', () => String) sha256: string, @Arg('name', () => String) name: string): Promise<DatasetType> {
    return datasetView(await this.services.registry.registerDataset(sha256, name));
  }

  @Mutation(() => DatasetType, { description: 'registers a data set file on the server, inside a STRATA_FILE_ROOTS folder' })
  async registerDatasetFile(@Arg('path', () => String) path: string, @Arg('name', () => String, { nullable: true }) name?: string | null): Promise<DatasetType> {
    return datasetView(await this.services.registry.registerDatasetFile(path, name ?? undefined));
  }
}
