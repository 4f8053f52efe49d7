/**
 * Evaluation data sets: a NumPy .npz archive (one array per model input, plus optional `labels`)
 * or a lone .npy array for a single-input model. Arrays are streamed batch by batch so a data set
 * larger than memory can be evaluated; nothing here ever holds a whole array.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import { basename, extname } from 'node:path';
import type { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { DatasetError, InvalidArgumentError, StrataError } from '../core/errors.js';
import {
  bytesPerElement,
  elementCount,
  isIntegerDtype,
  npyHeaderLength,
  parseNpyHeader,
  typedArrayView,
  type NpyDtype,
  type NpyTypedArray,
} from '../core/data/npy.js';

export const LABELS = 'labels';

/** Names exporters give a batch dimension. */
const BATCH_NAME = /^(batch|batch_size|batchsize|bs|n|N|B)$|batch/i;

export interface DatasetArray {
  name: string;
  dtype: NpyDtype;
  shape: number[];
}

export type LabelArray =
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array;

export interface BatchInput {
  data: NpyTypedArray;
  /** [count, ...per-sample shape]. */
  dims: number[];
  dtype: NpyDtype;
}

export interface Batch {
  /** Keyed by model input name when a binding was given, else by array name. */
  inputs: Record<string, BatchInput>;
  labels?: LabelArray;
  /** Index of the batch's first sample in the data set. */
  start: number;
  count: number;
}

/** What a model declares for one input; `dtype` uses onnxruntime's tensor type names ('float32', 'int64', ...). */
export interface ModelInputSpec {
  name: string;
  dtype: string;
  /** Sizes, symbolic names, or null for a dynamic dimension with no name (accepts any size). */
  dims: readonly (number | string | null)[];
}

/** The result of matching a data set to a model's inputs. */
export interface DatasetBinding {
  /** Model input name → data-set array name. */
  inputs: Record<string, string>;
  /** Symbolic per-sample dimensions and the sizes the data set gives them. */
  symbolicDims: Record<string, number>;
  /** The batch size the model insists on when its leading dimension is a number rather than a symbol. */
  fixedBatch?: number;
  /** Arrays that feed nothing (never `labels`). */
  unused: string[];
  warnings: string[];
}

export interface BatchOptions {
  /** Read at most this many samples from the start. */
  limit?: number;
  /** From validateAgainst: reads only the bound arrays and keys them by model input name. */
  binding?: DatasetBinding;
}

export interface Dataset {
  readonly path: string;
  readonly format: 'npz' | 'npy';
  readonly arrays: readonly DatasetArray[];
  /** The leading dimension shared by the arrays (the smallest one, if they disagree; validateAgainst reports that). */
  readonly samples: number;
  readonly hasLabels: boolean;
  /** Hex SHA-256 of the file's bytes. */
  readonly sha256: string;
  batches(batchSize: number, options?: BatchOptions): AsyncIterable<Batch>;
  validateAgainst(modelInputs: readonly ModelInputSpec[]): DatasetBinding;
}

interface StoredArray extends DatasetArray {
  fortranOrder: boolean;
  headerLength: number;
  /** Archive member name (npz only). */
  entryName?: string;
}

const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
const ZIP_MAGICS = [
  [0x50, 0x4b, 0x03, 0x04],
  [0x50, 0x4b, 0x05, 0x06], // an empty archive starts with its end record
];
const READ_CHUNK = 1 << 20;

