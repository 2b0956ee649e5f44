#!/usr/bin/env node
// `npm run docs`: writes docs/config.md from the config schema (src/core/config-docs.ts, built into dist/).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configReference } from '../dist/src/core/config-docs.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'docs/config.md');
writeFileSync(out, configReference());
console.log(`wrote ${path.relative(root, out)}`);
