/**
 * Class and context retention of nearest neighbours per backbone (paper Section 3.1,
 * Figure 7): for every image, its k nearest neighbours (excluding itself) in a
 * backbone's feature space; the percentage of those neighbours with the image's class,
 * and the percentage that keep its context (rule in `./context.ts`).
 *
 * Retention at k = 100 · (Σ_i |{j ∈ N_k(i) : keeps(i, j)}|) / (k · #queries), where the
 * queries are the images with a known class (for class retention) or an annotated
 * context (for context retention); every image of the set is a candidate neighbour.
 */
import { readdir, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Table } from 'apache-arrow';
import { embeddingMatrix, int32Column, metadataOf, readArrowFile, requireColumns, stringColumn } from '../core/arrow.js';
import { ArtifactError, ConfigError, DataError } from '../core/errors.js';
import { atomicWriteFile, atomicWriteJson } from '../core/fsutil.js';
import { log } from '../core/log.js';
import { embedImages } from '../infer/embed.js';
import { gatherRows, knnAsync as retrievalKnn, l2NormalizeRows } from '../retrieval/knn.js';
import { retentionSvg, svgToPng, type RetentionPoint } from './plot.js';
import { type Context, type ContextRule, keepsContext, parseContext } from './context.js';

/** Result of a k-nearest-neighbour search: row-major [numQueries, k], nearest first. */
export interface KnnResult {
  indices: Int32Array;
  distances: Float32Array;
}

/** The retrieval area's `knn` contract (src/retrieval/knn.ts): squared L2, nearest first. */
export type KnnFn = (
  queries: Float32Array,
  qDim: number,
  pool: Float32Array,
  k: number,
) => KnnResult | Promise<KnnResult>;

export type { RetentionPoint } from './plot.js';

/** Options of the retention computation. */
export interface RetentionOptions {
  /** How a neighbour keeps the context; default `lenient` (see ./context.ts). */
  rule?: ContextRule;
  /** L2-normalise features before the search (the paper's default is raw features). */
  normalize?: boolean;
  /** Neighbour search; default: `knnAsync` from src/retrieval/knn.ts (screened on the GPU on webgpu). */
  knn?: KnnFn;
  /** Queries per knn call, bounding memory ([chunk, N] distances); default 1024. */
  queryChunk?: number;
}

/**
 * The k nearest neighbours of every row among all rows, itself excluded.
 * @param emb row-major features [n, dim]
 * @returns row-major [n, k] neighbour indices, nearest first
 */
export async function neighboursExcludingSelf(emb: Float32Array, dim: number, k: number, opts: RetentionOptions = {}): Promise<Int32Array> {
  const n = emb.length / dim;
  if (!Number.isInteger(n)) throw new DataError(`embeddings: ${emb.length} values is not a multiple of dim ${dim}`);
  if (k < 1 || k > n - 1) throw new ConfigError(`--k ${k}: needs 1 ≤ k ≤ ${n - 1} (the set has ${n} images, and an image is not its own neighbour)`);
  const knn = opts.knn ?? retrievalKnn;
  const x = opts.normalize ? l2NormalizeRows(Float32Array.from(emb), dim) : emb;
  const chunk = Math.max(1, opts.queryChunk ?? 1024);
  const out = new Int32Array(n * k);
  for (let q0 = 0; q0 < n; q0 += chunk) {
    const q1 = Math.min(n, q0 + chunk);
    const { indices } = await knn(x.subarray(q0 * dim, q1 * dim), dim, x, k + 1);
    if (indices.length !== (q1 - q0) * (k + 1))
      throw new ArtifactError(`knn returned ${indices.length} indices for ${q1 - q0} queries × ${k + 1}; expected ${(q1 - q0) * (k + 1)}`);
    for (let q = q0; q < q1; q++) {
      const row = indices.subarray((q - q0) * (k + 1), (q - q0 + 1) * (k + 1));
      // Drop the image itself; with exact duplicates it need not come first, and with
      // more than k duplicates it may be missing, in which case the farthest is dropped.
      let w = 0;
      let droppedSelf = false;
      for (let j = 0; j < k + 1 && w < k; j++) {
        if (!droppedSelf && row[j] === q) {
          droppedSelf = true;
          continue;
        }
        out[q * k + w++] = row[j]!;
      }
    }
  }
  return out;
}

