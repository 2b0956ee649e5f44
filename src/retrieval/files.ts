import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { atomicWriteFile } from '../core/fsutil.js';
import { ConfigError, DataError } from '../core/errors.js';
import { log } from '../core/log.js';
import { completeBaseline, labelCounts, randomBaseline } from './baselines.js';
import { classThresholds, leakageFilter, type FilterResult, type Threshold } from './filter.js';
import { openArrowSink, sidecarPath, takeRows, toCsv, writeTableWithCsv, type ArrowSink } from './output.js';
import { openSeedAndPool, selectAlgorithm1, type SeedSet, type Selection, type SelectOptions, type SelectResult } from './select.js';
import { EmbeddingStore, readIdsAndLabels } from './store.js';

/** Ids of one or more Arrow files (column `id`), e.g. earlier selections for `--exclude`; streamed. */
export async function readIdSet(files: readonly string[], role = 'ids'): Promise<Set<string>> {
  return new Set((await readIdsAndLabels(files, role)).ids);
}

/**
 * Class list from `--classes`: a comma list of integers (`1,5,7`) or a file with one
 * integer per line (or a JSON array).
 */
export async function parseClassList(spec: string | undefined): Promise<number[] | undefined> {
  if (spec === undefined || spec === '') return undefined;
  let text = spec;
  if (existsSync(spec)) text = await readFile(spec, 'utf8');
  const trimmed = text.trim();
  const items = trimmed.startsWith('[') ? (JSON.parse(trimmed) as unknown[]).map(String) : trimmed.split(/[\s,]+/).filter(Boolean);
  const out = items.map((s) => Number(s));
  const bad = items.find((s, i) => !Number.isInteger(out[i]) || out[i]! < 0);
  if (bad !== undefined) throw new ConfigError(`--classes: expected non-negative integers (comma list or a file of them), received "${bad}" in ${spec}`);
  return out;
}

/** Metadata of a selection file. */
function selectionMeta(sel: Selection, method: string, extra: Record<string, string>): Record<string, string> {
  return { 'dcd.method': method, 'dcd.k': String(sel.k), ...extra };
}

/** Writes a selection as Arrow (`id`, `label`, `seed_id`, `distance`, `rank`) + CSV + per-class summary CSV. */
export async function writeSelection(out: string, sel: Selection, metadata: Record<string, string>): Promise<string[]> {
  return writeTableWithCsv(
    out,
    {
      id: { kind: 'utf8', values: sel.ids },
      label: { kind: 'int32', values: sel.labels },
      seed_id: { kind: 'utf8', values: sel.seedIds },
      distance: { kind: 'float32', values: sel.distances },
      rank: { kind: 'int32', values: sel.ranks },
    },
    metadata,
    { header: ['label', 'seeds', 'candidates', 'selected', 'exhausted'], rows: sel.summary.map((s) => [s.label, s.seeds, s.candidates, s.selected, s.exhausted]) },
  );
}

/** Arguments of {@link selectFiles} (the `dcd select` command). */
export interface SelectFilesArgs {
  seed: string[];
  pool: string[];
  k: number;
  kVal?: number;
  devalOut?: string;
  exclude?: string[];
  only?: string[];
  anyLabel?: boolean;
  normalize?: boolean;
  classes?: number[];
  memoryBudgetMiB?: number;
  out: string;
}

/**
 * `dcd select`: Algorithm 1 from files. Writes `out` (debug-train, k per seed) and, when
 * kVal > 0, the de-val set (`devalOut`, default `<out>.deval.arrow`) selected first.
 */
export async function selectFiles(a: SelectFilesArgs): Promise<{ files: string[]; train: Selection; deval: Selection | null }> {
  const { seeds, pool, opts } = await openSelectInputs(a);
  const r = await selectAlgorithm1(seeds, pool, opts);
  return { files: await writeSelectResult(a, r, pool.metadata), ...r };
}

