import * as ort from 'onnxruntime-node';
import type { Batch, DatasetBinding } from '../dataset.js';
import type { Feeds } from '../session.js';

/** Feeds for one model from a batch read with `binding` (arrays keyed by model input name). */
export function batchFeeds(batch: Batch, binding: DatasetBinding): Feeds {
  const feeds: Feeds = {};
  for (const inputName of Object.keys(binding.inputs)) {
    const input = batch.inputs[inputName] ?? batch.inputs[binding.inputs[inputName]!];
    if (!input) continue;
    feeds[inputName] = new ort.Tensor(input.dtype, input.data as ort.Tensor.DataType, input.dims);
  }
  return feeds;
}
