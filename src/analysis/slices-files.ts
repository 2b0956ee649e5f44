/**
 * `dcd slices` on files: seed (and heldout) embeddings from `dcd embed`, optional manifests
 * for the images' contexts, optional prediction files (`dcd evaluate`) for per-slice accuracy.
 * Writes `<out>.arrow` (a row per seed and heldout image: id, set, label, slice, distance),
 * `<out>.csv` and `<out>.json` (the slices described, and the per-slice accuracy of each
 * prediction file).
 */
import { int32Column, readArrowFile, requireColumns, stringColumn } from '../core/arrow.js';
import { ConfigError, DataError } from '../core/errors.js';
import { atomicWriteJson } from '../core/fsutil.js';
import { readManifest } from '../data/manifest.js';
import { rowFacts } from '../eval/selection-quality.js';
import { writeTableWithCsv, sidecarPath } from '../retrieval/output.js';
import { checkMetadataMatch, EmbeddingStore } from '../retrieval/store.js';
import { assignToSlices, failureSlices, sliceAccuracy, type FailureSlices, type SliceAccuracy, type SliceOptions } from './slices.js';

/** Arguments of {@link slicesFiles}. */
export interface SlicesFilesArgs {
  seed: string[];
  heldout?: string[];
  /** Manifests whose `context` column (plain or JSON `context`) names the images' contexts. */
  manifest?: string[];
  /** `method=file.arrow` (columns id, label, pred): per-slice accuracy on the heldout images. */
  predictions?: string[];
  options: SliceOptions;
  out: string;
}

/** What {@link slicesFiles} computed, besides the files. */
export interface SlicesFilesResult {
  files: string[];
  slices: FailureSlices;
  seedIds: string[];
  heldoutIds: string[];
  heldoutSlice: Int32Array;
  accuracy: { method: string; file: string; rows: SliceAccuracy[] }[];
}

/** Parses `--k`: an integer ≥ 1 or `auto`. */
export function parseSliceCount(v: string | number | undefined): number | 'auto' {
  if (v === undefined || v === 'auto') return 'auto';
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`--k: expected an integer ≥ 1 or "auto", received ${JSON.stringify(v)}`);
  return n;
}

/** Parses `--k-range min,max`. */
export function parseRange(v: string | undefined): [number, number] | undefined {
  if (v === undefined) return undefined;
  const m = /^\s*(\d+)\s*[,:-]\s*(\d+)\s*$/.exec(v);
  if (!m) throw new ConfigError(`--k-range: expected "min,max" (e.g. 2,8), received ${JSON.stringify(v)}`);
  return [Number(m[1]), Number(m[2])];
}

/** Context of every manifest image by id (images without one are left out). */
async function contextsById(files: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of files) for (const r of (await readManifest(f)).rows) {
    const c = rowFacts(r).context;
    if (c !== undefined) out.set(r.id, c);
  }
  return out;
}

/** 1 right, 0 wrong, -1 no prediction, per heldout id, from one predictions file. */
async function correctness(spec: string, heldoutIds: readonly string[]): Promise<{ method: string; file: string; correct: Int8Array }> {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new ConfigError(`--predictions: expected METHOD=FILE.arrow (e.g. dcd-ssl=runs/demo/evaluate/…/predictions.arrow), received ${JSON.stringify(spec)}`);
  const method = spec.slice(0, eq);
  const file = spec.slice(eq + 1);
  const t = await readArrowFile(file);
  requireColumns(t, ['id', 'label', 'pred'], file);
  const ids = stringColumn(t, 'id', file);
  const label = int32Column(t, 'label', file);
  const pred = int32Column(t, 'pred', file);
  const at = new Map<string, number>();
  ids.forEach((id, r) => at.set(id, r));
  const correct = Int8Array.from(heldoutIds, (id) => {
    const r = at.get(id);
    return r === undefined ? -1 : pred[r] === label[r] ? 1 : 0;
  });
  if (heldoutIds.length && correct.every((c) => c < 0))
    throw new DataError(`${file} (predictions of ${method}): none of the ${heldoutIds.length} heldout ids has a prediction (first heldout id: ${heldoutIds[0]}); give the predictions of the heldout set`);
  return { method, file, correct };
}

