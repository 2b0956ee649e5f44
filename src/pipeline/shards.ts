/**
 * Row shards of one stage, for cluster job arrays: part `i` of `n` runs the stage's own
 * code on its rows of the image set (rows `j` with `j mod n = i`, or contiguous blocks of
 * whole batches where the stage sets `shardAlign`: embed; a subset written into the part's
 * folder stands in for the data stage's set), and the merge puts the parts' rows back in
 * the set's order into the stage's folder, where the runner writes the stage's usual
 * manifest. Downstream stages, their keys and a later local run see an ordinary
 * completed stage. Each image's features depend on that image alone, so the merged
 * file holds the same rows, ids, labels and features as an unsharded run's.
 *
 * Shardable: `embed` (per backbone and set: each image's features depend on that image
 * alone) and the leakage filter when enabled (each pool image is kept or removed by its
 * own distance to the test sets, against thresholds τ_y from train/test that every part
 * computes alike; the part sees its pool rows and their features). Parts live in
 * `<stage folder>/parts/<i>-of-<n>/` with a `part.json` written last.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ArtifactError } from '../core/errors.js';
import { buildTable } from '../core/arrow.js';
import { atomicWriteFile, atomicWriteJson, ensureDir, readJsonIfComplete, sha256 } from '../core/fsutil.js';
import { canonicalJson } from '../core/config.js';
import { EmbeddingStore, type EmbeddingChunk } from '../retrieval/store.js';
import { openArrowSink, type ArrowSink } from '../retrieval/output.js';
import { readImageSet, subsetImageSet, writeImageSet } from './imagesets.js';
import type { StageContext, StageOutputs, StageResult, StageSpec } from './stage-types.js';

/** Rows per record batch of a merged embedding file (as the embed stage writes them). */
const MERGE_BATCH_ROWS = 16384;

/** Stage kinds whose work splits into row shards. */
export const SHARDABLE_STAGES: readonly string[] = ['embed', 'filter', 'select'];

/** Whether `spec` can run as row shards. */
export function isShardable(spec: StageSpec): boolean {
  if (spec.shards) return true;
  const c = spec.config as { set?: unknown; enabled?: unknown } | null;
  if (spec.stage === 'embed') return typeof c?.set === 'string';
  if (spec.stage === 'filter') return c?.enabled === true && 'embed_pool' in spec.deps;
  return false;
}

/** The image set a shardable stage splits: embed's own set, the filter's pool. */
function shardedSet(spec: StageSpec): string {
  return spec.stage === 'embed' ? (spec.config as { set: string }).set : 'pool';
}

/** Which part row `j` of `n` belongs to: blocks of whole batches where the stage sets shardAlign, else j mod count. */
export function partOfRow(spec: StageSpec, n: number, count: number): (j: number) => number {
  const a = spec.shardAlign;
  if (!a) return (j) => j % count;
  const block = Math.ceil(Math.ceil(n / a) / count) * a;
  return (j) => Math.floor(j / block);
}

/** Folder of part `index` of `count` inside the stage's folder. */
export function partDir(stageFolder: string, index: number, count: number): string {
  return path.join(stageFolder, 'parts', `${index}-of-${count}`);
}

/** What a part records when it is done. */
interface PartRecord {
  index: number;
  count: number;
  input_hash: string;
  outputs: Record<string, string>;
  counts: Record<string, number>;
}

function readPart(dir: string): PartRecord | undefined {
  return readJsonIfComplete<PartRecord>(path.join(dir, 'part.json'));
}

/** `r` with output `name` replaced by `file` (a subset written elsewhere). */
function withFile(r: StageResult, name: string, file: string): StageResult {
  return {
    ...r,
    file(n: string) {
      return n === name ? file : r.file(n);
    },
  };
}

/** Writes the rows of embedding file `src` whose id is in `ids`, in file order, to `out` (same metadata). */
function subsetEmbeddings(src: string, ids: ReadonlySet<string>, out: string): Promise<number> {
  return subsetEmbeddingRows(src, (_, id) => ids.has(id), out);
}

