/**
 * `dcd embed`: penultimate features of a backbone for every image of a folder or
 * manifest, written as one Arrow IPC file (`id`, `embedding`, `label` when known) in
 * record batches of at most {@link EMBED_BATCH_ROWS} rows, streamed as the features come
 * (the embedding store reads a file batch by batch, so this bounds its memory); the file
 * is written under a temporary name and renamed only when complete. Unreadable images are skipped and listed in
 * `<out>.skipped.tsv`. `--shard I/N` embeds the images whose index in id order is ≡ I
 * (mod N); shards merge by concatenation ({@link mergeEmbeddings}).
 */
import { existsSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { currentBackend } from '../backends/chain.js';
import { ArtifactError, ConfigError, DataError } from '../core/errors.js';
import { atomicWriteFile, sha256File } from '../core/fsutil.js';
import { progress } from '../core/log.js';
import type { Preprocess } from '../core/types.js';
import { listImages } from '../data/adapters.js';
import type { ImageItem, SkippedImage } from '../data/images.js';
import { readManifest } from '../data/manifest.js';
import { EmbeddingStore, type EmbeddingChunk } from '../retrieval/store.js';
import { loadCheckpoint } from '../models/load.js';
import { createModel, getModelSpec } from '../models/registry.js';
import { EMBED_BATCH_ROWS, EmbeddingWriter, writeEmbeddings } from './embedding-writer.js';

/** Options of {@link embedImages}. */
export interface EmbedOptions {
  /** Registry name of the backbone. */
  backbone: string;
  /** Checkpoint file (any supported format), or `random` for a seeded random init. */
  weights: string;
  /** A folder of images (searched recursively) or a manifest `.arrow` file. */
  images: string;
  /** Output Arrow file. */
  out: string;
  batchSize?: number;
  /** Override the backbone's resize / crop. */
  resize?: number;
  crop?: number;
  /** Embed only part `index` of `count` (0 ≤ index < count). */
  shard?: { index: number; count: number };
  /** Seed of `--weights random`. */
  seed?: number;
  /** Images decoded in parallel. */
  concurrency?: number;
  /** Rows per Arrow record batch of the output (default {@link EMBED_BATCH_ROWS}). */
  recordBatchRows?: number;
}

/** What {@link embedImages} did. */
export interface EmbedSummary {
  out: string;
  rows: number;
  dim: number;
  skipped: SkippedImage[];
  /** Sidecar listing the skipped images, when there were any. */
  skippedFile?: string;
  seconds: number;
}

/** Parses `I/N` (0 ≤ I < N). */
export function parseShard(s: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index >= count) throw new ConfigError(`--shard: expected I/N with 0 ≤ I < N (e.g. 0/4), received "${s}"`);
  return { index, count };
}

const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The images of a folder or manifest, sorted by id, with labels when the input has them. */
export async function embedInputs(images: string): Promise<{ items: { id: string; path: string; label?: number }[]; hasLabels: boolean }> {
  if (!existsSync(images)) throw new DataError(`--images ${images}: no such folder or manifest`);
  if (statSync(images).isDirectory()) {
    const ids = listImages(images);
    return { items: ids.map((id) => ({ id, path: path.join(images, id) })), hasLabels: false };
  }
  if (!images.endsWith('.arrow')) throw new ConfigError(`--images ${images}: expected a folder of images or a manifest .arrow file`);
  const m = await readManifest(images);
  const base = path.dirname(path.resolve(images));
  const items = m.rows.map((r) => ({ id: r.id, path: path.resolve(base, r.path), label: r.label }));
  items.sort((a, b) => byCodePoint(a.id, b.id));
  return { items, hasLabels: true };
}

/**
 * Embeds images with a backbone and writes the Arrow file (see the module comment).
 * @throws DataError when the input holds no images or none could be read (no output then)
 */