/** Seeds, pool and Algorithm 1's options of a `dcd select` call. */
export async function openSelectInputs(a: SelectFilesArgs): Promise<{ seeds: SeedSet; pool: EmbeddingStore; opts: SelectOptions }> {
  const { seeds, pool } = await openSeedAndPool(a.seed, a.pool, { normalize: a.normalize, anyLabel: a.anyLabel });
  const exclude = a.exclude?.length ? await readIdSet(a.exclude, 'exclude') : undefined;
  const only = a.only?.length ? await readIdSet(a.only, 'only') : undefined;
  return { seeds, pool, opts: { k: a.k, kVal: a.kVal, anyLabel: a.anyLabel, exclude, only, classes: a.classes, memoryBudgetMiB: a.memoryBudgetMiB } };
}

/**
 * Writes the selections of a `dcd select` call: de-val (when there is one) and debug-train,
 * with the call's metadata plus `extra`.
 */
export async function writeSelectResult(a: SelectFilesArgs, r: SelectResult, poolMeta: Record<string, string>, extra: Record<string, string> = {}): Promise<string[]> {
  const meta = {
    'dcd.backbone': poolMeta['dcd.backbone'] ?? '',
    'dcd.seed_files': a.seed.join(','),
    'dcd.pool_files': a.pool.join(','),
    'dcd.any_label': String(!!a.anyLabel),
    'dcd.normalize': String(!!a.normalize),
    ...extra,
  };
  const files: string[] = [];
  if (r.deval) {
    const devalOut = a.devalOut ?? sidecarPath(a.out, '.deval.arrow');
    files.push(...(await writeSelection(devalOut, r.deval, selectionMeta(r.deval, 'dcd-deval', meta))));
  }
  files.push(...(await writeSelection(a.out, r.train, selectionMeta(r.train, 'dcd', { ...meta, 'dcd.k_val': String(a.kVal ?? 0) }))));
  return files;
}

/** Arguments of {@link filterFiles} (the `dcd filter` command). */
export interface FilterFilesArgs {
  pool: string[];
  test: string[];
  train: string[];
  val: string[];
  scope?: 'all' | 'class';
  normalize?: boolean;
  memoryBudgetMiB?: number;
  out: string;
}

/**
 * `dcd filter`: τ_y from `train`/`val`, then the leakage filter of `pool` against the
 * union of `test`. Writes `out` (the kept pool rows with all their columns, streamed),
 * `<out>.removed.csv` (each removed image, its nearest test image and distance) and
 * `<out>.summary.csv` (per class: τ_y, pool, kept, removed, duplicates).
 */
export async function filterFiles(a: FilterFilesArgs): Promise<{ files: string[]; result: FilterResult; tau: Map<number, Threshold> }> {
  const opts = { normalize: a.normalize };
  const pool = await EmbeddingStore.open(a.pool, { role: 'pool', requireLabel: true, ...opts });
  const train = await EmbeddingStore.open(a.train, { role: 'train', requireLabel: true, ...opts });
  const val = await EmbeddingStore.open(a.val, { role: 'val', requireLabel: true, ...opts });
  const tests = [];
  for (const t of a.test) tests.push(await EmbeddingStore.open([t], { role: 'test', requireLabel: a.scope === 'class', ...opts }));
  log.info(`filter: τ_y from ${a.train.join(', ')} × ${a.val.join(', ')}`);
  const tau = await classThresholds(train, val, { memoryBudgetMiB: a.memoryBudgetMiB });
  let sink: ArrowSink | null = null;
  const meta = {
    ...pool.metadata,
    'dcd.filter.scope': a.scope ?? 'all',
    'dcd.filter.test_files': a.test.join(','),
    'dcd.filter.tau_source': `${a.train.join(',')} x ${a.val.join(',')}`,
    'dcd.filter.normalize': String(!!a.normalize),
  };
  let result: FilterResult;
  try {
    result = await leakageFilter(pool, tests, tau, {
      scope: a.scope,
      memoryBudgetMiB: a.memoryBudgetMiB,
      async onChunk(ch, keep) {
        if (!ch.batch) return;
        sink ??= await openArrowSink(a.out, ch.batch.schema, meta);
        const rows: number[] = [];
        keep.forEach((f, i) => f && rows.push(i));
        if (rows.length === ch.rows) sink.write(ch.batch);
        else if (rows.length) sink.write(takeRows(ch.batch, rows));
      },
    });
    if (!sink) throw new DataError(`${a.pool.join(', ')} (pool): no rows to filter`);
    await (sink as ArrowSink).close();
  } catch (e) {
    await (sink as ArrowSink | null)?.abort();
    throw e;
  }
  const removedCsv = sidecarPath(a.out, '.removed.csv');
  await atomicWriteFile(
    removedCsv,
    toCsv(
      ['id', 'label', 'reason', 'nearest_test_id', 'nearest_test_file', 'distance', 'tau'],
      result.removed.map((r) => [r.id, r.label, r.reason, r.nearestTestId, r.nearestTestFile, r.distance, r.tau]),
    ),
  );
  const summaryCsv = sidecarPath(a.out, '.summary.csv');
  await atomicWriteFile(
    summaryCsv,
    toCsv(
      ['label', 'tau', 'tau_train_id', 'tau_test_id', 'pool', 'kept', 'removed', 'duplicates'],
      result.summary.map((s) => [s.label, s.tau, tau.get(s.label)?.trainId, tau.get(s.label)?.testId, s.pool, s.kept, s.removed, s.duplicates]),
    ),
  );
  return { files: [a.out, removedCsv, summaryCsv], result, tau };
}