/** Writes the rows `r` of embedding file `src` with `pick(r, id)`, in file order, to `out` (same metadata); returns their count. */
export async function subsetEmbeddingRows(src: string, pick: (row: number, id: string) => boolean, out: string): Promise<number> {
  const store = await EmbeddingStore.open([src], { role: 'embeddings' });
  const meta = Object.fromEntries(Object.entries(store.metadata).filter(([k]) => k !== 'dcd.version' && k !== 'dcd.schema_version'));
  const dim = store.dim;
  let sink: ArrowSink | undefined;
  let rows = 0;
  try {
    for await (const ch of store.chunks(MERGE_BATCH_ROWS)) {
      const rowsOf: number[] = [];
      for (let a = 0; a < ch.rows; a++) if (pick(ch.start + a, ch.ids[a]!)) rowsOf.push(a);
      if (!rowsOf.length && sink) continue;
      const feats = new Float32Array(rowsOf.length * dim);
      rowsOf.forEach((a, r) => feats.set(ch.data.subarray(a * dim, (a + 1) * dim), r * dim));
      const cols: Parameters<typeof buildTable>[0] = { id: { kind: 'utf8', values: rowsOf.map((a) => ch.ids[a]!) }, embedding: { kind: 'embedding', values: feats, dim } };
      if (ch.labels) cols.label = { kind: 'int32', values: Int32Array.from(rowsOf, (a) => ch.labels![a]!) };
      const t = buildTable(cols, meta);
      sink ??= await openArrowSink(out, t.schema, meta);
      for (const b of t.batches) sink.write(b);
      rows += rowsOf.length;
    }
    if (!sink) throw new ArtifactError(`${src}: no rows`);
    await sink.close();
  } catch (e) {
    await sink?.abort();
    throw e;
  }
  return rows;
}

/**
 * Runs part `index` of `count` of a shardable stage: its own code on its rows, into the
 * part folder. A part already done with the same inputs is kept.
 */
export async function runPart(spec: StageSpec, ctx: StageContext, inputHash: string, index: number, count: number): Promise<void> {
  const set = shardedSet(spec);
  const dir = partDir(ctx.dir, index, count);
  const prev = readPart(dir);
  if (prev && prev.input_hash === inputHash) {
    ctx.log(`part ${index}/${count} already done`);
    return;
  }
  if (spec.shards) {
    await ensureDir(dir);
    const outputs = await spec.shards.part(ctx, dir, index, count);
    await atomicWriteJson(path.join(dir, 'part.json'), { index, count, input_hash: inputHash, outputs, counts: {} } satisfies PartRecord);
    return;
  }
  await ensureDir(path.join(dir, 'input'));
  const data = ctx.inputs.data;
  if (!data) throw new ArtifactError(`${spec.stage}/${spec.label}: a sharded stage needs its data input`);
  const full = await readImageSet(data.file(set));
  const partOf = partOfRow(spec, full.rows.length, count);
  const rows = full.rows.flatMap((_, j) => (partOf(j) === index ? [j] : []));
  if (!rows.length) {
    // More parts than blocks of rows: this one has nothing to do.
    ctx.log(`part ${index}/${count}: no rows of ${set}`);
    await atomicWriteJson(path.join(dir, 'part.json'), { index, count, input_hash: inputHash, outputs: {}, counts: {} } satisfies PartRecord);
    return;
  }
  const files = await writeImageSet(path.join(dir, 'input'), subsetImageSet(full, rows, set));
  ctx.log(`part ${index}/${count}: ${rows.length} of ${full.rows.length} rows of ${set}`);
  const inputs: Record<string, StageResult> = { ...ctx.inputs, data: withFile(data, set, path.join(dir, 'input', files[set]!)) };
  if (spec.stage === 'filter') {
    // The filter reads the pool's features too: the part's rows of them.
    const emb = ctx.inputs.embed_pool!;
    const file = path.join(dir, 'input', 'pool-embeddings.arrow');
    await subsetEmbeddings(emb.file('embeddings'), new Set(rows.map((j) => full.rows[j]!.id)), file);
    inputs.embed_pool = withFile(emb, 'embeddings', file);
  }
  const out = await spec.run({ ...ctx, dir, inputs });
  const rec: PartRecord = { index, count, input_hash: inputHash, outputs: out.files, counts: out.counts ?? {} };
  await atomicWriteJson(path.join(dir, 'part.json'), rec);
}