export async function embedImages(opts: EmbedOptions): Promise<EmbedSummary> {
  const t0 = Date.now();
  const spec = getModelSpec(opts.backbone);
  const pre: Preprocess = { ...spec.preprocess, resize: opts.resize ?? spec.preprocess.resize, crop: opts.crop ?? opts.resize ?? spec.preprocess.crop };
  if (pre.crop > pre.resize) throw new ConfigError(`--crop ${pre.crop} is larger than --resize ${pre.resize}`);
  if (spec.arch.kind === 'vit' && pre.crop % spec.arch.config.patch !== 0)
    throw new ConfigError(`--crop ${pre.crop}: ${spec.name} needs a multiple of its patch size ${spec.arch.config.patch}`);
  const batchSize = opts.batchSize ?? 32;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError(`--batch-size: expected a positive integer, received ${batchSize}`);
  const { items: all, hasLabels } = await embedInputs(opts.images);
  if (all.length === 0) throw new DataError(`--images ${opts.images}: no images found (looked for .jpg, .jpeg, .png, .webp, ... recursively); nothing to embed, no output written`);
  const ids = new Set<string>();
  for (const it of all) {
    if (ids.has(it.id)) throw new DataError(`--images ${opts.images}: id ${it.id} appears twice; ids must be unique`);
    ids.add(it.id);
  }
  const shard = opts.shard ?? { index: 0, count: 1 };
  const items = all.filter((_, i) => i % shard.count === shard.index);
  const labels = new Map(items.map((i) => [i.id, i.label ?? -1]));

  const model = createModel(opts.backbone, { seed: opts.seed ?? 0 });
  try {
    let weightsSha: string;
    if (opts.weights === 'random') weightsSha = `random:seed=${opts.seed ?? 0}`;
    else {
      await loadCheckpoint(model, opts.weights);
      const f = statSync(opts.weights).isDirectory() ? path.join(opts.weights, 'weights.bin') : opts.weights;
      weightsSha = await sha256File(f);
    }
    const dim = model.numFeatures;
    const meta: Record<string, string> = {
      'dcd.backbone': opts.backbone,
      'dcd.weights_sha256': weightsSha,
      'dcd.weights_file': opts.weights === 'random' ? 'random' : path.basename(opts.weights),
      'dcd.preprocess': JSON.stringify(pre),
      'dcd.shard': `${shard.index}/${shard.count}`,
      'dcd.backend': currentBackend() ?? tf.getBackend(),
    };
    const skippedFile = `${opts.out}.skipped.tsv`;
    const bar = progress(`embed ${opts.backbone}`, items.length);
    const input: ImageItem[] = items.map(({ id, path: p }) => ({ id, path: p }));
    const { rows, skipped } = await writeEmbeddings(model, input, pre, {
      batchSize,
      concurrency: opts.concurrency ?? 2,
      onBatch: (n) => bar.tick(n),
      out: opts.out,
      metadata: meta,
      ...(hasLabels ? { labelOf: (id: string) => labels.get(id) ?? -1 } : {}),
      ...(opts.recordBatchRows !== undefined ? { recordBatchRows: opts.recordBatchRows } : {}),
      beforeClose: async ({ rows, skipped }) => {
        bar.stop();
        if (skipped.length) {
          const tsv = ['id\tpath\treason', ...skipped.map((s) => `${s.id}\t${s.path}\t${s.reason.replace(/[\t\n]/g, ' ')}`)].join('\n') + '\n';
          await atomicWriteFile(skippedFile, tsv);
        } else await rm(skippedFile, { force: true });
        if (items.length > 0 && rows === 0)
          throw new DataError(`--images ${opts.images}: none of the ${items.length} images could be read (reasons in ${skippedFile}); no output written`);
      },
    });
    return { out: opts.out, rows, dim, skipped, skippedFile: skipped.length ? skippedFile : undefined, seconds: (Date.now() - t0) / 1000 };
  } finally {
    model.dispose();
  }
}

/**
 * Merges `dcd embed` shard files into one (rows sorted by id, as an unsharded run
 * writes them). The shards must agree on backbone, weights and preprocessing, and no
 * id may repeat. Each shard is already sorted by id (dcd embed writes it so), so this is a
 * streaming k-way merge: memory holds one chunk per shard, whatever the shards' size.
 */
export async function mergeEmbeddings(files: string[], out: string, opts: { recordBatchRows?: number } = {}): Promise<{ rows: number }> {
  if (files.length === 0) throw new ConfigError('embed merge: give at least one shard file');
  const keys = ['dcd.backbone', 'dcd.weights_sha256', 'dcd.preprocess'];
  const stores: EmbeddingStore[] = [];
  for (const f of files) stores.push(await EmbeddingStore.open([f], { role: 'embed merge shard' }));
  const ref = stores[0]!.metadata;
  for (const [i, st] of stores.entries()) {
    for (const k of keys)
      if (st.metadata[k] !== ref[k]) throw new ArtifactError(`${files[i]}: ${k} is ${st.metadata[k]} but ${files[0]} has ${ref[k]}; shards of different runs cannot be merged`);
    if (st.dim !== stores[0]!.dim) throw new ArtifactError(`${files[i]}: embedding width ${st.dim} differs from ${stores[0]!.dim}`);
  }
  const dim = stores[0]!.dim;
  const withLabel = stores.every((st) => st.hasLabel);
  // one cursor per shard: its current chunk and row
  const CHUNK = 4096;
  // retain: EmbeddingWriter.add keeps views of the rows it is given until it flushes a batch
  const cursors = stores.map((st) => ({ it: st.chunks(CHUNK, { retain: true })[Symbol.asyncIterator](), chunk: undefined as EmbeddingChunk | undefined, row: 0, last: undefined as string | undefined }));
  // every row passes the loop below, which checks each shard's order
  const advance = async (c: (typeof cursors)[number]): Promise<void> => {
    if (c.chunk && ++c.row < c.chunk.rows) return;
    const n = await c.it.next();
    c.chunk = n.done ? undefined : n.value;
    c.row = 0;
    if (c.chunk && c.chunk.rows === 0) return advance(c);
  };
  for (const c of cursors) await advance(c);
  const meta = Object.fromEntries(Object.entries(ref).filter(([k]) => k.startsWith('dcd.') && k !== 'dcd.version' && k !== 'dcd.schema_version'));
  meta['dcd.shard'] = `merged:${files.length}`;
  const writer = await EmbeddingWriter.open(out, dim, withLabel, meta, opts.recordBatchRows);
  let rows = 0;
  let prev: string | undefined;
  try {
    for (;;) {
      let best = -1;
      for (const [i, c] of cursors.entries())
        if (c.chunk && (best < 0 || byCodePoint(c.chunk.ids[c.row]!, cursors[best]!.chunk!.ids[cursors[best]!.row]!) < 0)) best = i;
      if (best < 0) break;
      const c = cursors[best]!;
      const ch = c.chunk!;
      const id = ch.ids[c.row]!;
      if (prev !== undefined && id === prev) throw new ArtifactError(`embed merge: id ${id} appears in more than one shard`);
      if (c.last !== undefined && byCodePoint(id, c.last) < 0)
        throw new ArtifactError(`${files[best]}: ids are not sorted (${id} after ${c.last}); it was not written by dcd embed, re-create it`);
      writer.add([id], ch.data.subarray(c.row * dim, (c.row + 1) * dim), withLabel ? [ch.labels![c.row]!] : undefined);
      rows++;
      prev = c.last = id;
      await advance(c);
    }
    await writer.close();
  } catch (e) {
    await writer.abort();
    throw e;
  }
  return { rows };
}
