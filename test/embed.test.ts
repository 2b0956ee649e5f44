import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { tableFromIPC } from 'apache-arrow';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { captureCli } from './cli-capture.js';
import { readArrowFile, embeddingMatrix, stringColumn, metadataOf, int32Column } from '../src/core/arrow.js';
import { sha256File } from '../src/core/fsutil.js';
import { DCD_VERSION } from '../src/core/version.js';
import { loadImage } from '../src/data/images.js';
import { writeManifest } from '../src/data/manifest.js';
import { createModel, getModelSpec } from '../src/models/registry.js';
import { saveCheckpoint } from '../src/models/load.js';
import { EmbeddingStore } from '../src/retrieval/store.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'dcd-embed-'));
const imgs = path.join(tmp, 'imgs');
const weights = path.join(tmp, 'tiny.safetensors');

const cli = captureCli;

beforeAll(async () => {
  mkdirSync(path.join(imgs, 'b dir'), { recursive: true });
  // 7 good images of assorted sizes (one already 32×32), one corrupt, one truncated, one non-image file.
  for (let i = 0; i < 7; i++) {
    const w = i === 0 ? 32 : 40 + 3 * i;
    const h = i === 0 ? 32 : 34 + 5 * (i % 3);
    const raw = Buffer.alloc(w * h * 3);
    for (let j = 0; j < raw.length; j++) raw[j] = (j * (i + 3) + i * 17) % 256;
    const file = path.join(imgs, i < 4 ? '' : 'b dir', `img${i}.${i % 2 ? 'png' : 'jpg'}`);
    await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).toFile(file);
  }
  writeFileSync(path.join(imgs, 'corrupt.jpg'), 'this is not a jpeg');
  const good = readFileSync(path.join(imgs, 'img1.png'));
  writeFileSync(path.join(imgs, 'b dir', 'truncated.png'), good.subarray(0, 60));
  writeFileSync(path.join(imgs, 'README.txt'), 'not an image');
  const m = createModel('resnet_tiny', { seed: 42 });
  await saveCheckpoint(m, weights, 'safetensors');
  m.dispose();
});

