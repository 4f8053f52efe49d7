import * as ort from 'onnxruntime-node';
import { InvalidArgumentError } from '../core/errors.js';

/** A tensor of zeros of an onnxruntime element type. */
export function zeroTensor(dtype: string, dims: number[]): ort.Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  switch (dtype) {
    case 'float32':
      return new ort.Tensor('float32', new Float32Array(n), dims);
    case 'float64':
      return new ort.Tensor('float64', new Float64Array(n), dims);
    case 'float16':
      return new ort.Tensor('float16', new Uint16Array(n), dims);
    case 'int64':
      return new ort.Tensor('int64', new BigInt64Array(n), dims);
    case 'int32':
      return new ort.Tensor('int32', new Int32Array(n), dims);
    case 'int8':
      return new ort.Tensor('int8', new Int8Array(n), dims);
    case 'uint8':
      return new ort.Tensor('uint8', new Uint8Array(n), dims);
    case 'bool':
      return new ort.Tensor('bool', new Uint8Array(n), dims);
    default:
      throw new InvalidArgumentError('input', `element type ${dtype} is not supported for model inputs`);
  }
}