/** The done parts of a stage, checked against its current inputs. */
function donePart(spec: StageSpec, ctx: StageContext, inputHash: string, count: number): PartRecord[] {
  const parts: PartRecord[] = [];
  for (let i = 0; i < count; i++) {
    const d = partDir(ctx.dir, i, count);
    const p = readPart(d);
    if (!p) throw new ArtifactError(`${spec.stage}/${spec.label}: part ${i}/${count} (${d}) is not done; run it first (--part ${i}/${count})`);
    if (p.input_hash !== inputHash) throw new ArtifactError(`${d}: computed from other inputs than the stage's current ones; delete ${path.join(ctx.dir, 'parts')} and rerun its parts`);
    parts.push(p);
  }
  return parts;
}

/**
 * Merges the `count` parts of a shardable stage into its folder, as the unsharded stage
 * would have written it.
 */
export async function mergeParts(spec: StageSpec, ctx: StageContext, inputHash: string, count: number): Promise<StageOutputs> {
  const parts = donePart(spec, ctx, inputHash, count);
  if (spec.shards) return spec.shards.merge(ctx, parts.map((_, i) => partDir(ctx.dir, i, count)));
  return spec.stage === 'filter' ? mergeFilter(ctx, parts, count) : mergeEmbed(spec, ctx, parts, count);
}

/** Filter parts → pool_filtered (the kept rows in pool order), removed.json in pool order, summed per-class summary. */
async function mergeFilter(ctx: StageContext, parts: PartRecord[], count: number): Promise<StageOutputs> {
  const pool = await readImageSet(ctx.inputs.data!.file('pool'));
  const at = new Map(pool.rows.map((r, i) => [r.id, i]));
  const kept = new Set<string>();
  const removed: { id: string }[] = [];
  type Summary = { kept: number; removed: number; per_class: { label: number; tau: number; pool: number; kept: number; removed: number; duplicates: number }[] };
  const perClass = new Map<number, Summary['per_class'][number]>();
  for (const [i, p] of parts.entries()) {
    const d = partDir(ctx.dir, i, count);
    for (const r of (await readImageSet(path.join(d, p.outputs.pool_filtered!))).rows) kept.add(r.id);
    removed.push(...(JSON.parse(readFileSync(path.join(d, 'removed.json'), 'utf8')) as { id: string }[]));
    const sm = JSON.parse(readFileSync(path.join(d, p.outputs.summary!), 'utf8')) as Summary;
    for (const c of sm.per_class) {
      const acc = perClass.get(c.label);
      if (!acc) perClass.set(c.label, { ...c });
      else {
        if (acc.tau !== c.tau) throw new ArtifactError(`filter part ${i}: τ of class ${c.label} is ${c.tau}, another part has ${acc.tau}; delete the parts folder and rerun`);
        for (const k of ['pool', 'kept', 'removed', 'duplicates'] as const) acc[k] += c[k];
      }
    }
  }
  removed.sort((a, b) => at.get(a.id)! - at.get(b.id)!);
  const idx = pool.rows.flatMap((r, i) => (kept.has(r.id) ? [i] : []));
  const files = await writeImageSet(ctx.dir, subsetImageSet(pool, idx, 'pool_filtered'));
  await atomicWriteJson(path.join(ctx.dir, 'removed.json'), removed);
  const summary = { kept: kept.size, removed: removed.length, per_class: [...perClass.values()].sort((a, b) => a.label - b.label) };
  await atomicWriteJson(path.join(ctx.dir, 'summary.json'), summary);
  ctx.log(`kept ${kept.size} of ${pool.rows.length} pool images (${count} parts)`);
  return { files: { ...files, summary: 'summary.json' }, counts: { pool: pool.rows.length, kept: idx.length } };
}

