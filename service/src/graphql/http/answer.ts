import type { IncomingMessage, ServerResponse } from 'node:http';

/** How much of a body that will not be used is still read, and for how long, before the connection is closed. */
export interface DrainLimits {
  maxBytes: number;
  maxMs: number;
}

/**
 * Big enough for what a client sends between crossing the upload limit and reading the refusal
 * (a few socket buffers, or a whole declared body a few MiB over the limit); small enough that a
 * client that never stops costs one bounded read, not a connection held open for an hour.
 */
export const DEFAULT_DRAIN_LIMITS: DrainLimits = { maxBytes: 64 * 1024 * 1024, maxMs: 10_000 };

/**
 * Sends a JSON answer. When part of the request's body is still unread (a refusal before or in
 * the middle of an upload), the connection is closed the way that lets the client read it:
 * the answer goes out with `Connection: close`, then this side of the connection is shut (the
 * client reads the answer and then the end of the stream), and the rest of the body is read and
 * thrown away until the client has sent all of it or hangs up, or `limits` is reached, and only
 * then is the socket closed. Closing it at once (what Node does after a `Connection: close`
 * answer) loses the answer: the client is still writing, the closed socket answers its next
 * bytes with a reset, and the client sees ECONNRESET or EPIPE instead of the status; a client
 * that writes its whole body before it reads never gets to the answer at all.
 */
export function answer(req: IncomingMessage, res: ServerResponse, status: number, value: unknown, limits: DrainLimits = DEFAULT_DRAIN_LIMITS): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const body = JSON.stringify(value);
  const headers: Record<string, string | number> = { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) };
  const socket = res.socket;
  if (!hasUnreadBody(req) || socket === null) {
    // (no socket: an answer queued behind a pipelined request's; Node closes after it, which
    // such a rare client has to live with)
    if (socket === null && hasUnreadBody(req)) headers.Connection = 'close';
    res.writeHead(status, headers);
    res.end(body);
    return;
  }
  res.writeHead(status, { ...headers, Connection: 'close' });
  res.write(body);
  // The response is never end()ed: that would make Node close the socket. Content-Length tells
  // the client where the answer ends, and the socket's end tells it nothing else will come.
  socket.end();
  let seen = 0;
  const stop = () => {
    clearTimeout(timer);
    req.off('data', onData);
    req.off('end', close);
    req.off('close', close);
    req.off('error', close);
    socket.off('close', stop);
  };
  // once the body is complete or the client has gone, nothing more will arrive: closing no
  // longer resets anything
  const close = () => {
    stop();
    socket.destroy();
  };
  const onData = (chunk: Buffer) => {
    seen += chunk.byteLength;
    if (seen > limits.maxBytes) close();
  };
  const timer = setTimeout(close, limits.maxMs);
  // a shutdown does not wait on a drain: it closes every connection once its grace period is over
  timer.unref();
  req.on('data', onData);
  req.on('end', close);
  req.on('close', close);
  req.on('error', close);
  socket.on('close', stop);
  req.resume();
}

/** True while body bytes may still arrive for this request: it declared a body and the parser has not seen all of it. */
function hasUnreadBody(req: IncomingMessage): boolean {
  if (req.complete || req.destroyed) return false;
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = Number(req.headers['content-length']);
  return Number.isFinite(length) && length > 0;
}
