/**
 * docs/config.md is generated from the config schema (`npm run docs`); this test fails when
 * the file and the schema disagree, and checks the generator against keys whose type,
 * default and description are known.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { configKeys, configReference } from '../src/core/config-docs.js';
import { exportReference } from '../src/export/docs.js';

/** Fails naming the first line where `file` (under docs/) differs from what its generator writes now. */
function expectCurrent(file: string, want: string): void {
  const have = readFileSync(path.resolve(__dirname, '../docs', file), 'utf8');
  if (have === want) return;
  const a = have.split('\n'), b = want.split('\n');
  const i = Math.max(0, b.findIndex((l, k) => l !== a[k]));
  expect.fail(`docs/${file} is out of date (first difference at line ${i + 1}: "${a[i] ?? ''}" vs "${b[i] ?? ''}"); run \`npm run docs\` and commit docs/${file}`);
}

describe('generated docs', () => {
  it('docs/config.md matches the schema, docs/export.md the export columns (regenerate with `npm run docs`)', () => {
    expectCurrent('config.md', configReference());
    expectCurrent('export.md', exportReference());
  });

  it('documents every key with its type, default and description', () => {
    const keys = new Map(configKeys().map((k) => [k.key, k]));
    expect(keys.get('select.k_train')).toEqual({ key: 'select.k_train', type: 'number (integer, > 0)', default: '46', required: false, description: 'debug-train images per seed image (ignored when pool_share is set: dcd run then warns if k_train is not the default)' });
    expect(keys.get('data.kind')).toMatchObject({ type: '`synthetic` | `fashion-mnist` | `imagenet` | `folders`', required: true });
    expect(keys.get('train.finetune.lr')).toMatchObject({ default: '0.01' });
    expect(keys.get('backbones[].weights')).toMatchObject({ type: '`official` | `random` | `demo` | `ssl` | path', default: 'official' });
    expect(keys.get('data.folders.pool')).toMatchObject({ type: 'path', required: true });
    expect(keys.get('experiment.name')).toMatchObject({ required: true });
    // keys that share one schema are documented once
    expect([...keys.keys()].filter((k) => k.startsWith('executor.slurm.<key>')).length).toBe(6);
    expect(keys.get('executor.slurm.<key>')!.description).toContain('`default`, `data`, `original`');
    expect(keys.has('executor.slurm.embed.gres')).toBe(false);
    // every top-level key of the schema has a section
    for (const top of ['experiment', 'data', 'original', 'failures', 'backbones', 'filter', 'select', 'methods', 'train', 'eval', 'report', 'compute', 'executor', 'seeds', 'world_seed'])
      expect(configReference()).toContain(`## \`${top}\``);
  });
});