function startsWith(bytes: Uint8Array, magic: readonly number[]): boolean {
  return magic.every((b, i) => bytes[i] === b);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function list(names: readonly string[]): string {
  return names.length === 0 ? '(none)' : names.map((n) => `'${n}'`).join(', ');
}

function shapeText(dims: readonly (number | string | null)[]): string {
  return `[${dims.map((d) => d ?? '?').join(', ')}]`;
}

/**
 * Pulls exact byte counts out of a stream. Copies land straight in the caller's buffer, so at most
 * one stream chunk is held beyond the batch being filled.
 */
class ExactReader {
  private readonly chunks: AsyncIterator<Uint8Array>;
  private chunk: Uint8Array = new Uint8Array(0);
  private at = 0;
  private consumed = 0;

  constructor(
    private readonly stream: Readable,
    private readonly what: string,
  ) {
    this.chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
  }

  async fill(target: Uint8Array): Promise<void> {
    let filled = 0;
    while (filled < target.length) {
      if (this.at >= this.chunk.length) {
        let next: IteratorResult<Uint8Array>;
        try {
          next = await this.chunks.next();
        } catch (err) {
          throw new DatasetError(`${this.what}: unreadable after ${this.consumed + filled} bytes (${describe(err)})`);
        }
        if (next.done) {
          throw new DatasetError(`${this.what}: truncated, ended after ${this.consumed + filled} bytes`);
        }
        this.chunk = next.value;
        this.at = 0;
        continue;
      }
      const n = Math.min(target.length - filled, this.chunk.length - this.at);
      target.set(this.chunk.subarray(this.at, this.at + n), filled);
      this.at += n;
      filled += n;
    }
    this.consumed += filled;
  }

  async read(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    await this.fill(out);
    return out;
  }

  /** Resolves once the stream has let go of its file descriptor. */
  async close(): Promise<void> {
    if (this.stream.closed) return;
    const done = whenClosed(this.stream);
    this.stream.destroy();
    await done;
  }
}

/**
 * Waits for an emitter's 'close' (a stream or yauzl archive releasing its descriptor), so a caller
 * that stops early leaves no file open behind it; the timer only guards against a missed event.
 */
function whenClosed(emitter: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 2000);
    timer.unref();
    emitter.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function closeZip(zip: yauzl.ZipFile): Promise<void> {
  if (!zip.isOpen) return;
  const done = whenClosed(zip);
  zip.close();
  await done;
}

/** Reads a .npy header from a stream positioned at the array's first byte. */
async function readHeader(reader: ExactReader): Promise<ReturnType<typeof parseNpyHeader>> {
  const prefix = await reader.read(8);
  // Checked before trusting the version byte, so a foreign file is reported as such, not as truncated.
  if (!startsWith(prefix, NPY_MAGIC)) throw new DatasetError('not a .npy array: the magic string \\x93NUMPY is missing');
  const sized = await extend(reader, prefix, prefix[6] === 1 ? 10 : 12);
  return parseNpyHeader(await extend(reader, sized, npyHeaderLength(sized)));
}

/** Reads the header and lets go of the stream; errors name the file (and member) they concern. */
async function readHeaderOf(reader: ExactReader, what: string): Promise<ReturnType<typeof parseNpyHeader>> {
  try {
    return await readHeader(reader);
  } catch (err) {
    if (err instanceof DatasetError && !err.message.startsWith(what)) {
      throw new DatasetError(`${what}: ${err.message}`, { ...err.details });
    }
    throw err;
  } finally {
    await reader.close();
  }
}

async function extend(reader: ExactReader, prefix: Uint8Array, size: number): Promise<Uint8Array> {
  if (prefix.length >= size) return prefix;
  const out = new Uint8Array(size);
  out.set(prefix, 0);
  await reader.fill(out.subarray(prefix.length));
  return out;
}

/** Rewrites yauzl's and the file system's errors as DatasetErrors; ours pass through. */
function asDatasetError(err: unknown, path: string, context: string): StrataError {
  if (err instanceof StrataError) return err;
  const code = (err as { code?: string } | null)?.code;
  if (code === 'ENOENT') return new DatasetError(`data set not found: ${path}`, { path });
  if (code === 'EISDIR') return new DatasetError(`data set path is a directory, not a file: ${path}`, { path });
  if (code === 'EACCES') return new DatasetError(`data set not readable (permission denied): ${path}`, { path });
  return new DatasetError(`${context}: ${describe(err)}`, { path });
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: READ_CHUNK })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function readPrefix(path: string, n: number): Promise<{ bytes: Uint8Array; size: number }> {
  const handle = await fsp.open(path, 'r');
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new DatasetError(`data set path is not a regular file: ${path}`, { path });
    const bytes = new Uint8Array(Math.min(n, stat.size));
    await handle.read(bytes, 0, bytes.length, 0);
    return { bytes, size: stat.size };
  } finally {
    await handle.close();
  }
}

async function openZip(path: string): Promise<yauzl.ZipFile> {
  return yauzl.openPromise(path, { lazyEntries: true, autoClose: false });
}

