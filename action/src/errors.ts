/**
 * Every way the action can fail on purpose. Each message is one line that names the problem,
 * because the runner shows it as the step's error annotation.
 */

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

export class ActionError extends Error {
  constructor(message: string) {
    super(oneLine(message));
    this.name = new.target.name;
  }
}

/** An input is missing or does not parse. */
export class InputError extends ActionError {
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(`input \`${input}\`: ${reason}`);
  }
}

/** No HTTP answer from the strata service at all (DNS, refused connection, TLS, timeout). */
export class ServiceUnreachableError extends ActionError {
  constructor(
    readonly url: string,
    readonly operation: string,
    cause: string,
  ) {
    super(`the strata service at ${url} is unreachable (${cause}) while ${operation}`);
  }
}

/** The service answered 401: the token is missing or wrong. */
export class ServiceAuthError extends ActionError {
  constructor(readonly url: string) {
    super(`the strata service at ${url} refused the token (401 UNAUTHENTICATED): check the \`token\` input`);
  }
}

/** The service answered a request with an error (a GraphQL error code or a failed HTTP route). */
export class ServiceRequestError extends ActionError {
  constructor(
    readonly operation: string,
    readonly code: string,
    detail: string,
  ) {
    super(`${operation} failed (${code}): ${detail}`);
  }
}

/** A job ended FAILED or CANCELLED on the service. */
export class JobFailedError extends ActionError {
  constructor(
    readonly jobId: string,
    readonly status: string,
    readonly code: string | null,
    detail: string,
  ) {
    super(`strata job ${jobId} ${status.toLowerCase()}${code ? ` (${code})` : ''}: ${detail}`);
  }
}

/** The GitHub REST API refused or failed a request. */
export class GitHubApiError extends ActionError {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    detail: string,
  ) {
    super(`GitHub API ${method} ${path} answered ${status}: ${detail}`);
  }
}