describe('dcd embed', () => {
  it('folder → Arrow: relative /-separated ids, features equal the model, metadata, skipped sidecar', async () => {
    const out = path.join(tmp, 'all.arrow');
    const r = await cli(['embed', '--backbone', 'resnet_tiny', '--weights', weights, '--images', imgs, '--out', out, '--batch-size', '3', '--backend', 'cpu']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/embedded 7 images \(128-d\), skipped 2 \(listed in .*all\.arrow\.skipped\.tsv\)/);
    const t = await readArrowFile(out);
    const ids = stringColumn(t, 'id');
    expect(ids).toEqual(['b dir/img4.jpg', 'b dir/img5.png', 'b dir/img6.jpg', 'img0.jpg', 'img1.png', 'img2.jpg', 'img3.png']);
    expect(t.schema.fields.map((f) => f.name)).toEqual(['id', 'embedding']);
    const meta = metadataOf(t);
    expect(meta['dcd.backbone']).toBe('resnet_tiny');
    expect(meta['dcd.weights_sha256']).toBe(await sha256File(weights));
    expect(JSON.parse(meta['dcd.preprocess']!)).toMatchObject({ resize: 32, crop: 32 });
    expect(meta['dcd.version']).toBe(DCD_VERSION);
    const skipped = readFileSync(`${out}.skipped.tsv`, 'utf8').trim().split('\n');
    expect(skipped[0]).toBe('id\tpath\treason');
    expect(skipped.slice(1).map((l) => l.split('\t')[0]).sort()).toEqual(['b dir/truncated.png', 'corrupt.jpg']);
    // The embeddings are the model's features of the preprocessed images.
    const { data, dim } = embeddingMatrix(t);
    expect(dim).toBe(128);
    await tf.setBackend('cpu');
    const m = createModel('resnet_tiny', { seed: 1 });
    const { loadCheckpoint } = await import('../src/models/load.js');
    await loadCheckpoint(m, weights);
    const pre = getModelSpec('resnet_tiny').preprocess;
    const px = await loadImage(path.join(imgs, 'b dir/img5.png'), pre);
    const f = tf.tidy(() => m.forwardFeatures(tf.tensor4d(px, [1, 32, 32, 3])));
    const ref = f.dataSync();
    const row = data.subarray(1 * dim, 2 * dim);
    for (let i = 0; i < dim; i++) expect(row[i]).toBeCloseTo(ref[i]!, 4);
    f.dispose();
    m.dispose();
  });

  it('--shard I/N: disjoint parts whose merge equals the unsharded run', async () => {
    const full = await readArrowFile(path.join(tmp, 'all.arrow'));
    const parts: string[] = [];
    for (const s of ['0/3', '1/3', '2/3']) {
      const out = path.join(tmp, `shard${s[0]}.arrow`);
      const r = await cli(['embed', '--backbone', 'resnet_tiny', '--weights', weights, '--images', imgs, '--out', out, '--shard', s, '--backend', 'cpu']);
      expect(r.code, r.err).toBe(0);
      parts.push(out);
    }
    const sets = await Promise.all(parts.map(async (p) => stringColumn(await readArrowFile(p), 'id')));
    const all = sets.flat();
    expect(new Set(all).size).toBe(all.length);
    expect(all.sort()).toEqual(stringColumn(full, 'id').slice().sort());
    const merged = path.join(tmp, 'merged.arrow');
    const r = await cli(['embed', 'merge', ...parts.reverse(), '--out', merged]);
    expect(r.code, r.err).toBe(0);
    const mt = await readArrowFile(merged);
    expect(stringColumn(mt, 'id')).toEqual(stringColumn(full, 'id'));
    expect(Array.from(embeddingMatrix(mt).data)).toEqual(Array.from(embeddingMatrix(full).data));
    expect(metadataOf(mt)['dcd.weights_sha256']).toBe(metadataOf(full)['dcd.weights_sha256']);
    // Shards of another run refuse to merge.
    const other = path.join(tmp, 'other.arrow');
    expect((await cli(['embed', '--backbone', 'resnet_tiny', '--weights', 'random', '--images', imgs, '--out', other, '--shard', '0/3', '--backend', 'cpu'])).code).toBe(0);
    const bad = await cli(['embed', 'merge', parts[0]!, other, '--out', path.join(tmp, 'bad-merge.arrow')]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/dcd\.weights_sha256/);
    expect(existsSync(path.join(tmp, 'bad-merge.arrow'))).toBe(false);
  });

  it('embedImages leaks no tensor', async () => {
    const { embedImages } = await import('../src/infer/embed.js');
    await tf.setBackend('cpu');
    const before = tf.memory().numTensors;
    const s = await embedImages({ backbone: 'vit_tiny', weights: 'random', images: imgs, out: path.join(tmp, 'leak.arrow'), batchSize: 4 });
    expect(s.rows).toBe(7);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a manifest gives ids from the manifest and a label column', async () => {
    const man = path.join(tmp, 'm.arrow');
    await writeManifest(man, [
      { id: 'x/one', path: path.join(imgs, 'img0.jpg'), label: 3, wnid: 'n1', class_name: 'a', set: 'seed' },
      { id: 'x/two', path: path.join(imgs, 'img1.png'), label: -1, wnid: 'n2', class_name: 'b', set: 'seed' },
      { id: 'x/bad', path: path.join(imgs, 'corrupt.jpg'), label: 1, wnid: 'n2', class_name: 'b', set: 'seed' },
    ]);
    const out = path.join(tmp, 'man-emb.arrow');
    const r = await cli(['embed', '--backbone', 'vit_tiny', '--weights', 'random', '--images', man, '--out', out, '--backend', 'cpu']);
    expect(r.code, r.err).toBe(0);
    const t = await readArrowFile(out);
    expect(stringColumn(t, 'id')).toEqual(['x/one', 'x/two']);
    expect(Array.from(int32Column(t, 'label'))).toEqual([3, -1]);
    expect(embeddingMatrix(t).dim).toBe(64);
  });

  it('bad input: empty folder, only corrupt images, bad checkpoint, bad flags → non-zero exit, no output', async () => {
    const empty = path.join(tmp, 'empty');
    mkdirSync(empty);
    const o1 = path.join(tmp, 'e1.arrow');
    const r1 = await cli(['embed', '--backbone', 'resnet_tiny', '--weights', 'random', '--images', empty, '--out', o1, '--backend', 'cpu']);
    expect(r1.code).toBe(1);
    expect(r1.err).toMatch(/empty: no images found/);
    expect(existsSync(o1)).toBe(false);

    const bad = path.join(tmp, 'allbad');
    mkdirSync(bad);
    writeFileSync(path.join(bad, 'a.jpg'), 'garbage');
    writeFileSync(path.join(bad, 'b.png'), '');
    const o2 = path.join(tmp, 'e2.arrow');
    const r2 = await cli(['embed', '--backbone', 'resnet_tiny', '--weights', 'random', '--images', bad, '--out', o2, '--backend', 'cpu']);
    expect(r2.code).toBe(1);
    expect(r2.err).toMatch(/none of the 2 images could be read/);
    expect(existsSync(o2)).toBe(false);
    expect(readFileSync(`${o2}.skipped.tsv`, 'utf8').split('\n').filter(Boolean)).toHaveLength(3);

    const trunc = path.join(tmp, 'trunc.safetensors');
    writeFileSync(trunc, readFileSync(weights).subarray(0, 5000));
    const o3 = path.join(tmp, 'e3.arrow');
    const r3 = await cli(['embed', '--backbone', 'resnet_tiny', '--weights', trunc, '--images', imgs, '--out', o3, '--backend', 'cpu']);
    expect(r3.code).toBe(1);
    expect(r3.err).toMatch(/trunc\.safetensors: .*truncated/);
    expect(existsSync(o3)).toBe(false);

    const o4 = path.join(tmp, 'e4.arrow');
    const r4 = await cli(['embed', '--backbone', 'resnet_tiny', '--weights', 'random', '--images', imgs, '--out', o4, '--shard', '3/3', '--backend', 'cpu']);
    expect(r4.code).toBe(2);
    expect(r4.err).toMatch(/--shard: expected I\/N/);
    const r5 = await cli(['embed', '--backbone', 'vit_tiny', '--weights', 'random', '--images', imgs, '--out', o4, '--crop', '30', '--resize', '32', '--backend', 'cpu']);
    expect(r5.code).toBe(2);
    expect(r5.err).toMatch(/multiple of its patch size 8/);
    expect(existsSync(o4)).toBe(false);
    // A failed run leaves no partial file under a temporary name either.
    expect(readdirSync(tmp).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('writes record batches of ≤ recordBatchRows rows, streamed by the embedding store; merge too', async () => {
    const { embedImages, mergeEmbeddings } = await import('../src/infer/embed.js');
    await tf.setBackend('cpu');
    const out = path.join(tmp, 'batched.arrow');
    const s = await embedImages({ backbone: 'resnet_tiny', weights, images: imgs, out, batchSize: 2, recordBatchRows: 3 });
    expect(s.rows).toBe(7);
    const batches = tableFromIPC(readFileSync(out)).batches.map((b) => b.numRows);
    expect(batches).toEqual([3, 3, 1]);
    // Same rows, in the same order and with the same features, as the one-batch run above.
    const full = await readArrowFile(path.join(tmp, 'all.arrow'));
    const t = await readArrowFile(out);
    expect(stringColumn(t, 'id')).toEqual(stringColumn(full, 'id'));
    const a = embeddingMatrix(t).data;
    const b = embeddingMatrix(full).data;
    for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i]!, 5);
    const store = await EmbeddingStore.open([out], { role: 'pool' });
    const chunks: number[] = [];
    for await (const ch of store.chunks(1000)) chunks.push(ch.rows);
    expect(chunks).toEqual([3, 3, 1]);
    const merged = path.join(tmp, 'batched-merged.arrow');
    await mergeEmbeddings([out], merged, { recordBatchRows: 4 });
    expect(tableFromIPC(readFileSync(merged)).batches.map((x) => x.numRows)).toEqual([4, 3]);
    expect(stringColumn(await readArrowFile(merged), 'id')).toEqual(stringColumn(full, 'id'));
  });

  it('merge is a streaming k-way merge of sorted shards: interleaved ids, many chunks, unsorted and duplicate ids refused', async () => {
    const { mergeEmbeddings } = await import('../src/infer/embed.js');
    const { EmbeddingWriter } = await import('../src/infer/embedding-writer.js');
    const dim = 3;
    const meta = { 'dcd.backbone': 'x', 'dcd.weights_sha256': 'w', 'dcd.preprocess': 'p' };
    const write = async (file: string, ids: string[]) => {
      const w = await EmbeddingWriter.open(file, dim, true, meta, 1000);
      for (const id of ids) w.add([id], Float32Array.from([Number(id.slice(1)), 1, 2]), [Number(id.slice(1)) % 7]);
      await w.close();
    };
    // 3 shards of 5,000 ids each (i mod 3), more rows than one merge chunk per shard
    const ids = Array.from({ length: 15000 }, (_, i) => `r${String(i).padStart(5, '0')}`);
    const shards = [0, 1, 2].map((k) => path.join(tmp, `kway-${k}.arrow`));
    for (const [k, f] of shards.entries()) await write(f, ids.filter((_, i) => i % 3 === k));
    const out = path.join(tmp, 'kway.arrow');
    expect((await mergeEmbeddings(shards.slice().reverse(), out)).rows).toBe(15000);
    const t = await readArrowFile(out);
    expect(stringColumn(t, 'id')).toEqual(ids);
    const e = embeddingMatrix(t).data;
    expect([e[0], e[3 * 12345], e[3 * 14999 + 2]]).toEqual([0, 12345, 2]);
    expect(Array.from(int32Column(t, 'label').subarray(0, 8))).toEqual([0, 1, 2, 3, 4, 5, 6, 0]);
    // a shard that is not sorted by id, and an id in two shards: refused, no output file
    const unsorted = path.join(tmp, 'kway-unsorted.arrow');
    await write(unsorted, ['r00002', 'r00001']);
    await expect(mergeEmbeddings([shards[0]!, unsorted], path.join(tmp, 'kway-bad.arrow'))).rejects.toThrow(/kway-unsorted\.arrow: ids are not sorted/);
    await expect(mergeEmbeddings([shards[0]!, shards[0]!], path.join(tmp, 'kway-bad.arrow'))).rejects.toThrow(/appears in more than one shard/);
    expect(existsSync(path.join(tmp, 'kway-bad.arrow'))).toBe(false);
  });
});
