/**
 * How `EmbeddingStore.chunks` hands out a file's embeddings (src/retrieval/store.ts): a view of
 * the record batch's own buffer where the layout allows, one reused copy buffer per stream
 * otherwise (normalisation), a fresh array per chunk with `retain`, and with `transient` every
 * record batch read into one reused buffer. Every mode must give the values of the file, row
 * for row, across several record batches and chunks that split them; bad values are refused in
 * every mode with the file and the row in the file; and Algorithm 1 streaming the file (which
 * asks for `transient`) selects exactly what it selects from the same rows in memory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Table } from 'apache-arrow';
import { makeColumn } from '../src/core/arrow.js';
import { initBackend } from '../src/backends/chain.js';
import { mulberry32 } from '../src/core/rng.js';
import { l2NormalizeRows } from '../src/retrieval/knn.js';
import { openArrowSink } from '../src/retrieval/output.js';
import { selectAlgorithm1 } from '../src/retrieval/select.js';
import { EmbeddingStore, type EmbeddingChunk } from '../src/retrieval/store.js';
import { registerNativeBackend } from '../src/backends/native.js';

const NATIVE = registerNativeBackend().ok;
let backend = '';
beforeAll(async () => {
  await initBackend(undefined, { quiet: true });
  backend = tf.getBackend();
});
afterAll(async () => {
  await tf.setBackend(backend);
});

const tmp = () => mkdtempSync(path.join(tmpdir(), 'dcd-store-'));

/** Writes rows [n, dim] in record batches of `batch` rows (ids r0.., labels `label(i)`). */
async function writeFile(file: string, data: Float32Array, dim: number, batch: number, label: (i: number) => number): Promise<void> {
  const n = data.length / dim;
  let sink: Awaited<ReturnType<typeof openArrowSink>> | null = null;
  for (let s = 0; s < n; s += batch) {
    const r = Math.min(batch, n - s);
    const t = new Table({
      id: makeColumn({ kind: 'utf8', values: Array.from({ length: r }, (_, i) => `r${s + i}`) }),
      embedding: makeColumn({ kind: 'embedding', values: data.slice(s * dim, (s + r) * dim), dim }),
      label: makeColumn({ kind: 'int32', values: Int32Array.from({ length: r }, (_, i) => label(s + i)) }),
    });
    sink ??= await openArrowSink(file, t.schema, { 'dcd.backbone': 'test' });
    for (const b of t.batches) sink.write(b);
  }
  await sink!.close();
}

/** Every chunk's rows copied out while the chunk is current (so any lifetime is respected), plus what the stream handed out. */
async function drain(it: AsyncIterable<EmbeddingChunk>, dim: number) {
  const rows: number[][] = [];
  const ids: string[] = [];
  const starts: number[] = [];
  const buffers: ArrayBufferLike[] = [];
  for await (const ch of it) {
    starts.push(ch.start);
    buffers.push(ch.data.buffer);
    for (let a = 0; a < ch.rows; a++) rows.push(Array.from(ch.data.subarray(a * dim, (a + 1) * dim)));
    ids.push(...ch.ids);
    expect(ch.batch?.numRows).toBe(ch.rows);
  }
  return { rows, ids, starts, distinctBuffers: new Set(buffers).size, chunks: buffers.length };
}