/** Embed parts → the embedding file with the rows in the set's order (rows a part skipped stay out, listed in skipped.tsv). */
async function mergeEmbed(spec: StageSpec, ctx: StageContext, parts: PartRecord[], count: number): Promise<StageOutputs> {
  const set = shardedSet(spec);
  const full = await readImageSet(ctx.inputs.data!.file(set));
  const partOf = partOfRow(spec, full.rows.length, count);
  const stores = await Promise.all(parts.map((p, i) => (p.outputs.embeddings ? EmbeddingStore.open([path.join(partDir(ctx.dir, i, count), p.outputs.embeddings)], { role: `${set} part ${i}/${count}` }) : undefined)));
  const first = stores.find((st) => st !== undefined);
  if (!first) throw new ArtifactError(`${spec.stage}/${spec.label}: no part has rows`);
  const dim = first.dim;
  const meta = Object.fromEntries(Object.entries(first.metadata).filter(([k]) => k.startsWith('dcd.') && k !== 'dcd.version' && k !== 'dcd.schema_version'));
  for (const [i, st] of stores.entries())
    if (st) for (const k of ['dcd.backbone', 'dcd.weights_sha256', 'dcd.preprocess'])
      if (st.metadata[k] !== meta[k]) throw new ArtifactError(`${spec.stage}/${spec.label}: part ${i} has ${k} ${st.metadata[k]}, part 0 ${meta[k]}; delete the parts folder and rerun`);
  const skipped: string[] = [];
  for (let i = 0; i < count; i++) {
    const f = path.join(partDir(ctx.dir, i, count), 'skipped.tsv');
    if (existsSync(f)) skipped.push(...readFileSync(f, 'utf8').split('\n').slice(1).filter(Boolean));
  }
  const skippedIds = new Set(skipped.map((l) => l.split('\t')[0]!));
  const cursors = stores.map((st) => ({ it: st ? st.chunks(4096)[Symbol.asyncIterator]() : undefined, chunk: undefined as EmbeddingChunk | undefined, row: 0 }));
  const advance = async (c: (typeof cursors)[number]): Promise<void> => {
    if (!c.it) return;
    if (c.chunk && ++c.row < c.chunk.rows) return;
    const n = await c.it!.next();
    c.chunk = n.done ? undefined : n.value;
    c.row = 0;
    if (c.chunk && c.chunk.rows === 0) return advance(c);
  };
  for (const c of cursors) await advance(c);
  const file = path.join(ctx.dir, `${set}.arrow`);
  let sink: ArrowSink | undefined;
  let pend = { ids: [] as string[], feats: new Float32Array(MERGE_BATCH_ROWS * dim), labels: [] as number[] };
  let rows = 0;
  const flush = async () => {
    if (!pend.ids.length && sink) return;
    const t = buildTable(
      { id: { kind: 'utf8', values: pend.ids }, embedding: { kind: 'embedding', values: pend.feats.slice(0, pend.ids.length * dim), dim }, label: { kind: 'int32', values: Int32Array.from(pend.labels) } },
      meta,
    );
    sink ??= await openArrowSink(file, t.schema, meta);
    for (const b of t.batches) sink.write(b);
    rows += pend.ids.length;
    pend = { ids: [], feats: pend.feats, labels: [] };
  };
  try {
    for (let j = 0; j < full.rows.length; j++) {
      const id = full.rows[j]!.id;
      const c = cursors[partOf(j)]!;
      const ch = c.chunk;
      if (!ch || ch.ids[c.row] !== id) {
        if (skippedIds.has(id)) continue;
        throw new ArtifactError(`${spec.stage}/${spec.label}: part ${partOf(j)}/${count} has ${ch ? `id ${ch.ids[c.row]}` : 'no more rows'} where the set has ${id}; delete the parts folder and rerun`);
      }
      pend.feats.set(ch.data.subarray(c.row * dim, (c.row + 1) * dim), pend.ids.length * dim);
      pend.ids.push(id);
      pend.labels.push(ch.labels ? ch.labels[c.row]! : -1);
      await advance(c);
      if (pend.ids.length >= MERGE_BATCH_ROWS) await flush();
    }
    for (const [i, c] of cursors.entries()) if (c.chunk) throw new ArtifactError(`${spec.stage}/${spec.label}: part ${i}/${count} has rows the set does not (${c.chunk.ids[c.row]}); delete the parts folder and rerun`);
    await flush();
    await sink!.close();
  } catch (e) {
    await sink?.abort();
    throw e;
  }
  if (skipped.length) await atomicWriteFile(path.join(ctx.dir, 'skipped.tsv'), ['id\treason', ...skipped].join('\n') + '\n');
  return { files: { embeddings: `${set}.arrow` }, counts: { rows, skipped: skipped.length } };
}

/** A stable hash of a stage's inputs (as the runner records them), for parts. */
export function partInputHash(inputs: Record<string, string>): string {
  return sha256(canonicalJson(inputs));
}
