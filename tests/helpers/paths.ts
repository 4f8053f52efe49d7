import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, found from this file whether it runs from source or from dist/. */
export const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above the tests');
    dir = up;
  }
  return dir;
})();

export const MODELS = ['resnet20', 'mobilenetv2', 'vgg', 'vit'] as const;
export type ModelName = (typeof MODELS)[number];

export function fixtureModel(name: ModelName): string {
  return join(ROOT, 'tests', 'fixtures', 'models', `${name}.onnx`);
}

export const EVAL_DATA = join(ROOT, 'tests', 'fixtures', 'data', 'fmnist-eval-1000.npz');
export const CALIB_DATA = join(ROOT, 'tests', 'fixtures', 'data', 'fmnist-calib-512.npz');

/** The compiled CLI entry. */
export const CLI = join(ROOT, 'dist', 'service', 'src', 'cli', 'main.js');
