#!/usr/bin/env node
// `npm run docs`: writes docs/config.md from the config schema (src/core/config-docs.ts) and docs/export.md
// from the export's documented columns (src/export/docs.ts), both built into dist/.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configReference } from '../dist/src/core/config-docs.js';
import { exportReference } from '../dist/src/export/docs.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
for (const [file, text] of [['docs/config.md', configReference()], ['docs/export.md', exportReference()]]) {
  writeFileSync(path.join(root, file), text);
  console.log(`wrote ${file}`);
}
