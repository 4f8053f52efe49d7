import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, type ReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, StrataError } from '../core/errors.js';
import { syncFolder, TEMP_SUFFIX, writeFileAtomic } from './atomic-file.js';

export const SHA256_PATTERN = /^[0-9a-f]{64}$/;

export interface StoredArtifact {
  sha256: string;
  size: number;
}

/** A body that went past the upload limit; the partial file is already gone when this is thrown. */
export class PayloadTooLargeError extends StrataError {
  constructor(limit: number) {
    super('PAYLOAD_TOO_LARGE', `the upload is larger than the limit of ${limit} bytes (STRATA_MAX_UPLOAD_BYTES)`, { limit });
  }
}

/**
 * Content-addressed files: `artifacts/<sha256>`. A file appears under its hash only once it is
 * complete and synced (it is written in `incoming/` and renamed), so whatever is listed there can
 * be served; a crash mid-write leaves a stray file in `incoming/`, which init() clears.
 */
export class ArtifactStore {
  readonly folder: string;
  private readonly incoming: string;

  constructor(dataDir: string) {
    this.folder = join(dataDir, 'artifacts');
    this.incoming = join(dataDir, 'incoming');
  }

  init(): void {
    mkdirSync(this.folder, { recursive: true });
    mkdirSync(this.incoming, { recursive: true });
    for (const name of readdirSync(this.incoming)) rmSync(join(this.incoming, name), { force: true, recursive: true });
    for (const name of readdirSync(this.folder)) if (name.endsWith(TEMP_SUFFIX)) rmSync(join(this.folder, name), { force: true });
  }

  path(sha256: string): string {
    if (!SHA256_PATTERN.test(sha256)) throw new InvalidArgumentError('sha256', `must be 64 lowercase hex digits, got "${sha256.slice(0, 80)}"`);
    return join(this.folder, sha256);
  }

  /** Size in bytes, or null when the store does not hold it. */
  size(sha256: string): number | null {
    const p = this.path(sha256);
    return existsSync(p) ? statSync(p).size : null;
  }

  read(sha256: string): ReadStream {
    return createReadStream(this.path(sha256));
  }

  /**
   * Streams `source` into the store, hashing as it goes; never holds the whole body. Past
   * `maxBytes` it stops reading, removes what it wrote and throws PayloadTooLargeError.
   */
  async ingest(source: AsyncIterable<Uint8Array | string>, maxBytes: number): Promise<StoredArtifact> {
    const tmp = join(this.incoming, `${randomUUID()}.part`);
    const hash = createHash('sha256');
    let size = 0;
    const fh = await open(tmp, 'wx', 0o600);
    let closed = false;
    try {
      for await (const chunk of source) {
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        size += bytes.byteLength;
        if (size > maxBytes) throw new PayloadTooLargeError(maxBytes);
        hash.update(bytes);
        let off = 0;
        while (off < bytes.byteLength) off += (await fh.write(bytes, off, bytes.byteLength - off)).bytesWritten;
      }
      await fh.sync();
      await fh.close();
      closed = true;
      const sha256 = hash.digest('hex');
      const target = this.path(sha256);
      // same hash, same bytes: a second upload of a file only confirms the first
      if (existsSync(target)) rmSync(tmp, { force: true });
      else {
        renameSync(tmp, target);
        syncFolder(this.folder);
      }
      return { sha256, size };
    } catch (e) {
      if (!closed) await fh.close().catch(() => undefined);
      rmSync(tmp, { force: true });
      throw e;
    }
  }

  /** Copies a file into the store. */
  async ingestFile(path: string, maxBytes = Number.MAX_SAFE_INTEGER): Promise<StoredArtifact> {
    return this.ingest(createReadStream(path), maxBytes);
  }

  /** Stores bytes already in memory (a compressed model, say). */
  put(bytes: Uint8Array): StoredArtifact {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const target = this.path(sha256);
    if (!existsSync(target)) writeFileAtomic(target, bytes);
    return { sha256, size: bytes.byteLength };
  }
}
