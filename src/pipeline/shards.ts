/**
 * Row shards of one stage, for cluster job arrays. A stage that splits its work into rows
 * sets {@link StageSpec.shards}: `part(i, n)` computes its share into
 * `<stage folder>/parts/<i>-of-<n>/` (a `part.json` is written last) and `merge` turns the
 * parts into the stage's usual outputs, in the stage's folder, where the runner writes its
 * manifest. Downstream stages, their keys and a later local run see an ordinary completed
 * stage. {@link setRowShards} builds the hook of a stage whose rows are those of one image set
 * and each row's result depends on that row alone (each stage says why that holds of it).
 */
import path from 'node:path';
import { ArtifactError } from '../core/errors.js';
import { buildTable } from '../core/arrow.js';
import { atomicWriteJson, ensureDir, readJsonIfComplete } from '../core/fsutil.js';
import { EmbeddingStore } from '../retrieval/store.js';
import { openArrowSink, type ArrowSink } from '../retrieval/output.js';
import { readImageSet, subsetImageSet, writeImageSet } from './imagesets.js';
import type { StageContext, StageOutputs, StageResult, StageSpec } from './stage-types.js';

/** Rows per record batch of an embedding file written from chunks (as the embed stage writes them). */
export const EMBEDDING_BATCH_ROWS = 16384;

/** Whether `spec` can run as row shards. */
export function isShardable(spec: StageSpec): boolean {
  return spec.shards !== undefined;
}

/** Which part row `j` of `n` belongs to: blocks of whole batches where the stage sets shardAlign, else j mod count. */
export function partOfRow(spec: Pick<StageSpec, 'shardAlign'>, n: number, count: number): (j: number) => number {
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
}

function readPart(dir: string): PartRecord | undefined {
  return readJsonIfComplete<PartRecord>(path.join(dir, 'part.json'));
}

/** `r` with output `name` replaced by `file` (a subset written elsewhere). */
export function withFile(r: StageResult, name: string, file: string): StageResult {
  return {
    ...r,
    file(n: string) {
      return n === name ? file : r.file(n);
    },
  };
}


/** Writes the rows `r` of embedding file `src` with `pick(r, id)`, in file order, to `out` (same metadata); returns their count. */
export async function subsetEmbeddingRows(src: string, pick: (row: number, id: string) => boolean, out: string): Promise<number> {
  const store = await EmbeddingStore.open([src], { role: 'embeddings' });
  const meta = Object.fromEntries(Object.entries(store.metadata).filter(([k]) => k !== 'dcd.version' && k !== 'dcd.schema_version'));
  const dim = store.dim;
  let sink: ArrowSink | undefined;
  let rows = 0;
  try {
    for await (const ch of store.chunks(EMBEDDING_BATCH_ROWS)) {
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
 * Runs part `index` of `count` of a shardable stage into the part folder. A part already
 * done with the same inputs is kept.
 */
export async function runPart(spec: StageSpec, ctx: StageContext, inputHash: string, index: number, count: number): Promise<void> {
  const dir = partDir(ctx.dir, index, count);
  const prev = readPart(dir);
  if (prev && prev.input_hash === inputHash) {
    ctx.log(`part ${index}/${count} already done`);
    return;
  }
  if (!spec.shards) throw new ArtifactError(`${spec.stage}/${spec.label}: the stage does not split into row shards`);
  await ensureDir(dir);
  const outputs = await spec.shards.part(ctx, dir, index, count);
  await atomicWriteJson(path.join(dir, 'part.json'), { index, count, input_hash: inputHash, outputs } satisfies PartRecord);
}

/** A done part as a stage's merge sees it: its folder and the files its `part` returned. */
export interface PartOutputs {
  dir: string;
  outputs: Record<string, string>;
}

/**
 * The shards hook of a stage whose rows are the rows of image set `set` of its `data` input,
 * each computed from that row alone: part `i` runs the stage's own `run` on its rows (rows
 * `j mod n = i`, or blocks of whole batches where the stage sets `shardAlign`), with a subset
 * of the set written into the part's folder in place of the data stage's; `narrow` gives the
 * part's versions of the stage's other row-wise inputs. `merge` puts the parts' rows back.
 */
export function setRowShards(o: {
  set: string;
  shardAlign?: number;
  run: StageSpec['run'];
  narrow?: (ctx: StageContext, inputDir: string, ids: ReadonlySet<string>) => Promise<Record<string, StageResult>>;
  merge: (ctx: StageContext, parts: readonly PartOutputs[]) => Promise<StageOutputs>;
}): NonNullable<StageSpec['shards']> {
  return {
    async part(ctx, dir, index, count) {
      const data = ctx.inputs.data;
      if (!data) throw new ArtifactError(`${path.basename(ctx.dir)}: a sharded stage needs its data input`);
      const full = await readImageSet(data.file(o.set));
      const partOf = partOfRow(o, full.rows.length, count);
      const rows = full.rows.flatMap((_, j) => (partOf(j) === index ? [j] : []));
      if (!rows.length) {
        // More parts than blocks of rows: this one has nothing to do.
        ctx.log(`part ${index}/${count}: no rows of ${o.set}`);
        return {};
      }
      const inputDir = path.join(dir, 'input');
      await ensureDir(inputDir);
      const files = await writeImageSet(inputDir, subsetImageSet(full, rows, o.set));
      ctx.log(`part ${index}/${count}: ${rows.length} of ${full.rows.length} rows of ${o.set}`);
      const narrowed = o.narrow ? await o.narrow(ctx, inputDir, new Set(rows.map((j) => full.rows[j]!.id))) : {};
      const inputs: Record<string, StageResult> = { ...ctx.inputs, data: withFile(data, o.set, path.join(inputDir, files[o.set]!)), ...narrowed };
      return (await o.run({ ...ctx, dir, inputs })).files;
    },
    merge: o.merge,
  };
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
  if (!spec.shards) throw new ArtifactError(`${spec.stage}/${spec.label}: the stage does not split into row shards`);
  return spec.shards.merge(ctx, parts.map((p, i) => ({ dir: partDir(ctx.dir, i, count), outputs: p.outputs })));
}