/**
 * Class and context retention of one feature space for several k.
 * @param emb row-major features [n, dim] (float32)
 * @param classes class of each row (null = unknown: not a query, and never "the same class")
 * @param contexts parsed context of each row (null = none annotated)
 * @param ks the k values; neighbours are searched once, for the largest
 */
export async function retentionCurve(
  backbone: string,
  emb: Float32Array,
  dim: number,
  classes: readonly (string | null)[],
  contexts: readonly (Context | null)[],
  ks: readonly number[],
  opts: RetentionOptions = {},
): Promise<RetentionPoint[]> {
  const n = emb.length / dim;
  if (classes.length !== n || contexts.length !== n)
    throw new DataError(`retention: ${n} embeddings but ${classes.length} classes and ${contexts.length} contexts`);
  if (!ks.length) throw new ConfigError('--k: give at least one k');
  const kmax = Math.max(...ks);
  const nb = await neighboursExcludingSelf(emb, dim, kmax, opts);
  const rule = opts.rule ?? 'lenient';
  // Cumulative hit counts per rank, so every k reads off the same neighbour lists.
  const classHits = new Float64Array(kmax);
  const ctxHits = new Float64Array(kmax);
  let classQueries = 0;
  let contextQueries = 0;
  for (let i = 0; i < n; i++) {
    const ci = classes[i];
    const xi = contexts[i];
    if (ci !== null && ci !== undefined) classQueries++;
    if (xi) contextQueries++;
    for (let r = 0; r < kmax; r++) {
      const j = nb[i * kmax + r]!;
      if (ci !== null && ci !== undefined && classes[j] === ci) classHits[r]!++;
      if (xi && keepsContext(xi, contexts[j] ?? null, rule)) ctxHits[r]!++;
    }
  }
  const cum = (h: Float64Array, k: number) => h.subarray(0, k).reduce((a, b) => a + b, 0);
  return [...ks]
    .sort((a, b) => a - b)
    .map((k) => ({
      backbone,
      k,
      classRetention: classQueries ? (100 * cum(classHits, k)) / (k * classQueries) : NaN,
      contextRetention: contextQueries ? (100 * cum(ctxHits, k)) / (k * contextQueries) : NaN,
      classQueries,
      contextQueries,
    }));
}

/** The rows of a manifest that retention needs. */
export interface RetentionItem {
  id: string;
  /** Class key: the label when ≥ 0, else class_name, else null. */
  cls: string | null;
  context: Context | null;
}

/** Reads id, class and context from a manifest Arrow file (columns `id`, `context`, and `label` and/or `class_name`). */
export async function readRetentionItems(manifest: string): Promise<RetentionItem[]> {
  const t = await readArrowFile(manifest);
  requireColumns(t, ['id'], manifest);
  const names = new Set(t.schema.fields.map((f) => f.name));
  if (!names.has('context'))
    throw new DataError(
      `${manifest}: no context column; retention needs one (a plain value like "snow", "time=night;locations=forest|grass", or JSON) — add it to the manifest`,
    );
  if (!names.has('label') && !names.has('class_name')) throw new DataError(`${manifest}: needs a label or class_name column for class retention`);
  const ids = stringColumn(t, 'id', manifest);
  const labels = names.has('label') ? int32Column(t, 'label', manifest) : undefined;
  const classNames = names.has('class_name') ? stringColumn(t, 'class_name', manifest) : undefined;
  const ctx = stringColumn(t, 'context', manifest);
  const seen = new Set<string>();
  return ids.map((id, i) => {
    if (seen.has(id)) throw new DataError(`${manifest}: id ${JSON.stringify(id)} occurs twice (row ${i}); ids must be unique`);
    seen.add(id);
    const label = labels?.[i];
    const cn = classNames?.[i];
    const cls = label !== undefined && label >= 0 ? String(label) : cn ? cn : null;
    return { id, cls, context: parseContext(ctx[i], `${manifest} row ${i} (id ${id})`) };
  });
}

