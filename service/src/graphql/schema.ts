import 'reflect-metadata';
import { lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { buildSchemaSync, type PubSub } from 'type-graphql';
import { AnalysisResolver } from './analysis.resolver.js';
import type { StrataContext } from './context.js';
import { DatasetResolver } from './dataset.resolver.js';
import { JobResolver } from './job.resolver.js';
import { ModelResolver } from './model.resolver.js';

// subscriptions here bring their own subscribe functions (JobService.watch); type-graphql
// still asks for a pub/sub, which nothing uses
const UNUSED_PUBSUB: PubSub = {
  publish: () => undefined,
  subscribe: () => {
    throw new Error('subscriptions in this schema use their own subscribe functions');
  },
};

let built: GraphQLSchema | undefined;

/** The API's schema; built once per process, since resolvers find their services through the context. */
export function strataSchema(): GraphQLSchema {
  built ??= buildSchemaSync({
    resolvers: [ModelResolver, DatasetResolver, JobResolver, AnalysisResolver],
    container: ({ context }) => (context as StrataContext).container,
    pubSub: UNUSED_PUBSUB,
    validate: false,
  });
  return built;
}

const HEADER = [
  '# Generated from the resolvers in service/src/graphql by `npm run schema`; do not edit.',
  '# A test fails when this file and the code disagree.',
].join('\n');

/** schema.graphql as committed: sorted, so the file changes only when the API does. */
export function schemaFileText(schema: GraphQLSchema = strataSchema()): string {
  return `${HEADER}\n\n${printSchema(lexicographicSortSchema(schema))}\n`;
}
