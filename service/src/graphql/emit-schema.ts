/**
 * `npm run schema`: writes schema.graphql at the repository root from the compiled resolvers.
 */
import { writeFileSync } from 'node:fs';
import { schemaFilePath } from './schema-path.js';
import { schemaFileText } from './schema.js';

writeFileSync(schemaFilePath(), schemaFileText());
process.stdout.write(`wrote ${schemaFilePath()}\n`);
