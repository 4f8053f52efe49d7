import 'reflect-metadata';
import { Arg, ID, Mutation, Query, Resolver } from 'type-graphql';
import type { Services } from './context.js';
import { ModelType, modelView } from './model.type.js';

@Resolver(() => ModelType)
export class ModelResolver {
  constructor(private readonly services: Services) {}

  @Query(() => [ModelType], { description: 'registered models, oldest first' })
  models(): ModelType[] {
    return this.services.registry.models().map(modelView);
  }

  @Query(() => ModelType, { description: 'NOT_FOUND when there is none' })
  model(@Arg('id', () => ID) id: string): ModelType {
    return modelView(this.services.registry.model(id));
  }

  @Mutation(() => ModelType, {
    description: 'registers a file uploaded to /upload as a model once it decodes as ONNX (INVALID_MODEL, UNSUPPORTED_MODEL otherwise)',
  })
  registerModel(@Arg('sha256', () => String) sha256: string, @Arg('name', () => String) name: string): ModelType {
    return modelView(this.services.registry.registerModel(sha256, name));
  }

  @Mutation(() => ModelType, { description: 'registers a model file on the server, inside a STRATA_FILE_ROOTS folder' })
  async registerModelFile(@Arg('path', () => String) path: string, @Arg('name', () => String, { nullable: true }) name?: string | null): Promise<ModelType> {
    return modelView(await this.services.registry.registerModelFile(path, name ?? undefined));
  }
}
