import { unwrapResolverError } from '@apollo/server/errors';
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import { StrataError } from '../core/errors.js';
import { ErrorCode, JOB_ERROR_CODES } from './error-code.js';

const CODES = new Set<string>(Object.values(ErrorCode));

export interface ErrorFormatterOptions {
  /** stack traces and unexpected errors' own messages in responses */
  development: boolean;
  /** where unexpected errors go, with their stacks */
  logUnexpected?: (error: unknown) => void;
}

/**
 * Errors at the API boundary: a domain error keeps its message and gets its code from the one
 * enum; GraphQL's own failures (parse, validation, variables) keep theirs; anything else is an
 * INTERNAL_SERVER_ERROR that says nothing about the inside outside development.
 */
export function errorFormatter(options: ErrorFormatterOptions) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    let cause = unwrapResolverError(error);
    // a validation rule's error reaches here wrapped in Apollo's own validation error
    if (cause instanceof GraphQLError && cause.originalError instanceof GraphQLError) cause = cause.originalError;
    const stack = options.development && formatted.extensions?.stacktrace !== undefined ? { stacktrace: formatted.extensions.stacktrace } : {};
    const shaped = (message: string, code: ErrorCode, extra: Record<string, unknown> = {}): GraphQLFormattedError => ({
      message,
      ...(formatted.locations ? { locations: formatted.locations } : {}),
      ...(formatted.path ? { path: formatted.path } : {}),
      extensions: { code, ...extra, ...stack },
    });
    if (cause instanceof StrataError) {
      const parameter = typeof cause.details.parameter === 'string' ? { parameter: cause.details.parameter } : {};
      return shaped(cause.message, JOB_ERROR_CODES[cause.code], parameter);
    }
    const ownCode = cause instanceof GraphQLError ? cause.extensions.code : undefined;
    if (typeof ownCode === 'string' && CODES.has(ownCode)) return shaped(cause instanceof GraphQLError ? cause.message : formatted.message, ownCode as ErrorCode);
    const code = formatted.extensions?.code;
    if (typeof code === 'string' && CODES.has(code) && code !== ErrorCode.INTERNAL_SERVER_ERROR) return shaped(formatted.message, code as ErrorCode);
    if (code === 'OPERATION_RESOLUTION_FAILURE') return shaped(formatted.message, ErrorCode.BAD_REQUEST);
    options.logUnexpected?.(cause);
    return shaped(options.development ? formatted.message : 'internal server error', ErrorCode.INTERNAL_SERVER_ERROR);
  };
}

