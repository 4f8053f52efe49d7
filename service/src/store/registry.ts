import { randomUUID } from 'node:crypto';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { InvalidArgumentError, InvalidModelError, StrataError, UnsupportedModelError } from '../core/errors.js';
import { decodeModel } from '../core/onnx/codec.js';
import { GraphIndex } from '../core/onnx/graph.js';
import { modelSignature, type TensorSignature } from '../core/onnx/io.js';
import { int64ToNumber, type ModelProto, type TensorProto } from '../core/onnx/proto.js';
import { checkOperators } from '../core/structure/discover.js';
import { openDataset, type DatasetArray } from '../runtime/dataset.js';
import { loadModelFile } from '../runtime/model-file.js';
import type { ArtifactStore } from './artifact-store.js';
import type { RecordStore } from './record-store.js';

export type Source = 'upload' | 'file';

export interface ModelRecord {
  id: string;
  name: string;
  sha256: string;
  size: number;
  createdAt: string;
  source: Source;
  inputs: TensorSignature[];
  outputs: TensorSignature[];
  opset: number | null;
  nodes: number;
  producer: string;
  warnings: string[];
}

export interface DatasetRecord {
  id: string;
  name: string;
  sha256: string;
  size: number;
  createdAt: string;
  source: Source;
  format: 'npz' | 'npy';
  samples: number;
  hasLabels: boolean;
  arrays: DatasetArray[];
}

export interface RegistryStores {
  artifacts: ArtifactStore;
  models: RecordStore<ModelRecord>;
  datasets: RecordStore<DatasetRecord>;
}

export interface RegistryOptions {
  fileRoots: readonly string[];
  clock: () => Date;
}

/**
 * Models and data sets the service knows by id. An uploaded artifact becomes a model only once our
 * own decoder has read it (onnxruntime never sees bytes that failed here), and a data set only
 * once its archive and array headers parse.
 */
export class Registry {
  constructor(
    private readonly stores: RegistryStores,
    private readonly options: RegistryOptions,
  ) {}

  registerModel(sha256: string, name: string): ModelRecord {
    checkName(name);
    const existing = this.findModel(sha256, name);
    if (existing) return existing;
    const bytes = new Uint8Array(readFileSync(this.uploaded(sha256)));
    const model = decodeModel(bytes);
    if (usesExternalData(model)) {
      throw new UnsupportedModelError(
        'the model keeps its weights in external data files, which an upload cannot carry: upload a self-contained ' +
          'model (onnx.save(model, path, save_as_external_data=False)), or register it by path from a STRATA_FILE_ROOTS folder',
      );
    }
    return this.addModel(model, { sha256, size: bytes.byteLength }, name, 'upload');
  }

  /** A model file on the server; external data beside it is inlined into the stored copy. */
  async registerModelFile(path: string, name?: string): Promise<ModelRecord> {
    const real = this.fileUnderRoots(path);
    const label = name ?? real.split(sep).pop() ?? real;
    checkName(label);
    const loaded = loadModelFile(real);
    const stored = this.stores.artifacts.put(loaded.bytes);
    return this.addModel(loaded.model, stored, label, 'file');
  }

  async registerDataset(sha256: string, name: string): Promise<DatasetRecord> {
    checkName(name);
    const existing = this.findDataset(sha256, name);
    if (existing) return existing;
    const path = this.uploaded(sha256);
    return this.addDataset(path, sha256, name, 'upload');
  }

  async registerDatasetFile(path: string, name?: string): Promise<DatasetRecord> {
    const real = this.fileUnderRoots(path);
    const label = name ?? real.split(sep).pop() ?? real;
    checkName(label);
    const stored = await this.stores.artifacts.ingestFile(real);
    return this.addDataset(this.stores.artifacts.path(stored.sha256), stored.sha256, label, 'file');
  }

  model(id: string): ModelRecord {
    const m = this.stores.models.get(id);
    if (!m) throw new StrataError('NOT_FOUND', `no model with id "${id}"`, { id });
    return m;
  }

  dataset(id: string): DatasetRecord {
    const d = this.stores.datasets.get(id);
    if (!d) throw new StrataError('NOT_FOUND', `no data set with id "${id}"`, { id });
    return d;
  }

  models(): ModelRecord[] {
    return byCreation(this.stores.models.all());
  }

  datasets(): DatasetRecord[] {
    return byCreation(this.stores.datasets.all());
  }

  private uploaded(sha256: string): string {
    const path = this.stores.artifacts.path(sha256);
    if (this.stores.artifacts.size(sha256) === null) {
      throw new StrataError('NOT_FOUND', `no uploaded file has sha256 ${sha256}; POST the file to /upload first`, { sha256 });
    }
    return path;
  }