/** `dcd slices`: slices of the seed failures, heldout images assigned, per-slice accuracy. */
export async function slicesFiles(a: SlicesFilesArgs): Promise<SlicesFilesResult> {
  const seedStore = await EmbeddingStore.open(a.seed, { role: 'seed', requireLabel: true });
  const s = await seedStore.readAll();
  const ctx = a.manifest?.length ? await contextsById(a.manifest) : null;
  const slices = failureSlices({ data: s.data, dim: s.dim, labels: s.labels!, contexts: ctx ? s.ids.map((id) => ctx.get(id) ?? null) : undefined }, a.options);
  let heldoutIds: string[] = [];
  let heldoutLabels: Int32Array = new Int32Array(0);
  let heldoutSlice: Int32Array = new Int32Array(0);
  let heldoutDist: Float64Array = new Float64Array(0);
  if (a.heldout?.length) {
    const hs = await EmbeddingStore.open(a.heldout, { role: 'heldout', requireLabel: true });
    checkMetadataMatch(a.seed[0]!, seedStore.metadata, a.heldout[0]!, hs.metadata);
    const h = await hs.readAll();
    if (h.dim !== s.dim) throw new DataError(`${a.heldout[0]} (heldout): embedding width ${h.dim}, but ${a.seed[0]} (seed) has ${s.dim}; embed both with the same backbone`);
    const r = assignToSlices(slices, h.data, h.dim);
    heldoutIds = h.ids;
    heldoutLabels = h.labels!;
    heldoutSlice = r.slice;
    heldoutDist = r.distance;
  }
  if (a.predictions?.length && !heldoutIds.length) throw new ConfigError('--predictions: per-slice accuracy is read on the heldout images; give --heldout too');
  const accuracy: SlicesFilesResult['accuracy'] = [];
  for (const spec of a.predictions ?? []) {
    const c = await correctness(spec, heldoutIds);
    accuracy.push({ method: c.method, file: c.file, rows: sliceAccuracy(heldoutSlice, c.correct, slices.slices.length) });
  }
  const meta = {
    'dcd.backbone': seedStore.metadata['dcd.backbone'] ?? '',
    'dcd.slices.k': String(slices.slices.length),
    'dcd.slices.criterion': slices.criterion.kind,
    'dcd.slices.seed': String(slices.seed),
    'dcd.slices.normalize': String(slices.normalize),
    'dcd.seed_files': a.seed.join(','),
    'dcd.heldout_files': (a.heldout ?? []).join(','),
  };
  const files = await writeTableWithCsv(
    a.out,
    {
      id: { kind: 'utf8', values: [...s.ids, ...heldoutIds] },
      set: { kind: 'utf8', values: [...s.ids.map(() => 'seed'), ...heldoutIds.map(() => 'heldout')] },
      label: { kind: 'int32', values: Int32Array.from([...s.labels!, ...heldoutLabels]) },
      slice: { kind: 'int32', values: Int32Array.from([...slices.assign, ...heldoutSlice]) },
      distance: { kind: 'float32', values: Float32Array.from([...slices.distance, ...heldoutDist]) },
    },
    meta,
  );
  const heldCount = new Int32Array(slices.slices.length);
  for (const c of heldoutSlice) heldCount[c]! += 1;
  const json = sidecarPath(a.out, '.json');
  await atomicWriteJson(json, {
    backbone: meta['dcd.backbone'],
    method: `k-means++ (seeded) over ${slices.normalize ? 'L2-normalised' : 'raw'} features`,
    criterion: slices.criterion,
    seed: slices.seed,
    slices: slices.slices.map((x) => ({
      slice: x.index,
      seed_images: x.members.length,
      heldout_images: heldCount[x.index],
      class_mix: x.classMix.map((c) => ({ label: c.value, count: c.count, share: c.share })),
      context: x.context,
      central: x.central.map((i) => s.ids[i]),
      spread: x.spread,
      accuracy: Object.fromEntries(accuracy.map((acc) => [acc.method, acc.rows[x.index]])),
    })),
    predictions: accuracy.map((acc) => ({ method: acc.method, file: acc.file })),
  });
  files.push(json);
  return { files, slices, seedIds: s.ids, heldoutIds, heldoutSlice, accuracy };
}