async function readNpzArrays(path: string): Promise<StoredArray[]> {
  let zip: yauzl.ZipFile;
  try {
    zip = await openZip(path);
  } catch (err) {
    throw asDatasetError(err, path, `${path} is not a readable .npz (zip) archive`);
  }
  const arrays: StoredArray[] = [];
  try {
    for await (const entry of zip.eachEntry()) {
      if (!entry.fileName.endsWith('.npy')) continue;
      const name = entry.fileName.slice(0, -'.npy'.length);
      const what = `${basename(path)}: array '${name}'`;
      if (entry.isEncrypted()) throw new DatasetError(`${what} is encrypted`);
      if (!entry.canDecodeFileData()) {
        throw new DatasetError(`${what} uses zip compression method ${entry.compressionMethod}; only stored and deflated are read`);
      }
      const header = await readHeaderOf(new ExactReader(await zip.openReadStreamPromise(entry), what), what);
      const expected = header.headerLength + elementCount(header.shape) * bytesPerElement(header.dtype);
      if (entry.uncompressedSize !== expected) {
        throw new DatasetError(
          `${what}: ${entry.uncompressedSize} bytes, but its header (${header.dtype}, shape ${shapeText(header.shape)}) needs ${expected}` +
            (entry.uncompressedSize < expected ? ' (truncated)' : ''),
        );
      }
      arrays.push({ name, ...header, entryName: entry.fileName });
    }
  } catch (err) {
    throw asDatasetError(err, path, `${path} is not a readable .npz archive`);
  } finally {
    await closeZip(zip);
  }
  return arrays;
}

async function readNpyArray(path: string, size: number): Promise<StoredArray> {
  const what = basename(path);
  const header = await readHeaderOf(new ExactReader(createReadStream(path, { highWaterMark: 64 * 1024 }), what), what);
  const expected = header.headerLength + elementCount(header.shape) * bytesPerElement(header.dtype);
  if (size !== expected) {
    throw new DatasetError(
      `${basename(path)}: ${size} bytes, but its header (${header.dtype}, shape ${shapeText(header.shape)}) needs ${expected}` +
        (size < expected ? ' (truncated)' : ''),
    );
  }
  return { name: basename(path, extname(path)), ...header };
}

export async function openDataset(path: string): Promise<Dataset> {
  try {
    const { bytes, size } = await readPrefix(path, 8);
    let format: 'npz' | 'npy';
    if (ZIP_MAGICS.some((m) => startsWith(bytes, m))) format = 'npz';
    else if (startsWith(bytes, NPY_MAGIC)) format = 'npy';
    else {
      throw new DatasetError(
        `${path} is neither a .npz (zip) archive nor a .npy array` + (size === 0 ? ' (the file is empty)' : ''),
        { path },
      );
    }
    const [arrays, sha256] = await Promise.all([
      format === 'npz' ? readNpzArrays(path) : readNpyArray(path, size).then((a) => [a]),
      hashFile(path),
    ]);
    if (arrays.length === 0) throw new DatasetError(`${path} holds no .npy arrays`, { path });
    return new FileDataset(path, format, arrays, sha256);
  } catch (err) {
    throw asDatasetError(err, path, `cannot read data set ${path}`);
  }
}

function checkLabels(labels: StoredArray, samples: number | undefined, problems: string[]): void {
  if (!isIntegerDtype(labels.dtype)) {
    problems.push(`'${LABELS}' must hold integer class indices, but it is ${labels.dtype}`);
  }
  if (labels.shape.length !== 1) {
    problems.push(`'${LABELS}' must be 1-D (one class index per sample), but its shape is ${shapeText(labels.shape)}`);
  } else if (samples !== undefined && labels.shape[0] !== samples) {
    problems.push(`'${LABELS}' has ${labels.shape[0]} entries but the inputs have ${samples} samples`);
  }
}

function checkStreamable(array: StoredArray, problems: string[]): void {
  if (array.shape.length === 0) {
    problems.push(`array '${array.name}' is a scalar; an input array needs a leading sample dimension`);
  } else if (array.fortranOrder && array.shape.filter((d) => d > 1).length > 1) {
    problems.push(
      `array '${array.name}' is stored in Fortran order, so its samples are not contiguous; ` +
        're-save it with numpy.ascontiguousarray',
    );
  }
}

function fail(path: string, problems: string[]): never {
  const head = `data set ${basename(path)} does not match the model`;
  throw new DatasetError(problems.length === 1 ? `${head}: ${problems[0]}` : `${head}:\n  - ${problems.join('\n  - ')}`, {
    problems,
  });
}

class FileDataset implements Dataset {
  readonly samples: number;
  readonly hasLabels: boolean;
  readonly arrays: readonly DatasetArray[];

  constructor(
    readonly path: string,
    readonly format: 'npz' | 'npy',
    private readonly stored: StoredArray[],
    readonly sha256: string,
  ) {
    this.arrays = stored.map((a) => ({ name: a.name, dtype: a.dtype, shape: [...a.shape] }));
    const leading = stored.filter((a) => a.shape.length > 0).map((a) => a.shape[0] as number);
    this.samples = leading.length === 0 ? 0 : Math.min(...leading);
    this.hasLabels = stored.some((a) => a.name === LABELS);
  }

