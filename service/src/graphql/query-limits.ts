import {
  GraphQLError,
  Kind,
  type ASTVisitor,
  type FragmentDefinitionNode,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValidationContext,
} from 'graphql';
import { ErrorCode } from './error-code.js';

export interface QueryLimits {
  /** deepest nesting of fields */
  maxDepth: number;
  /** most fields in one operation, counted after fragments are expanded */
  maxFields: number;
}

/**
 * A validation rule bounding what one operation may ask for, so a client cannot make the service
 * walk an enormous or deeply nested selection (aliases repeated thousands of times, fragments
 * spread inside fragments). Introspection fields are not counted: the schema bounds them.
 */
export function queryLimitsRule(limits: QueryLimits) {
  return (context: ValidationContext): ASTVisitor => {
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const d of context.getDocument().definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
    return {
      OperationDefinition(op: OperationDefinitionNode) {
        const tally = { fields: 0, depth: 0 };
        walk(op.selectionSet, 1, new Set(), fragments, tally, limits);
        if (tally.depth > limits.maxDepth) {
          context.reportError(
            new GraphQLError(`the operation nests fields ${tally.depth} deep; at most ${limits.maxDepth} are allowed`, {
              nodes: [op],
              extensions: { code: ErrorCode.QUERY_TOO_COMPLEX },
            }),
          );
        }
        if (tally.fields > limits.maxFields) {
          context.reportError(
            new GraphQLError(`the operation selects more than ${limits.maxFields} fields (fragments expanded); ask for less per request`, {
              nodes: [op],
              extensions: { code: ErrorCode.QUERY_TOO_COMPLEX },
            }),
          );
        }
      },
    };
  };
}

function walk(
  set: SelectionSetNode,
  depth: number,
  inFragments: Set<string>,
  fragments: Map<string, FragmentDefinitionNode>,
  tally: { fields: number; depth: number },
  limits: QueryLimits,
): void {
  for (const s of set.selections) {
    // past the limit the answer is known; fragments spread in fragments could make the rest exponential
    if (tally.fields > limits.maxFields) return;
    switch (s.kind) {
      case Kind.FIELD:
        if (s.name.value.startsWith('__')) break;
        tally.fields++;
        tally.depth = Math.max(tally.depth, depth);
        if (s.selectionSet) walk(s.selectionSet, depth + 1, inFragments, fragments, tally, limits);
        break;
      case Kind.INLINE_FRAGMENT:
        walk(s.selectionSet, depth, inFragments, fragments, tally, limits);
        break;
      case Kind.FRAGMENT_SPREAD: {
        const name = s.name.value;
        const f = fragments.get(name);
        // a cycle is reported by graphql's own NoFragmentCycles rule
        if (!f || inFragments.has(name)) break;
        inFragments.add(name);
        walk(f.selectionSet, depth, inFragments, fragments, tally, limits);
        inFragments.delete(name);
        break;
      }
    }
  }
}
