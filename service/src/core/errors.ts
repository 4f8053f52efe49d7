/**
 * Domain errors. Every failure strata reports on purpose is a StrataError with a code from
 * one enum, so the CLI can print one line and the GraphQL layer can map it to an error code
 * without string matching.
 */
export type ErrorCode =
  | 'BAD_USER_INPUT'
  | 'INVALID_MODEL'
  | 'UNSUPPORTED_MODEL'
  | 'BAD_DATASET'
  | 'BUDGET_INFEASIBLE'
  | 'NOT_FOUND'
  | 'PAYLOAD_TOO_LARGE'
  | 'RUNTIME_UNAVAILABLE';

export class StrataError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }
}

/** The bytes are not a readable ONNX model (truncated, not protobuf, not a ModelProto). */
export class InvalidModelError extends StrataError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('INVALID_MODEL', message, details);
  }
}

/** A readable model that uses something strata does not handle (operators, data types, layout). */
export class UnsupportedModelError extends StrataError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('UNSUPPORTED_MODEL', message, details);
  }
}

/** A data set whose arrays do not match what the model expects. */
export class DatasetError extends StrataError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('BAD_DATASET', message, details);
  }
}

/** An argument that is out of range or malformed; `parameter` names it. */
export class InvalidArgumentError extends StrataError {
  constructor(parameter: string, message: string, details: Record<string, unknown> = {}) {
    super('BAD_USER_INPUT', `${parameter}: ${message}`, { parameter, ...details });
  }
}

/** A budget no plan can meet; `minimum` is the smallest value reachable, in the budget's unit. */
export class BudgetInfeasibleError extends StrataError {
  constructor(message: string, details: { minimum: number; unit: string } & Record<string, unknown>) {
    super('BUDGET_INFEASIBLE', message, details);
  }
}

/** Closes a switch over a discriminated union: a new case that is not handled fails to compile. */
export class UnreachableCaseError extends Error {
  constructor(value: never) {
    super(`unreachable case: ${JSON.stringify(value)}`);
  }
}
