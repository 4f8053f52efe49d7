import { type ChildProcess, spawn } from 'node:child_process';

export interface ServiceProcess {
  child: ChildProcess;
  /** where it listens, e.g. http://127.0.0.1:41234 */
  base: string;
  /** settles when the process has exited */
  stopped: Promise<unknown>;
}

/**
 * Starts a strata service as its own process, as deployed: port 0, logs at info on stdout (one line
 * per request); the first log line with a url says where it listens.
 */
export async function spawnService(entry: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [...nodeArgs, entry], {
    env: { ...process.env, STRATA_PORT: '0', STRATA_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const stopped = new Promise((r) => child.once('exit', r));
  const base = await new Promise<string>((resolve, reject) => {
    let buffer: string | null = '';
    child.stdout!.on('data', (c: Buffer) => {
      if (buffer === null) return;
      buffer += c.toString();
      const m = /"url":"(http:[^"]+)"/.exec(buffer);
      if (m) {
        buffer = null;
        resolve(m[1]!);
      }
    });
    void stopped.then(() => reject(new Error(`the service (${entry}) exited before listening`)));
  });
  return { child, base, stopped };
}
