import { registerEnumType } from 'type-graphql';
import type { ErrorCode as DomainErrorCode } from '../core/errors.js';
import type { JobErrorCode } from '../jobs/job.js';

/**
 * Every `extensions.code` the API sends, and the code of a failed job: one list, so a client can
 * switch over it.
 */
export enum ErrorCode {
  BAD_USER_INPUT = 'BAD_USER_INPUT',
  NOT_FOUND = 'NOT_FOUND',
  INVALID_MODEL = 'INVALID_MODEL',
  UNSUPPORTED_MODEL = 'UNSUPPORTED_MODEL',
  BAD_DATASET = 'BAD_DATASET',
  BUDGET_INFEASIBLE = 'BUDGET_INFEASIBLE',
  PAYLOAD_TOO_LARGE = 'PAYLOAD_TOO_LARGE',
  RUNTIME_UNAVAILABLE = 'RUNTIME_UNAVAILABLE',
  UNAUTHENTICATED = 'UNAUTHENTICATED',
  QUERY_TOO_COMPLEX = 'QUERY_TOO_COMPLEX',
  JOB_TIMEOUT = 'JOB_TIMEOUT',
  WORKER_CRASHED = 'WORKER_CRASHED',
  INTERRUPTED = 'INTERRUPTED',
  GRAPHQL_PARSE_FAILED = 'GRAPHQL_PARSE_FAILED',
  GRAPHQL_VALIDATION_FAILED = 'GRAPHQL_VALIDATION_FAILED',
  BAD_REQUEST = 'BAD_REQUEST',
  INTERNAL_SERVER_ERROR = 'INTERNAL_SERVER_ERROR',
}

registerEnumType(ErrorCode, {
  name: 'ErrorCode',
  description: 'Why a request or a job failed (the `extensions.code` of errors, the `code` of a failed job)',
});

/** Domain codes and job codes as the API spells them; a new code that is not mapped fails to compile. */
export const JOB_ERROR_CODES: Readonly<Record<JobErrorCode, ErrorCode>> = {
  BAD_USER_INPUT: ErrorCode.BAD_USER_INPUT,
  INVALID_MODEL: ErrorCode.INVALID_MODEL,
  UNSUPPORTED_MODEL: ErrorCode.UNSUPPORTED_MODEL,
  BAD_DATASET: ErrorCode.BAD_DATASET,
  BUDGET_INFEASIBLE: ErrorCode.BUDGET_INFEASIBLE,
  NOT_FOUND: ErrorCode.NOT_FOUND,
  PAYLOAD_TOO_LARGE: ErrorCode.PAYLOAD_TOO_LARGE,
  RUNTIME_UNAVAILABLE: ErrorCode.RUNTIME_UNAVAILABLE,
  JOB_TIMEOUT: ErrorCode.JOB_TIMEOUT,
  WORKER_CRASHED: ErrorCode.WORKER_CRASHED,
  INTERRUPTED: ErrorCode.INTERRUPTED,
  INTERNAL_SERVER_ERROR: ErrorCode.INTERNAL_SERVER_ERROR,
} satisfies Record<DomainErrorCode, ErrorCode> & Record<JobErrorCode, ErrorCode>;

/** HTTP statuses for the codes that answer a plain HTTP route (uploads, downloads). */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case ErrorCode.BAD_USER_INPUT:
    case ErrorCode.INVALID_MODEL:
    case ErrorCode.UNSUPPORTED_MODEL:
    case ErrorCode.BAD_DATASET:
    case ErrorCode.BUDGET_INFEASIBLE:
    case ErrorCode.GRAPHQL_PARSE_FAILED:
    case ErrorCode.GRAPHQL_VALIDATION_FAILED:
    case ErrorCode.QUERY_TOO_COMPLEX:
    case ErrorCode.BAD_REQUEST:
      return 400;
    case ErrorCode.UNAUTHENTICATED:
      return 401;
    case ErrorCode.NOT_FOUND:
      return 404;
    case ErrorCode.PAYLOAD_TOO_LARGE:
      return 413;
    case ErrorCode.RUNTIME_UNAVAILABLE:
      return 503;
    case ErrorCode.JOB_TIMEOUT:
    case ErrorCode.WORKER_CRASHED:
    case ErrorCode.INTERRUPTED:
    case ErrorCode.INTERNAL_SERVER_ERROR:
      return 500;
  }
}
