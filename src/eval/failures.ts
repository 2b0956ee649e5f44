/**
 * Failure sets (paper Section 3.4, Appendix A): the debug-seed set S (MFreq images with
 * a subset-class label that the model, or every one of N models, gets wrong), the
 * debug-heldout set H (the same on Complement), and class-subset discovery.
 */
import path from 'node:path';
import { ConfigError, DataError } from '../core/errors.js';
import { atomicWriteFile, atomicWriteJson } from '../core/fsutil.js';
import { writeManifest, type ManifestRow } from '../data/manifest.js';
import type { Predictions } from './evaluate.js';

/**
 * Per image id, whether every one of `preds` gets it wrong (top-1 ≠ label).
 * Images missing from any prediction set are not counted as wrong (and listed).
 */
export function wrongByAll(rows: readonly ManifestRow[], preds: readonly Predictions[], setName: string): { wrong: Set<string>; missing: string[] } {
  if (preds.length === 0) throw new ConfigError(`failure sets: no predictions given for ${setName}; pass one predictions file per model`);
  const wrong = new Set<string>();
  const missing: string[] = [];
  const maps = preds.map((p) => {
    const m = new Map<string, number>();
    p.ids.forEach((id, i) => m.set(id, p.topk[i * p.k]!));
    return m;
  });
  for (const r of rows) {
    if (r.label < 0) continue;
    let all = true;
    let absent = false;
    for (const m of maps) {
      const pred = m.get(r.id);
      if (pred === undefined) absent = true;
      else if (pred === r.label) all = false;
    }
    if (absent) missing.push(r.id);
    else if (all) wrong.add(r.id);
  }
  return { wrong, missing };
}

/** Inputs of {@link failureSets}. */
export interface FailureInputs {
  /** MFreq manifest rows (seed candidates). */
  mfreq: readonly ManifestRow[];
  /** Complement manifest rows (heldout candidates). */
  complement: readonly ManifestRow[];
  /** Predictions of each of the N models on MFreq (same order as `predsComplement`). */
  predsMfreq: readonly Predictions[];
  predsComplement: readonly Predictions[];
  /** The class subset Y_sub (labels). When absent, it is discovered with `discoverThreshold`. */
  classes?: readonly number[];
  /** Class-subset discovery: classes with at least this many MFreq images wrong for every model. */
  discoverThreshold?: number;
}

/** Per-class counts of the failure sets. */
export interface FailureClassSummary {
  label: number;
  wnid: string;
  class_name: string;
  mfreq: number;
  seed: number;
  complement: number;
  heldout: number;
}

/** Output of {@link failureSets}. */
export interface FailureSets {
  classes: number[];
  seed: ManifestRow[];
  heldout: ManifestRow[];
  /** Positions of the seed rows in `mfreq` and of the heldout rows in `complement` (in that order). */
  seedIndex: number[];
  heldoutIndex: number[];
  perClass: FailureClassSummary[];
  /** Images absent from some model's predictions (not counted). */
  missing: string[];
  models: number;
}

/**
 * Builds S and H from N models' predictions (N = 1: the single-model setting). With no
 * `classes`, the subset is every class with ≥ `discoverThreshold` MFreq images that all
 * N models get wrong (paper Appendix A).
 */
