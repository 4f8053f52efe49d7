import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse, specifiedRules, validate } from 'graphql';
import { queryLimitsRule } from '../../service/src/graphql/query-limits.js';
import { strataSchema } from '../../service/src/graphql/schema.js';

function errors(query: string, maxDepth: number, maxFields: number) {
  return validate(strataSchema(), parse(query), [...specifiedRules, queryLimitsRule({ maxDepth, maxFields })]);
}

const deep = '{ jobs { result { ... on TradeoffResult { points { plan { budget { kind } } } } } } }';

test('an operation within both limits passes', () => {
  assert.deepEqual(errors(deep, 6, 10), []);
});

test('BAD CALL - nesting deeper than the limit is refused with QUERY_TOO_COMPLEX and the depth', () => {
  const e = errors(deep, 5, 100);
  assert.equal(e.length, 1);
  assert.equal(e[0]!.extensions.code, 'QUERY_TOO_COMPLEX');
  assert.match(e[0]!.message, /nests fields 6 deep; at most 5/);
});

test('BAD CALL - repeating a field under many aliases is refused by the field count', () => {
  const query = `{ ${Array.from({ length: 60 }, (_, i) => `a${i}: models { id }`).join(' ')} }`;
  const e = errors(query, 10, 100);
  assert.equal(e.length, 1);
  assert.equal(e[0]!.extensions.code, 'QUERY_TOO_COMPLEX');
  assert.match(e[0]!.message, /more than 100 fields/);
});

test('BAD CALL - fragments spread inside fragments are counted expanded, and counting stops early', () => {
  // each level doubles the fields: 2^30 if expanded in full
  const levels = 30;
  const frags = Array.from({ length: levels }, (_, i) =>
    i === levels - 1 ? `fragment F${i} on Model { id }` : `fragment F${i} on Model { ...F${i + 1} x${i}: name ...F${i + 1} }`,
  );
  const started = Date.now();
  const e = errors(`{ models { ...F0 } } ${frags.join(' ')}`, 10, 1000);
  assert.ok(Date.now() - started < 2000, 'validation stays fast');
  assert.ok(e.some((x) => x.extensions.code === 'QUERY_TOO_COMPLEX'));
});

test('introspection fields are not counted against the limits', () => {
  assert.deepEqual(errors('{ __schema { types { name fields { name type { name ofType { name ofType { name } } } } } } }', 2, 5), []);
});
