/**
 * Prints the schema built from the code to schema/schema.graphql, or with --check fails when
 * the committed file is stale.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { printSchema } from 'graphql';
import { schema } from '../src/graphql/schema.js';

const path = 'schema/schema.graphql';
const printed = `${printSchema(schema)}\n`;
if (process.argv.includes('--check')) {
  let committed = '';
  try {
    committed = readFileSync(path, 'utf8');
  } catch {
    // reported below as stale
  }
  if (committed !== printed) {
    console.error(`${path} is stale: run \`npm run schema:print\` and commit the result`);
    process.exit(1);
  }
  console.log(`${path} matches the code`);
} else {
  writeFileSync(path, printed);
  console.log(`wrote ${path}`);
}
