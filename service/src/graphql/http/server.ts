import { HeaderMap } from '@apollo/server';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse, validate, type ExecutionArgs, type GraphQLError } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { StrataError } from '../../core/errors.js';
import { PayloadTooLargeError, SHA256_PATTERN } from '../../store/artifact-store.js';
import type { StrataApp } from '../app.js';
import { ErrorCode, httpStatusOf, JOB_ERROR_CODES } from '../error-code.js';
import { errorFormatter } from '../errors.js';
import { strataSchema } from '../schema.js';
import { answer } from './answer.js';
import { bearerChecker } from './auth.js';
import { bodyChunks } from './body.js';

const MAX_GRAPHQL_BODY = 1024 * 1024;

export interface HttpServer {
  readonly server: Server;
  /** http://host:port */
  readonly url: string;
  readonly port: number;
  /** Stops accepting, waits for requests in flight (up to `graceMs`), then drops what is left. */
  close(graceMs: number): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The HTTP front: GraphQL (POST/GET, and graphql-ws subscriptions on the same path), uploads that
 * stream into the artifact store, artifact downloads, health, readiness and metrics.
 */
export async function startHttpServer(app: StrataApp): Promise<HttpServer> {
  const { config } = app;
  let inFlight = 0;
  let draining = false;
  let drained: (() => void) | undefined;

  const authorized: (header: string | undefined) => boolean = config.token === null ? () => true : bearerChecker(config.token);
  // Requests that sent `Expect: 100-continue` and wait for it before sending their body. They are
  // told to go on only where a handler starts reading the body: every refusal before that point
  // (token, type, declared length) reaches the client before it has sent a byte.
  const awaitingContinue = new WeakSet<IncomingMessage>();
  const bodyOf = (req: IncomingMessage, res: ServerResponse) => {
    if (awaitingContinue.delete(req)) res.writeContinue();
    return bodyChunks(req);
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint();
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = routeOf(url.pathname);
    inFlight++;
    res.on('close', () => {
      inFlight--;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      app.metrics.request(req.method ?? 'GET', route, res.statusCode, seconds);
      const fields = { method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1e4) / 10 };
      if (route === '/healthz' || route === '/readyz' || route === '/metrics') app.log.debug(fields, 'request');
      else app.log.info(fields, 'request');
      if (draining && inFlight === 0) drained?.();
    });
    if (draining) res.setHeader('Connection', 'close');
    handle(req, res, url, route).catch((e: unknown) => {
      if (e instanceof HttpError) return sendError(req, res, e.status, e.code, e.message);
      if (e instanceof StrataError) return sendError(req, res, httpStatusOf(JOB_ERROR_CODES[e.code]), JOB_ERROR_CODES[e.code], e.message);
      app.log.error({ err: e, route }, 'unexpected error in a request');
      sendError(req, res, 500, ErrorCode.INTERNAL_SERVER_ERROR, 'internal server error');
    });
  };
  const server = createServer(onRequest);
  // Without a listener Node answers 100 Continue at once, and a client then sends its whole body
  // only to be refused.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    awaitingContinue.add(req);
    onRequest(req, res);
  });
  // a large upload on a slow link takes minutes, more than Node's default allows a request
  server.requestTimeout = 60 * 60_000;
  server.headersTimeout = 60_000;

  async function handle(req: IncomingMessage, res: ServerResponse, url: URL, route: string): Promise<void> {
    const method = req.method ?? 'GET';
    switch (route) {
      case '/healthz':
        return answer(req, res, 200, { status: 'ok' });
      case '/readyz':
        return draining || app.closing ? answer(req, res, 503, { status: 'shutting down' }) : answer(req, res, 200, { status: 'ready' });
      case '/metrics': {
        const m = await app.metrics.text();
        res.writeHead(200, { 'Content-Type': m.contentType });
        res.end(m.body);
        return;
      }
      case '/graphql':
        if (!authorized(req.headers.authorization)) return unauthenticated(req, res, true);
        return graphql(req, res, url);
      case '/upload':
        if (method !== 'POST') throw new HttpError(405, ErrorCode.BAD_REQUEST, 'POST the file as the request body');
        if (!authorized(req.headers.authorization)) return unauthenticated(req, res, false);
        return upload(req, res);
      case '/artifacts':
        if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, ErrorCode.BAD_REQUEST, 'GET /artifacts/<sha256>');
        if (!authorized(req.headers.authorization)) return unauthenticated(req, res, false);
        return download(res, url.pathname.slice('/artifacts/'.length), method === 'HEAD');
      default:
        throw new HttpError(404, ErrorCode.NOT_FOUND, `no route ${url.pathname}; the API is at /graphql`);
    }
  }

  async function graphql(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const headers = new HeaderMap();
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
    let body: unknown;
    if (req.method === 'POST') {
      if (Number(req.headers['content-length']) > MAX_GRAPHQL_BODY) throw graphqlBodyTooLarge();
      const text = await readText(bodyOf(req, res));
      const type = headers.get('content-type') ?? '';
      if (type.startsWith('application/json')) {
        try {
          body = text === '' ? undefined : JSON.parse(text);
        } catch {
          return sendGraphQLError(req, res, 400, ErrorCode.BAD_REQUEST, 'the request body is not valid JSON');
        }
      } else body = text;
    }
    const r = await app.apollo.executeHTTPGraphQLRequest({
      httpGraphQLRequest: { method: req.method ?? 'GET', headers, search: url.search, body },
      context: async () => app.context(),
    });
    res.statusCode = r.status ?? 200;
    for (const [k, v] of r.headers) res.setHeader(k, v);
    if (r.body.kind === 'complete') {
      res.end(r.body.string);
      return;
    }
    for await (const chunk of r.body.asyncIterator) res.write(chunk);
    res.end();
  }

  async function upload(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    // a browser can send forms cross-site without asking; it cannot send this type without a preflight
    if (type !== 'application/octet-stream') {
      throw new HttpError(415, ErrorCode.BAD_REQUEST, 'send the file as the raw body with Content-Type: application/octet-stream');
    }
    // refused on the declared length before a byte of the body is read (or, with Expect:
    // 100-continue, sent); a chunked body is measured as it streams in, and ingest() removes the
    // part it wrote when the limit is crossed. Either way answer() reads the rest of the body away
    // so that the client gets the 413.
    if (Number(req.headers['content-length']) > config.maxUploadBytes) throw new PayloadTooLargeError(config.maxUploadBytes);
    const stored = await app.artifacts.ingest(bodyOf(req, res), config.maxUploadBytes);
    app.log.info({ sha256: stored.sha256, size: stored.size }, 'upload stored');
    answer(req, res, 201, stored);
  }

  async function download(res: ServerResponse, sha256: string, headOnly: boolean): Promise<void> {
    if (!SHA256_PATTERN.test(sha256)) throw new HttpError(404, ErrorCode.NOT_FOUND, 'artifacts are addressed by their sha256 (64 lowercase hex digits)');
    const size = app.artifacts.size(sha256);
    if (size === null) throw new HttpError(404, ErrorCode.NOT_FOUND, `no artifact ${sha256}`);
    res.writeHead(200, {
      'Content-Type': 'application/octet-stream',
      'Content-Length': size,
      'Content-Disposition': `attachment; filename="${sha256}"`,
      ETag: `"${sha256}"`,
      'Cache-Control': 'private, max-age=31536000, immutable',
    });
    if (headOnly) {
      res.end();
      return;
    }
    const stream = app.artifacts.read(sha256);
    await new Promise<void>((resolve) => {
      stream.on('error', (e) => {
        app.log.error({ err: e, sha256 }, 'artifact read failed');
        res.destroy();
        resolve();
      });
      res.on('close', () => {
        stream.destroy();
        resolve();
      });
      stream.pipe(res);
    });
  }

  const wss = new WebSocketServer({ server, path: '/graphql' });
  const format = errorFormatter({ development: config.development, logUnexpected: (e) => app.log.error({ err: e }, 'unexpected error in a subscription') });
  const formatAll = (errors: readonly GraphQLError[]) => errors.map((e) => format(e.toJSON(), e));
  useServer(
    {
      schema: strataSchema(),
      context: () => app.context(),
      onConnect: (ctx) => {
        const params = ctx.connectionParams as { authorization?: unknown; Authorization?: unknown } | undefined;
        const fromParams = params?.authorization ?? params?.Authorization;
        return authorized(typeof fromParams === 'string' ? fromParams : ctx.extra.request.headers.authorization);
      },
      onSubscribe: (_ctx, _id, payload): ExecutionArgs | readonly GraphQLError[] => {
        const schema = strataSchema();
        let document;
        try {
          document = parse(payload.query);
        } catch (e) {
          return [e as GraphQLError];
        }
        const errors = validate(schema, document, app.validationRules());
        if (errors.length > 0) return errors;
        return {
          schema,
          document,
          variableValues: payload.variables ?? null,
          operationName: payload.operationName ?? null,
          contextValue: app.context(),
        };
      },
      onError: (_ctx, _id, _payload, errors) => formatAll(errors),
      onNext: (_ctx, _id, _payload, _args, result) => (result.errors ? { ...result, errors: formatAll(result.errors) } : undefined),
    },
    wss,
  );

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const hostText = config.host.includes(':') && !config.host.startsWith('[') ? `[${config.host}]` : config.host;

  return {
    server,
    url: `http://${hostText}:${port}`,
    port,
    close: async (graceMs) => {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const client of wss.clients) client.close(1001, 'the service is shutting down');
      wss.close();
      server.closeIdleConnections();
      if (inFlight > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise<void>((r) => (drained = r)), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
        clearTimeout(timer);
      }
      server.closeAllConnections();
      for (const client of wss.clients) client.terminate();
      await closed;
    },
  };

  function unauthenticated(req: IncomingMessage, res: ServerResponse, asGraphQL: boolean): void {
    res.setHeader('WWW-Authenticate', 'Bearer realm="strata"');
    const message = 'missing or wrong bearer token: send "Authorization: Bearer <STRATA_TOKEN>"';
    if (asGraphQL) sendGraphQLError(req, res, 401, ErrorCode.UNAUTHENTICATED, message);
    else sendError(req, res, 401, ErrorCode.UNAUTHENTICATED, message);
  }
}

function routeOf(pathname: string): string {
  if (pathname.startsWith('/artifacts/')) return '/artifacts';
  return ['/graphql', '/upload', '/healthz', '/readyz', '/metrics'].includes(pathname) ? pathname : 'other';
}

function graphqlBodyTooLarge(): HttpError {
  return new HttpError(413, ErrorCode.PAYLOAD_TOO_LARGE, `a GraphQL request body may be at most ${MAX_GRAPHQL_BODY} bytes`);
}

async function readText(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const c of chunks) {
    size += c.byteLength;
    if (size > MAX_GRAPHQL_BODY) throw graphqlBodyTooLarge();
    parts.push(Buffer.from(c));
  }
  return Buffer.concat(parts).toString('utf8');
}

/** Errors of the plain HTTP routes: one shape, the same codes as the API's. */
function sendError(req: IncomingMessage, res: ServerResponse, status: number, code: ErrorCode, message: string): void {
  answer(req, res, status, { error: { code, message } });
}

function sendGraphQLError(req: IncomingMessage, res: ServerResponse, status: number, code: ErrorCode, message: string): void {
  answer(req, res, status, { errors: [{ message, extensions: { code } }] });
}