async function arrowFilesUnder(dir: string, depth = 6): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue; // temporary files of atomic writes
    const p = path.join(dir, e.name);
    if (e.isDirectory() && depth > 0) out.push(...(await arrowFilesUnder(p, depth - 1)));
    else if (e.isFile() && e.name.endsWith('.arrow')) out.push(p);
  }
  return out.sort();
}

/**
 * The embedding Arrow files of `backbone` under `dir` (as written by `dcd embed` / `dcd run`):
 * `dir/<backbone>.arrow`, or every `.arrow` below a folder named `<backbone>`, or any
 * `.arrow` below `dir` whose `dcd.backbone` metadata names it.
 */
export async function findEmbeddingFiles(dir: string, backbone: string): Promise<string[]> {
  if (!existsSync(dir) || !(await stat(dir)).isDirectory()) throw new ConfigError(`--embeddings ${dir}: not a folder`);
  const all = await arrowFilesUnder(dir);
  const byName = all.filter((f) => path.basename(f) === `${backbone}.arrow` || path.relative(dir, f).split(path.sep).slice(0, -1).includes(backbone));
  if (byName.length) return byName;
  const byMeta: string[] = [];
  for (const f of all) {
    try {
      if (metadataOf(await readArrowFile(f))['dcd.backbone'] === backbone) byMeta.push(f);
    } catch {
      /* not an embedding file */
    }
  }
  return byMeta;
}

/**
 * Joins embedding files with the manifest by id: returns features in manifest order.
 * Throws naming the first missing ids when some manifest image has no embedding.
 */
export async function embeddingsForItems(
  files: readonly string[],
  items: readonly RetentionItem[],
  backbone: string,
  opts: { allowMissing?: boolean } = {},
): Promise<{ data: Float32Array; dim: number; present: Uint8Array }> {
  const index = new Map(items.map((it, i) => [it.id, i]));
  let dim = -1;
  let data = new Float32Array(0);
  const have = new Uint8Array(items.length);
  const from = new Array<number>(items.length).fill(-1); // file index each row came from
  const weightsOf = new Map<string, string>(); // weights sha256 → first file that used it
  for (const f of files) {
    const t: Table = await readArrowFile(f);
    const meta = metadataOf(t);
    if (meta['dcd.backbone'] && meta['dcd.backbone'] !== backbone)
      throw new ArtifactError(`${f}: holds ${meta['dcd.backbone']} embeddings, not ${backbone}; point --embeddings at the right folder`);
    const sha = meta['dcd.weights_sha256'];
    if (sha && !weightsOf.has(sha)) weightsOf.set(sha, f);
    if (weightsOf.size > 1) {
      const [[a, fa], [b, fb]] = [...weightsOf] as [[string, string], [string, string]];
      throw new ArtifactError(
        `${backbone}: cached embeddings from different weights (${fa}: ${a.slice(0, 12)}…, ${fb}: ${b.slice(0, 12)}…); point --embeddings at the folder of one run`,
      );
    }
    const m = embeddingMatrix(t, 'embedding', f);
    if (dim < 0) {
      dim = m.dim;
      data = new Float32Array(items.length * dim);
    } else if (m.dim !== dim) throw new ArtifactError(`${f}: embedding width ${m.dim}, but ${files[0]} has ${dim}; both are ${backbone}?`);
    const ids = stringColumn(t, 'id', f);
    const fi = files.indexOf(f);
    ids.forEach((id, r) => {
      const i = index.get(id);
      if (i === undefined) return;
      // The same id in two files (e.g. the mfreq sets of two seeds of one run) would silently
      // mix images: refuse, naming both.
      if (have[i] && from[i] !== fi)
        throw new ArtifactError(
          `${backbone}: image id ${JSON.stringify(id)} has embeddings in both ${files[from[i]!]} and ${f}; they may be different images (e.g. two seeds' draws). Point --embeddings at the one stage folder that embedded this manifest (e.g. runs/<name>/embed/<backbone>-<set>-s0-<key>)`,
        );
      data.set(m.data.subarray(r * dim, (r + 1) * dim), i * dim);
      have[i] = 1;
      from[i] = fi;
    });
  }
  const missing = items.filter((_, i) => !have[i]).map((it) => it.id);
  if (missing.length && !(opts.allowMissing && missing.length < items.length))
    throw new ArtifactError(
      `${backbone}: ${missing.length} of ${items.length} manifest images have no embedding in ${files.join(', ') || '(no files)'} (first: ${missing
        .slice(0, 3)
        .join(', ')}); run \`dcd embed\` for this backbone on this manifest`,
    );
  return { data, dim, present: have };
}

