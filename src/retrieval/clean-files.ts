/**
 * `dcd select --clean knn` on files: Algorithm 1 with the k-NN label check of ./clean.ts.
 * Writes what `dcd select` writes (the cleaned selections) plus `<out>.dropped.csv` (every
 * dropped pick, its label, seed, neighbour agreement and round) and `<out>.clean.json` (the
 * options, rounds, counts and — where `truth` manifests record the pool's true classes — the
 * noise rate before and after cleaning).
 */
import { atomicWriteFile, atomicWriteJson } from '../core/fsutil.js';
import { DataError } from '../core/errors.js';
import { readManifest } from '../data/manifest.js';
import { rowFacts } from '../eval/selection-quality.js';
import { CLEAN_DEFAULTS, cleanSelect, noiseRate, type CleanOptions } from './clean.js';
import { openSelectInputs, writeSelectResult, type SelectFilesArgs } from './files.js';
import { sidecarPath, toCsv } from './output.js';
import type { Selection } from './select.js';

/** Arguments of {@link selectCleanFiles}. */
export interface SelectCleanFilesArgs extends SelectFilesArgs {
  clean: CleanOptions;
  /** Pool manifests whose context JSON records `true_label` (for the noise rates only). */
  truth?: string[];
}

/** True class of each pool id the manifests know. */
async function truthById(files: readonly string[]): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for (const f of files) for (const r of (await readManifest(f)).rows) {
    const t = rowFacts(r).truth;
    if (t !== undefined) m.set(r.id, t);
  }
  if (files.length && m.size === 0) throw new DataError(`${files.join(', ')} (--truth): no row records a true_label in its context; give the pool manifest of a data set that knows its true classes, or leave --truth out`);
  return m;
}

/** `dcd select --clean knn`. */
export async function selectCleanFiles(a: SelectCleanFilesArgs) {
  // read first: a bad --truth file fails before the selection runs
  const truth = a.truth?.length ? await truthById(a.truth) : null;
  const { seeds, pool, opts } = await openSelectInputs(a);
  if (!pool.hasLabel) throw new DataError(`${a.pool.join(', ')} (pool): --clean knn votes with the pool's weak labels, but the pool has no label column`);
  const all = await pool.readAll();
  const r = await cleanSelect(seeds, pool, { ids: all.ids, labels: all.labels!, data: all.data, dim: all.dim }, opts, a.clean);
  const c = { ...CLEAN_DEFAULTS, ...a.clean };
  const files = await writeSelectResult(a, r, pool.metadata, { 'dcd.clean': 'knn', 'dcd.clean.k': String(c.k), 'dcd.clean.rule': c.rule, 'dcd.clean.min_agreement': String(c.minAgreement) });
  const dropped = sidecarPath(a.out, '.dropped.csv');
  await atomicWriteFile(dropped, toCsv(['id', 'label', 'seed_id', 'set', 'agreement', 'round'], r.dropped.map((d) => [d.id, d.label, d.seedId, d.set, d.agreement, d.round])));
  const noise = (s: Selection | null) => (truth && s ? noiseRate(s.ids, s.labels, (id) => truth.get(id)) : null);
  const report = {
    options: { k: c.k, rule: c.rule, min_agreement: c.minAgreement, max_rounds: c.maxRounds, deval: a.clean.deval ?? true },
    rounds: r.rounds,
    dropped: { train: r.dropped.filter((d) => d.set === 'train').length, deval: r.dropped.filter((d) => d.set === 'deval').length },
    still_flagged: r.stillFlagged,
    picks: { train: r.train.ids.length, deval: r.deval?.ids.length ?? 0, train_before: r.before.train.ids.length, deval_before: r.before.deval?.ids.length ?? 0 },
    ...(truth
      ? {
          noise: {
            train_before: noise(r.before.train),
            train_after: noise(r.train),
            deval_before: noise(r.before.deval),
            deval_after: noise(r.deval),
            dropped: noiseRate(
              r.dropped.map((d) => d.id),
              r.dropped.map((d) => d.label),
              (id) => truth.get(id),
            ),
          },
        }
      : {}),
  };
  const json = sidecarPath(a.out, '.clean.json');
  await atomicWriteJson(json, report);
  files.push(dropped, json);
  return { files, train: r.train, deval: r.deval, result: r, report };
}