  private array(name: string): StoredArray | undefined {
    return this.stored.find((a) => a.name === name);
  }

  validateAgainst(modelInputs: readonly ModelInputSpec[]): DatasetBinding {
    const problems: string[] = [];
    const warnings: string[] = [];
    const candidates = this.stored.filter((a) => a.name !== LABELS);
    const modelNames = modelInputs.map((m) => m.name);
    const binding: DatasetBinding = { inputs: {}, symbolicDims: {}, unused: [], warnings };

    const onlyInput = modelInputs.length === 1 ? modelInputs[0] : undefined;
    const onlyArray = candidates.length === 1 ? candidates[0] : undefined;
    if (onlyInput && onlyArray) {
      // A lone array feeds a lone input whatever either is called: names in exported models are arbitrary.
      binding.inputs[onlyInput.name] = onlyArray.name;
    } else {
      const missing = modelNames.filter((n) => n === LABELS || !candidates.some((a) => a.name === n));
      if (missing.length > 0) {
        problems.push(
          `no array for model input${missing.length > 1 ? 's' : ''} ${list(missing)}; ` +
            `model inputs: ${list(modelNames)}; data set arrays: ${list(this.stored.map((a) => a.name))}`,
        );
      }
      for (const name of modelNames) if (!missing.includes(name)) binding.inputs[name] = name;
    }
    const bound = new Set(Object.values(binding.inputs));
    binding.unused = candidates.filter((a) => !bound.has(a.name)).map((a) => a.name);
    if (binding.unused.length > 0) warnings.push(`arrays not fed to the model: ${list(binding.unused)}`);

    const counts = new Map<string, number>();
    for (const spec of modelInputs) {
      const arrayName = binding.inputs[spec.name];
      const array = arrayName === undefined ? undefined : this.array(arrayName);
      if (!array) continue;
      const label = array.name === spec.name ? `'${spec.name}'` : `array '${array.name}' (for model input '${spec.name}')`;
      const before = problems.length;
      checkStreamable(array, problems);
      if (problems.length > before) continue;
      counts.set(array.name, array.shape[0] as number);
      if (array.dtype !== spec.dtype) {
        problems.push(`${label} is ${array.dtype} but the model expects ${spec.dtype}`);
      }
      if (spec.dims.length === 0) {
        warnings.push(`model input '${spec.name}' declares no shape; ${label} is fed as ${shapeText(array.shape)} unchecked`);
        continue;
      }
      const sample = array.shape.slice(1);
      const expected = spec.dims.slice(1);
      if (sample.length !== expected.length) {
        problems.push(
          `${label} has per-sample shape ${shapeText(sample)} (array shape ${shapeText(array.shape)}) ` +
            `but the model expects ${shapeText(expected)} per sample (input dims ${shapeText(spec.dims)})`,
        );
        continue;
      }
      expected.forEach((dim, i) => {
        const given = sample[i] as number;
        if (typeof dim === 'number') {
          if (dim !== given) {
            problems.push(
              `${label} has per-sample shape ${shapeText(sample)} but the model expects ${shapeText(expected)} ` +
                `(dimension ${i + 1} is ${given}, must be ${dim})`,
            );
          }
        } else if (dim === null) {
          return;
        } else if (binding.symbolicDims[dim] !== undefined && binding.symbolicDims[dim] !== given) {
          problems.push(
            `symbolic dimension '${dim}' is ${binding.symbolicDims[dim]} in one input but ${given} in ${label}`,
          );
        } else {
          binding.symbolicDims[dim] = given;
        }
      });
      const lead = spec.dims[0];
      // Samples are fed along axis 0. A model whose batch dimension sits elsewhere (a sequence-first
      // export, [T, batch, D]) would silently get samples and positions swapped: refuse it.
      const misplaced = spec.dims.findIndex((d, i) => i > 0 && typeof d === 'string' && BATCH_NAME.test(d));
      if (typeof lead === 'number' && misplaced > 0) {
        problems.push(
          `model input '${spec.name}' has its batch dimension '${String(spec.dims[misplaced])}' at axis ${misplaced} (dims ${shapeText(spec.dims)}); ` +
            'strata feeds samples along axis 0: export the model batch-first (e.g. batch_first=True)',
        );
      }
      if (typeof lead === 'number') {
        if (binding.fixedBatch !== undefined && binding.fixedBatch !== lead) {
          problems.push(`model inputs fix different batch sizes (${binding.fixedBatch} and ${lead})`);
        }
        binding.fixedBatch = lead;
      }
    }

    const distinct = new Set(counts.values());
    if (distinct.size > 1) {
      problems.push(
        `arrays disagree on the number of samples: ${[...counts].map(([n, c]) => `'${n}' has ${c}`).join(', ')}`,
      );
    }
    const labels = this.array(LABELS);
    if (labels) checkLabels(labels, distinct.size === 1 ? [...distinct][0] : undefined, problems);
    if (problems.length > 0) fail(this.path, problems);
    return binding;
  }

