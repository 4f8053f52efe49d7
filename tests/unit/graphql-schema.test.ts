import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isEnumType, type GraphQLObjectType } from 'graphql';
import { schemaFileText, strataSchema } from '../../service/src/graphql/schema.js';
import { ROOT } from '../helpers/paths.js';

test('schema.graphql is what the resolvers generate (run `npm run schema` after changing the API)', () => {
  const committed = readFileSync(join(ROOT, 'schema.graphql'), 'utf8');
  assert.equal(committed, schemaFileText(), 'schema.graphql is out of date: run `npm run schema` and commit the result');
});

test('schema.graphql starts with its generated-file header and is sorted', () => {
  const text = schemaFileText();
  assert.match(text, /^# Generated from the resolvers .* by `npm run schema`; do not edit\.\n/);
  const typeNames = [...text.matchAll(/^(?:type|input|enum|union|scalar) (\w+)/gm)].map((m) => m[1]!);
  assert.deepEqual(typeNames, [...typeNames].sort());
});

test('the plan method enum offers what is built (SGLP, LAYERMERGE) and nothing more', () => {
  const method = strataSchema().getType('PlanMethod');
  assert.ok(method && isEnumType(method));
  assert.deepEqual(
    method.getValues().map((v) => v.name),
    ['SGLP', 'LAYERMERGE'],
  );
  const variant = strataSchema().getType('LayerMergeVariant');
  assert.ok(variant && isEnumType(variant));
  assert.deepEqual(
    variant.getValues().map((v) => v.name),
    ['LAYERMERGE', 'LAYER_ONLY', 'MERGE_ONLY'],
  );
});

test('every operation the issue names is in the schema', () => {
  const s = strataSchema();
  const fields = (t: 'Query' | 'Mutation' | 'Subscription') => Object.keys((s.getType(t) as GraphQLObjectType).getFields());
  for (const q of ['models', 'model', 'datasets', 'dataset', 'job', 'jobs', 'structure', 'similarity', 'segments', 'layerMergeTables', 'plan', 'tradeoff']) assert.ok(fields('Query').includes(q), q);
  for (const m of ['registerModel', 'registerModelFile', 'registerDataset', 'registerDatasetFile', 'compress', 'cancelJob']) assert.ok(fields('Mutation').includes(m), m);
  assert.deepEqual(fields('Subscription'), ['jobUpdated']);
});