/** Inputs of {@link retentionTable}. */
export interface RetentionTableInput {
  /** Manifest Arrow file with `id`, `context`, and `label` or `class_name`. */
  manifest: string;
  /** Backbone names, in table order. */
  backbones: readonly string[];
  /** Folder with cached embeddings, or explicit files per backbone; absent: compute them all. */
  embeddings?: string | Readonly<Record<string, readonly string[]>>;
  /**
   * Checkpoint (or `random`) per backbone, for backbones without cached embeddings: they
   * are embedded with `embedImages` (src/infer/embed.ts) into `embedOut/<backbone>.arrow`.
   */
  weights?: Readonly<Record<string, string>>;
  /** Folder for computed embeddings (default `retention-embeddings`). */
  embedOut?: string;
  /** The k values, e.g. [1, 5, 10, 20]. */
  ks: readonly number[];
}

/**
 * Class and context retention of every backbone at every k, from cached embeddings
 * (joined with the manifest by id), or from embeddings computed here for backbones
 * given weights and no cache. Used by `dcd retention` and by the pipeline's report.
 */
export async function retentionTable(input: RetentionTableInput, opts: RetentionOptions = {}): Promise<RetentionPoint[]> {
  const items = await readRetentionItems(input.manifest);
  if (!input.backbones.length) throw new ConfigError('--backbones: name at least one backbone');
  const setName = metadataOf(await readArrowFile(input.manifest))['dcd.set'];
  const rows: RetentionPoint[] = [];
  for (const b of input.backbones) {
    let files: readonly string[] =
      input.embeddings === undefined ? [] : typeof input.embeddings === 'string' ? await findEmbeddingFiles(input.embeddings, b) : (input.embeddings[b] ?? []);
    // In a run folder, keep the embeddings of the manifest's own set (dcd.set metadata) when there are any.
    if (setName && typeof input.embeddings === 'string' && files.length > 1) {
      const same: string[] = [];
      for (const f of files) if (metadataOf(await readArrowFile(f))['dcd.set'] === setName) same.push(f);
      if (same.length) files = same;
    }
    let computed = false;
    if (!files.length && input.weights?.[b]) {
      const out = path.join(input.embedOut ?? 'retention-embeddings', `${b}.arrow`);
      log.info(`retention: ${b}: no cached embeddings; embedding ${items.length} images with ${input.weights[b]} → ${out}`);
      const s = await embedImages({ backbone: b, weights: input.weights[b]!, images: input.manifest, out });
      if (s.skipped.length) log.warn(`${b}: ${s.skipped.length} unreadable image(s) left out (listed in ${s.skippedFile})`);
      files = [out];
      computed = true;
    }
    if (!files.length)
      throw new ArtifactError(
        `${b}: no cached embeddings${typeof input.embeddings === 'string' ? ` under ${input.embeddings}` : ''}; expected <dir>/${b}.arrow or <dir>/**/${b}/*.arrow from \`dcd embed\` / \`dcd run\`, or give weights for ${b} (--weights ${b}=FILE|random) to embed them`,
      );
    const { data, dim, present } = await embeddingsForItems(files, items, b, { allowMissing: computed });
    const keep = items.map((_, i) => i).filter((i) => present[i]);
    const sub = keep.length === items.length ? data : gatherRows(data, keep, dim);
    log.info(`retention: ${b}: ${keep.length} images × ${dim} features from ${files.length} file(s)`);
    rows.push(
      ...(await retentionCurve(
        b,
        sub,
        dim,
        keep.map((i) => items[i]!.cls),
        keep.map((i) => items[i]!.context),
        input.ks,
        opts,
      )),
    );
  }
  return rows;
}