  batches(batchSize: number, options: BatchOptions = {}): AsyncIterable<Batch> {
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
      throw new InvalidArgumentError('batchSize', `must be a positive integer, got ${batchSize}`);
    }
    const { limit, binding } = options;
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
      throw new InvalidArgumentError('limit', `must be a non-negative integer, got ${limit}`);
    }
    const plan: { key: string; array: StoredArray }[] = [];
    const problems: string[] = [];
    if (binding) {
      for (const [input, arrayName] of Object.entries(binding.inputs)) {
        const array = this.array(arrayName);
        if (!array) throw new InvalidArgumentError('binding', `the data set has no array '${arrayName}'`);
        plan.push({ key: input, array });
      }
    } else {
      for (const array of this.stored) if (array.name !== LABELS) plan.push({ key: array.name, array });
    }
    for (const { array } of plan) checkStreamable(array, problems);
    const labels = this.array(LABELS);
    if (labels) checkLabels(labels, undefined, problems);
    const counts = new Set([...plan.map((p) => p.array), ...(labels ? [labels] : [])].map((a) => a.shape[0]));
    if (problems.length === 0 && counts.size > 1) {
      problems.push(
        `arrays disagree on the number of samples: ${[...plan.map((p) => p.array), ...(labels ? [labels] : [])]
          .map((a) => `'${a.name}' has ${a.shape[0]}`)
          .join(', ')}`,
      );
    }
    if (problems.length > 0) fail(this.path, problems);
    const available = counts.size === 0 ? 0 : ([...counts][0] as number);
    const total = Math.min(available, limit ?? available);
    return this.stream(plan, labels, batchSize, total);
  }

  private async *stream(
    plan: { key: string; array: StoredArray }[],
    labels: StoredArray | undefined,
    batchSize: number,
    total: number,
  ): AsyncGenerator<Batch> {
    const sources = [...plan.map((p) => p.array), ...(labels ? [labels] : [])];
    const readers = new Map<string, ExactReader>();
    let zip: yauzl.ZipFile | undefined;
    try {
      if (this.format === 'npz') {
        zip = await openZip(this.path);
        const wanted = new Set(sources.map((a) => a.entryName));
        for await (const entry of zip.eachEntry()) {
          if (!wanted.has(entry.fileName)) continue;
          const array = sources.find((a) => a.entryName === entry.fileName) as StoredArray;
          const reader = new ExactReader(await zip.openReadStreamPromise(entry), `${basename(this.path)}: array '${array.name}'`);
          readers.set(array.name, reader);
          // Deflated members cannot be entered mid-way, so the header is read and dropped.
          await reader.read(array.headerLength);
        }
      } else {
        const array = sources[0] as StoredArray;
        const stream = createReadStream(this.path, { start: array.headerLength, highWaterMark: READ_CHUNK });
        readers.set(array.name, new ExactReader(stream, basename(this.path)));
      }
      for (const array of sources) {
        if (!readers.has(array.name)) throw new DatasetError(`${this.path} changed since it was opened: '${array.name}' is gone`);
      }

      for (let start = 0; start < total; start += batchSize) {
        const count = Math.min(batchSize, total - start);
        const inputs: Record<string, BatchInput> = {};
        const read = async (array: StoredArray): Promise<{ data: NpyTypedArray; dims: number[] }> => {
          const sampleShape = array.shape.slice(1);
          const buffer = new ArrayBuffer(count * elementCount(sampleShape) * bytesPerElement(array.dtype));
          await (readers.get(array.name) as ExactReader).fill(new Uint8Array(buffer));
          return { data: typedArrayView(buffer, array.dtype), dims: [count, ...sampleShape] };
        };
        for (const { key, array } of plan) inputs[key] = { ...(await read(array)), dtype: array.dtype };
        const batch: Batch = { inputs, start, count };
        if (labels) batch.labels = (await read(labels)).data as LabelArray;
        yield batch;
      }
    } catch (err) {
      throw asDatasetError(err, this.path, `cannot read data set ${this.path}`);
    } finally {
      await Promise.all([...readers.values()].map((r) => r.close()));
      if (zip) await closeZip(zip);
    }
  }
}