describe('EmbeddingStore.chunks: views, reused buffers and retain', () => {
  const dim = 5;
  const n = 23;
  const rnd = mulberry32(3);
  const data = Float32Array.from({ length: n * dim }, () => rnd() * 4 - 2);
  const want = Array.from({ length: n }, (_, j) => Array.from(data.subarray(j * dim, (j + 1) * dim)));

  it('gives the file’s values row for row in every mode, over batches of 7 cut into chunks of 3', async () => {
    const file = path.join(tmp(), 'pool.arrow');
    await writeFile(file, data, dim, 7, (i) => i % 3);
    const store = await EmbeddingStore.open([file], { role: 'pool', requireLabel: true });
    const ids = Array.from({ length: n }, (_, j) => `r${j}`);
    const starts = [0, 3, 6, 7, 10, 13, 14, 17, 20, 21];
    for (const opts of [{}, { retain: true }, { transient: true }]) {
      const got = await drain(store.chunks(3, opts), dim);
      expect(got.rows).toEqual(want);
      expect(got.ids).toEqual(ids);
      expect(got.starts).toEqual(starts);
      // views of each batch's own buffer (4 batches; retain changes nothing for views); transient: one buffer for the stream
      expect(got.distinctBuffers).toBe('transient' in opts ? 1 : 4);
    }
    // retain: chunks kept past the next one still hold their rows
    const kept: EmbeddingChunk[] = [];
    for await (const ch of store.chunks(3, { retain: true })) kept.push(ch);
    expect(kept.flatMap((ch) => Array.from({ length: ch.rows }, (_, a) => Array.from(ch.data.subarray(a * dim, (a + 1) * dim))))).toEqual(want);
    expect((await store.readAll()).data).toEqual(data);
    await expect(store.chunks(3, { retain: true, transient: true }).next()).rejects.toThrow(/retain and transient exclude each other/);
  });

  it('normalises into one reused buffer per stream (not the file’s buffer), or fresh arrays with retain', async () => {
    const file = path.join(tmp(), 'pool.arrow');
    await writeFile(file, data, dim, 7, (i) => i % 3);
    const store = await EmbeddingStore.open([file], { role: 'pool', normalize: true });
    const unit = l2NormalizeRows(Float32Array.from(data), dim);
    const wantUnit = Array.from({ length: n }, (_, j) => Array.from(unit.subarray(j * dim, (j + 1) * dim)));
    const reused = await drain(store.chunks(4), dim);
    expect(reused.rows).toEqual(wantUnit);
    expect(reused.distinctBuffers).toBe(1);
    const fresh = await drain(store.chunks(4, { retain: true }), dim);
    expect(fresh.rows).toEqual(wantUnit);
    expect(fresh.distinctBuffers).toBe(fresh.chunks);
    // readAll keeps every chunk: it must not be handed the reused buffer
    const all = await store.readAll();
    expect(Array.from(all.data)).toEqual(Array.from(unit));
    // the batches (written out by `dcd filter`) keep the file's values
    for await (const ch of store.chunks(4)) {
      const raw = ch.batch!.getChild('embedding')!.get(0)!.toArray() as Float32Array;
      expect(Array.from(raw)).toEqual(want[ch.start]);
    }
  });

  it('refuses NaN/Inf in every mode, naming the file and the row in the file', async () => {
    const root = tmp();
    const bad = Float32Array.from(data);
    bad[17 * dim + 2] = NaN;
    const file = path.join(root, 'nan.arrow');
    await writeFile(file, bad, dim, 7, () => 0);
    for (const normalize of [false, true]) {
      const store = await EmbeddingStore.open([file], { role: 'pool', normalize });
      for (const opts of [{}, { retain: true }, { transient: true }]) {
        const it = async () => {
          for await (const ch of store.chunks(3, opts)) void ch;
        };
        await expect(it()).rejects.toThrow(/nan\.arrow: column embedding: value NaN in row 17 \(element 2\)/);
      }
    }
    const inf = Float32Array.from(data);
    inf[22 * dim] = -Infinity;
    const file2 = path.join(root, 'inf.arrow');
    await writeFile(file2, inf, dim, 7, () => 0);
    await expect((await EmbeddingStore.open([file2], { role: 'pool' })).readAll()).rejects.toThrow(/inf\.arrow: column embedding: value -Infinity in row 22 \(element 0\)/);
  });
});

describe('Algorithm 1 streaming a multi-batch file selects what it selects in memory', () => {
  for (const name of NATIVE ? ['native', 'cpu'] : ['cpu'])
    it(`${name} backend: same picks, seeds, ranks and distances`, async () => {
      await initBackend(name, { quiet: true });
      const dim = 8;
      const n = 3000;
      const classes = 4;
      const rnd = mulberry32(11);
      const data = Float32Array.from({ length: n * dim }, () => rnd());
      const labels = Int32Array.from({ length: n }, () => Math.floor(rnd() * classes));
      const file = path.join(tmp(), 'pool.arrow');
      await writeFile(file, data, dim, 700, (i) => labels[i]!);
      const nSeeds = 12;
      const seeds = {
        ids: Array.from({ length: nSeeds }, (_, i) => `s${i}`),
        labels: Int32Array.from({ length: nSeeds }, (_, i) => i % classes),
        data: Float32Array.from({ length: nSeeds * dim }, () => rnd()),
        dim,
      };
      const opts = { k: 5, kVal: 2, memoryBudgetMiB: 16 };
      const fromFile = await selectAlgorithm1(seeds, await EmbeddingStore.open([file], { role: 'pool', requireLabel: true }), opts);
      const ids = Array.from({ length: n }, (_, j) => `r${j}`);
      const inMemory = await selectAlgorithm1(seeds, EmbeddingStore.fromArrays('pool', { ids, labels, data, dim }), opts);
      expect(fromFile.train.ids.length).toBe(nSeeds * opts.k);
      expect(fromFile).toEqual(inMemory);
    });
});