/** Id and label columns of Arrow files, streamed (embeddings are never decoded). */
async function idsAndLabels(files: readonly string[], role: string): Promise<{ ids: string[]; labels: Int32Array }> {
  const r = await readIdsAndLabels(files, role, { labels: true });
  return { ids: r.ids, labels: r.labels! };
}

async function poolIdsAndLabels(files: readonly string[]): Promise<{ ids: string[]; labels: Int32Array }> {
  return idsAndLabels(files, 'pool');
}

/**
 * `dcd baseline random`: per class, as many pool images as `counts` (an earlier
 * selection, e.g. the debug-train set) has rows of that class, drawn without replacement.
 */
export async function randomBaselineFiles(a: { pool: string[]; counts: string[]; seed: number; exclude?: string[]; out: string }): Promise<string[]> {
  const pool = await poolIdsAndLabels(a.pool);
  const ref = await idsAndLabels(a.counts, 'counts');
  const counts = labelCounts(ref.labels);
  let labels = pool.labels;
  if (a.exclude?.length) {
    const ex = await readIdSet(a.exclude);
    labels = Int32Array.from(pool.labels, (y, i) => (ex.has(pool.ids[i]!) ? -2147483648 : y));
  }
  const r = randomBaseline(labels, counts, a.seed);
  return writeTableWithCsv(
    a.out,
    { id: { kind: 'utf8', values: Array.from(r.indices, (i) => pool.ids[i]!) }, label: { kind: 'int32', values: Int32Array.from(r.indices, (i) => pool.labels[i]!) } },
    { 'dcd.method': 'random', 'dcd.random_seed': String(a.seed), 'dcd.pool_files': a.pool.join(','), 'dcd.count_files': a.counts.join(',') },
    { header: ['label', 'candidates', 'requested', 'selected', 'exhausted'], rows: r.summary.map((s) => [s.label, s.candidates, s.requested, s.selected, s.exhausted]) },
  );
}

/**
 * `dcd baseline complete`: every pool image with weight n_y / (n_y + m_y); n_y counted
 * from the `label` column of `train` (a manifest or embedding file of the train set).
 */
export async function completeBaselineFiles(a: { pool: string[]; train: string[]; out: string }): Promise<string[]> {
  const pool = await poolIdsAndLabels(a.pool);
  const tr = await idsAndLabels(a.train, 'train');
  const r = completeBaseline(pool.labels, labelCounts(tr.labels), a.train.join(', '));
  return writeTableWithCsv(
    a.out,
    { id: { kind: 'utf8', values: pool.ids }, label: { kind: 'int32', values: pool.labels }, weight: { kind: 'float32', values: r.weights } },
    { 'dcd.method': 'complete', 'dcd.pool_files': a.pool.join(','), 'dcd.train_files': a.train.join(',') },
    { header: ['label', 'pool_m_y', 'train_n_y', 'selected', 'weight'], rows: r.summary.map((s) => [s.label, s.candidates, s.requested, s.selected, s.requested / (s.requested + s.candidates)]) },
  );
}
