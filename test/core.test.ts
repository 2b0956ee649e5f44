import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { buildTable, embeddingMatrix, metadataOf, readArrowFile, stringColumn, int32Column, writeArrowFile } from '../src/core/arrow.js';
import { initBackend } from '../src/backends/chain.js';
import { ConfigError } from '../src/core/errors.js';

describe('arrow artifacts', () => {
  it('round-trips ids, embeddings, labels and metadata through an IPC file', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-core-'));
    const emb = Float32Array.from({ length: 12 }, (_, i) => i * 0.5);
    const t = buildTable(
      { id: { kind: 'utf8', values: ['a.png', 'b/c.png', 'd.png'] }, embedding: { kind: 'embedding', values: emb, dim: 4 }, label: { kind: 'int32', values: [3, -1, 7] } },
      { 'dcd.backbone': 'resnet18_tiny' },
    );
    const f = path.join(dir, 'x.arrow');
    await writeArrowFile(f, t);
    expect(readdirSync(dir)).toEqual(['x.arrow']);
    const back = await readArrowFile(f);
    expect(stringColumn(back, 'id')).toEqual(['a.png', 'b/c.png', 'd.png']);
    expect(Array.from(int32Column(back, 'label'))).toEqual([3, -1, 7]);
    const m = embeddingMatrix(back);
    expect(m.dim).toBe(4);
    expect(Array.from(m.data)).toEqual(Array.from(emb));
    expect(metadataOf(back)['dcd.backbone']).toBe('resnet18_tiny');
    expect(metadataOf(back)['dcd.schema_version']).toBe('1');
    // a sliced table (and a table of several batches) reads the rows it holds, not its parent's first rows
    const sliced = back.slice(1, 3);
    expect(Array.from(embeddingMatrix(sliced).data)).toEqual(Array.from(emb.subarray(4, 12)));
    expect(Array.from(embeddingMatrix(back.slice(2).concat(back.slice(0, 1))).data)).toEqual([...emb.subarray(8, 12), ...emb.subarray(0, 4)]);
  });
  it('names the file and the missing column', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-core-'));
    const f = path.join(dir, 'y.arrow');
    await writeArrowFile(f, buildTable({ id: { kind: 'utf8', values: ['a'] } }));
    expect(() => embeddingMatrix(readArrowFileSyncHack(), 'embedding', f)).toThrow(/y\.arrow: missing column\(s\) embedding/);
    function readArrowFileSyncHack() {
      return buildTable({ id: { kind: 'utf8', values: ['a'] } });
    }
  });
});

describe('backend choice', () => {
  it('picks wasm when no native backend is present and rejects unknown names', async () => {
    const name = await initBackend(undefined, { quiet: true });
    expect(['tensorflow', 'native', 'wasm']).toContain(name);
    expect(tf.getBackend()).toBe(name);
    await expect(initBackend('nope', { quiet: true })).rejects.toThrow(ConfigError);
  });
});
