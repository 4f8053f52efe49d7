import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** schema.graphql beside package.json, found from this file whether it runs from source or from dist/. */
export function schemaFilePath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above the service');
    dir = up;
  }
  return join(dir, 'schema.graphql');
}