const pct = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');

/** The table as Markdown: one row per backbone and k. */
export function retentionMarkdown(rows: readonly RetentionPoint[], rule: ContextRule = 'lenient'): string {
  const lines = [
    `| backbone | k | class retention (%) | context retention (%, ${rule}) | images with class | images with context |`,
    '|---|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.backbone} | ${r.k} | ${pct(r.classRetention)} | ${pct(r.contextRetention)} | ${r.classQueries} | ${r.contextQueries} |`),
  ];
  return lines.join('\n') + '\n';
}

/** The table as CSV (header + one line per backbone and k). */
export function retentionCsv(rows: readonly RetentionPoint[]): string {
  const head = 'backbone,k,class_retention,context_retention,class_queries,context_queries';
  const q = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  return [head, ...rows.map((r) => [q(r.backbone), r.k, pct(r.classRetention), pct(r.contextRetention), r.classQueries, r.contextQueries].join(','))].join('\n') + '\n';
}

/** Files written by {@link writeRetentionOutputs}. */
export interface RetentionOutputs {
  markdown: string;
  csv: string;
  json: string;
  svg: string;
  png: string;
}

/**
 * Writes the table (retention.md, .csv, .json) and the Figure-7-style plot (.svg, .png)
 * into `outDir`, each atomically.
 */
export async function writeRetentionOutputs(
  rows: readonly RetentionPoint[],
  outDir: string,
  about: { manifest: string; rule: ContextRule; normalize: boolean; ks: readonly number[] },
): Promise<RetentionOutputs> {
  const files: RetentionOutputs = {
    markdown: path.join(outDir, 'retention.md'),
    csv: path.join(outDir, 'retention.csv'),
    json: path.join(outDir, 'retention.json'),
    svg: path.join(outDir, 'retention.svg'),
    png: path.join(outDir, 'retention.png'),
  };
  const md =
    `# Class and context retention of k nearest neighbours\n\n` +
    `Manifest: \`${about.manifest}\`; context rule: ${about.rule}; features: ${about.normalize ? 'L2-normalised' : 'raw'} (squared L2).\n\n` +
    retentionMarkdown(rows, about.rule);
  await atomicWriteFile(files.markdown, md);
  await atomicWriteFile(files.csv, retentionCsv(rows));
  await atomicWriteJson(files.json, {
    manifest: about.manifest,
    rule: about.rule,
    normalize: about.normalize,
    ks: about.ks,
    rows: rows.map((r) => ({ ...r, classRetention: Number.isFinite(r.classRetention) ? r.classRetention : null, contextRetention: Number.isFinite(r.contextRetention) ? r.contextRetention : null })),
  });
  const svg = retentionSvg(rows);
  await atomicWriteFile(files.svg, svg);
  await atomicWriteFile(files.png, await svgToPng(svg));
  return files;
}
