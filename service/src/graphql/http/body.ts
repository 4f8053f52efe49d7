import type { IncomingMessage } from 'node:http';

/**
 * A request body as an async iterable that, unlike the stream's own iterator, leaves the request
 * alive when the reader stops early: a handler that refuses an upload half-way can still answer,
 * and then drain or drop the rest. One chunk is held at a time (the request is paused meanwhile).
 */
export function bodyChunks(req: IncomingMessage): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
      const queue: Buffer[] = [];
      let ended = false;
      let failure: Error | null = null;
      let wake: (() => void) | null = null;
      const poke = () => {
        const w = wake;
        wake = null;
        w?.();
      };
      const onData = (chunk: Buffer) => {
        queue.push(chunk);
        req.pause();
        poke();
      };
      const onEnd = () => {
        ended = true;
        poke();
      };
      const onError = (e: Error) => {
        failure ??= e;
        poke();
      };
      const onClose = () => {
        if (!ended) failure ??= new Error('the client closed the connection before the body was complete');
        poke();
      };
      req.on('data', onData);
      req.on('end', onEnd);
      req.on('error', onError);
      req.on('close', onClose);
      const detach = () => {
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('error', onError);
        req.off('close', onClose);
      };
      return {
        async next(): Promise<IteratorResult<Uint8Array>> {
          for (;;) {
            const chunk = queue.shift();
            if (chunk) {
              if (queue.length === 0 && !ended) req.resume();
              return { value: chunk, done: false };
            }
            if (failure) {
              detach();
              throw failure;
            }
            if (ended) {
              detach();
              return { value: undefined, done: true };
            }
            await new Promise<void>((r) => (wake = r));
          }
        },
        async return(): Promise<IteratorResult<Uint8Array>> {
          detach();
          return { value: undefined, done: true };
        },
      };
    },
  };
}