export function failureSets(inp: FailureInputs): FailureSets {
  if (inp.predsMfreq.length !== inp.predsComplement.length)
    throw new ConfigError(`failure sets: ${inp.predsMfreq.length} MFreq prediction files but ${inp.predsComplement.length} Complement ones; give both for every model`);
  const mf = wrongByAll(inp.mfreq, inp.predsMfreq, 'MFreq');
  const co = wrongByAll(inp.complement, inp.predsComplement, 'Complement');
  let classes: number[];
  if (inp.classes) classes = [...new Set(inp.classes)].sort((a, b) => a - b);
  else {
    const t = inp.discoverThreshold;
    if (t === undefined || !(Number.isInteger(t) && t >= 1))
      throw new ConfigError(`failure sets: give a class subset, or a discovery threshold t (integer ≥ 1), received ${t}`);
    const count = new Map<number, number>();
    for (const r of inp.mfreq) if (mf.wrong.has(r.id)) count.set(r.label, (count.get(r.label) ?? 0) + 1);
    classes = [...count].filter(([, c]) => c >= t).map(([y]) => y).sort((a, b) => a - b);
  }
  const sub = new Set(classes);
  const pick = (rows: readonly ManifestRow[], wrong: Set<string>) => rows.flatMap((r, i) => (sub.has(r.label) && wrong.has(r.id) ? [i] : []));
  const seedIndex = pick(inp.mfreq, mf.wrong);
  const heldoutIndex = pick(inp.complement, co.wrong);
  const seed = seedIndex.map((i) => ({ ...inp.mfreq[i]!, set: 'seed' }));
  const heldout = heldoutIndex.map((i) => ({ ...inp.complement[i]!, set: 'heldout' }));
  const info = new Map<number, FailureClassSummary>();
  const entry = (r: ManifestRow) => {
    let e = info.get(r.label);
    if (!e) info.set(r.label, (e = { label: r.label, wnid: r.wnid, class_name: r.class_name, mfreq: 0, seed: 0, complement: 0, heldout: 0 }));
    return e;
  };
  for (const y of classes) info.set(y, { label: y, wnid: '', class_name: '', mfreq: 0, seed: 0, complement: 0, heldout: 0 });
  for (const r of inp.mfreq) if (sub.has(r.label)) Object.assign(entry(r), { wnid: r.wnid, class_name: r.class_name }).mfreq++;
  for (const r of inp.complement) if (sub.has(r.label)) Object.assign(entry(r), { wnid: r.wnid, class_name: r.class_name }).complement++;
  for (const r of seed) entry(r).seed++;
  for (const r of heldout) entry(r).heldout++;
  // One image is one id at one path: folder datasets name images relative to their set's folder,
  // so the same id in both sets can be two images.
  const overlap = new Set(seed.map((r) => `${r.id}\0${r.path}`));
  const dup = heldout.find((r) => overlap.has(`${r.id}\0${r.path}`));
  if (dup) throw new DataError(`failure sets: image ${dup.id} (${dup.path}) is in both MFreq and Complement; Complement must exclude MFreq images`);
  return { classes, seed, heldout, seedIndex, heldoutIndex, perClass: [...info.values()].sort((a, b) => a.label - b.label), missing: [...mf.missing, ...co.missing], models: inp.predsMfreq.length };
}

/**
 * Writes `seed.arrow`, `heldout.arrow` (manifests), `classes.txt` (the subset, one
 * label per line), `failures-per-class.csv` and `failures.json` (summary) into `outDir`.
 */
export async function writeFailureSets(outDir: string, f: FailureSets, meta: Record<string, string> = {}): Promise<void> {
  const m = { ...meta, 'dcd.models': String(f.models), 'dcd.classes_subset': JSON.stringify(f.classes) };
  await writeManifest(path.join(outDir, 'seed.arrow'), f.seed, { ...m, 'dcd.set': 'seed' });
  await writeManifest(path.join(outDir, 'heldout.arrow'), f.heldout, { ...m, 'dcd.set': 'heldout' });
  await atomicWriteFile(path.join(outDir, 'classes.txt'), f.classes.join('\n') + (f.classes.length ? '\n' : ''));
  const csv = ['label,wnid,class_name,mfreq,seed,complement,heldout', ...f.perClass.map((c) => [c.label, c.wnid, JSON.stringify(c.class_name), c.mfreq, c.seed, c.complement, c.heldout].join(','))];
  await atomicWriteFile(path.join(outDir, 'failures-per-class.csv'), csv.join('\n') + '\n');
  await atomicWriteJson(path.join(outDir, 'failures.json'), {
    models: f.models,
    classes: f.classes.length,
    seed: f.seed.length,
    heldout: f.heldout.length,
    missing: f.missing.length,
    perClass: f.perClass,
  });
}