  /** Registering the same file under the same name again is the same registration. */
  private findModel(sha256: string, name: string): ModelRecord | undefined {
    return this.stores.models.all().find((m) => m.sha256 === sha256 && m.name === name);
  }

  private findDataset(sha256: string, name: string): DatasetRecord | undefined {
    return this.stores.datasets.all().find((d) => d.sha256 === sha256 && d.name === name);
  }

  private addModel(model: ModelProto, stored: { sha256: string; size: number }, name: string, source: Source): ModelRecord {
    const existing = this.findModel(stored.sha256, name);
    if (existing) return existing;
    let warnings: string[];
    let signature: ReturnType<typeof modelSignature>;
    let nodes: number;
    try {
      const idx = new GraphIndex(model.graph ?? {});
      warnings = checkOperators(idx);
      signature = modelSignature(model);
      nodes = idx.nodes.length;
    } catch (e) {
      if (e instanceof StrataError) throw e;
      throw new InvalidModelError(`the model's graph cannot be read: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (signature.inputs.length === 0) throw new InvalidModelError('the model has no inputs to feed');
    const opset = (model.opset_import ?? []).find((s) => !s.domain || s.domain === 'ai.onnx');
    const record: ModelRecord = {
      id: randomUUID(),
      name,
      sha256: stored.sha256,
      size: stored.size,
      createdAt: this.options.clock().toISOString(),
      source,
      inputs: signature.inputs,
      outputs: signature.outputs,
      opset: opset ? int64ToNumber(opset.version) : null,
      nodes,
      producer: `${model.producer_name ?? ''} ${model.producer_version ?? ''}`.trim(),
      warnings,
    };
    this.stores.models.put(record);
    return record;
  }

  private async addDataset(path: string, sha256: string, name: string, source: Source): Promise<DatasetRecord> {
    const existing = this.findDataset(sha256, name);
    if (existing) return existing;
    const ds = await openDataset(path);
    const record: DatasetRecord = {
      id: randomUUID(),
      name,
      sha256,
      size: statSync(path).size,
      createdAt: this.options.clock().toISOString(),
      source,
      format: ds.format,
      samples: ds.samples,
      hasLabels: ds.hasLabels,
      arrays: ds.arrays.map((a) => ({ name: a.name, dtype: a.dtype, shape: [...a.shape] })),
    };
    this.stores.datasets.put(record);
    return record;
  }

  /**
   * A server-side path, accepted only inside a configured root: checked as written (no `..`,
   * lexically inside) and again after symlinks are resolved, so a link cannot lead out.
   */
  private fileUnderRoots(path: string): string {
    const roots = this.options.fileRoots;
    if (roots.length === 0) {
      throw new InvalidArgumentError('path', 'registering files by server-side path is turned off; set STRATA_FILE_ROOTS to the folders it may read, or upload the file');
    }
    if (!isAbsolute(path)) throw new InvalidArgumentError('path', `must be an absolute path, got "${path}"`);
    if (path.split(/[\\/]/).includes('..')) throw new InvalidArgumentError('path', 'must not contain ".." segments');
    const outside = () => new InvalidArgumentError('path', `${path} is not inside the folders the service may read (STRATA_FILE_ROOTS)`);
    if (!roots.some((r) => inside(resolve(r), resolve(path)))) throw outside();
    let real: string;
    try {
      real = realpathSync(path);
    } catch {
      throw new StrataError('NOT_FOUND', `file not found: ${path}`, { path });
    }
    const realRoots = roots.flatMap((r) => {
      try {
        return [realpathSync(r)];
      } catch {
        return [];
      }
    });
    if (!realRoots.some((r) => inside(r, real))) throw outside();
    if (!statSync(real).isFile()) throw new InvalidArgumentError('path', `${path} is not a regular file`);
    return real;
  }
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

function checkName(name: string): void {
  if (name.trim() === '' || name.length > 200) throw new InvalidArgumentError('name', 'must be 1 to 200 characters');
}

function usesExternalData(model: ModelProto): boolean {
  const external = (ts: readonly TensorProto[] | undefined) => (ts ?? []).some((t) => t.data_location === 1);
  const g = model.graph;
  if (!g) return false;
  return external(g.initializer) || (g.node ?? []).some((n) => (n.attribute ?? []).some((a) => external(a.t ? [a.t] : []) || external(a.tensors)));
}

function byCreation<T extends { createdAt: string; id: string }>(items: T[]): T[] {
  return items.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
}
