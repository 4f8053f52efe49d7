import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TEMP_SUFFIX, writeFileAtomic } from './atomic-file.js';

const ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * Records (registrations, jobs) as one JSON file each, written atomically (temp file, fsync,
 * rename, fsync of the folder). This is the embedded store's durability guarantee, as safe as a
 * database's commit for what the service needs: a record on disk is always a whole record, the
 * last one written before any crash, and nothing has to be installed or run beside the service.
 * Reads come from memory; the folder is read once, at start.
 */
export class RecordStore<T extends { id: string }> {
  private readonly records = new Map<string, T>();

  constructor(readonly folder: string) {}

  /** Reads every record; temp files left by a write that a crash interrupted are removed. */
  load(): T[] {
    mkdirSync(this.folder, { recursive: true });
    this.records.clear();
    for (const name of readdirSync(this.folder).sort()) {
      const path = join(this.folder, name);
      if (name.endsWith(TEMP_SUFFIX)) {
        rmSync(path, { force: true });
        continue;
      }
      if (!name.endsWith('.json')) continue;
      let record: T;
      try {
        record = JSON.parse(readFileSync(path, 'utf8')) as T;
      } catch (e) {
        throw new Error(`cannot read the record ${path}: ${e instanceof Error ? e.message : String(e)}; move it aside to start without it`);
      }
      this.records.set(record.id, record);
    }
    return [...this.records.values()];
  }

  get(id: string): T | undefined {
    return this.records.get(id);
  }

  all(): T[] {
    return [...this.records.values()];
  }

  /** Updates the copy in memory only, for changes not worth a disk write. */
  remember(record: T): void {
    if (!this.records.has(record.id)) throw new Error(`record "${record.id}" was never stored`);
    this.records.set(record.id, record);
  }

  put(record: T): void {
    if (!ID_PATTERN.test(record.id)) throw new Error(`record id "${record.id}" is not a safe file name`);
    writeFileAtomic(join(this.folder, `${record.id}.json`), `${JSON.stringify(record)}\n`);
    this.records.set(record.id, record);
  }
}
