import { readFileSync, statSync, existsSync } from 'node:fs';
import { dirname, resolve, relative, isAbsolute } from 'node:path';
import { createHash } from 'node:crypto';
import { InvalidModelError, StrataError } from '../core/errors.js';
import { decodeModel, encodeModel, type DecodeLimits } from '../core/onnx/codec.js';
import type { ModelProto, TensorProto } from '../core/onnx/proto.js';
import { readTensor } from '../core/onnx/tensor.js';

export interface LoadedModel {
  path: string;
  /** sha256 of the file as given */
  sha256: string;
  model: ModelProto;
  /** the model with any external data inlined: what onnxruntime is given */
  bytes: Uint8Array;
}

/**
 * Reads an .onnx file. External data (weights in side files) is read from beside the model and
 * inlined, so every later step works on one self-contained byte string.
 */
export function loadModelFile(path: string, limits: Partial<DecodeLimits> = {}): LoadedModel {
  if (!existsSync(path)) throw new StrataError('NOT_FOUND', `model file not found: ${path}`);
  if (!statSync(path).isFile()) throw new StrataError('BAD_USER_INPUT', `not a file: ${path}`);
  const raw = readFileSync(path);
  const sha256 = createHash('sha256').update(raw).digest('hex');
  const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  const model = decodeModel(bytes, limits);
  const inlined = inlineExternalData(model, dirname(resolve(path)));
  return { path, sha256, model, bytes: inlined ? encodeModel(model) : bytes };
}

/** Replaces external references by raw_data; returns whether anything changed. */
export function inlineExternalData(model: ModelProto, baseDir: string): boolean {
  const cache = new Map<string, Uint8Array | undefined>();
  const resolveFile = (location: string): Uint8Array | undefined => {
    if (cache.has(location)) return cache.get(location);
    const full = resolve(baseDir, location);
    const rel = relative(baseDir, full);
    // a location must stay beside the model: no absolute paths, no climbing out of its folder
    if (isAbsolute(location) || rel.startsWith('..') || isAbsolute(rel)) {
      throw new InvalidModelError(`external data location "${location}" points outside the model's folder; only files beside the model are read`);
    }
    const data = existsSync(full) && statSync(full).isFile() ? new Uint8Array(readFileSync(full)) : undefined;
    cache.set(location, data);
    return data;
  };
  let changed = false;
  const visit = (tensors: TensorProto[] | undefined) => {
    for (const t of tensors ?? []) {
      if (t.data_location !== 1) continue;
      const value = readTensor(t, resolveFile);
      t.raw_data = new Uint8Array(value.data.buffer, value.data.byteOffset, value.data.byteLength);
      t.external_data = [];
      t.data_location = 0;
      changed = true;
    }
  };
  visit(model.graph?.initializer);
  for (const n of model.graph?.node ?? []) for (const a of n.attribute ?? []) visit([...(a.t ? [a.t] : []), ...(a.tensors ?? [])]);
  return changed;
}
