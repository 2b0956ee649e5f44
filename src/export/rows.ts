/**
 * The rows `dcd export` writes, read from a finished run folder: one row per pick of every
 * DCD selection (debug-train and de-val), and one row per image of the seed and heldout
 * sets with the original model's prediction. The columns are documented once, in
 * {@link PICK_COLUMNS} and {@link SET_COLUMNS}; every writer (CSV, Parquet, FiftyOne) and
 * the command's help take them from there.
 */
import { existsSync, readFileSync } from 'node:fs';
import { ArtifactError } from '../core/errors.js';
import { int32Column, float32Column, readArrowFile, stringColumn } from '../core/arrow.js';
import type { ManifestRow } from '../data/manifest.js';
import { rowFacts } from '../eval/selection-quality.js';
import { readImageSet, type ImageSet } from '../pipeline/imagesets.js';
import { openRunFolder, type StageRecord } from './run-folder.js';

/** A column's value type: nullable everywhere (null = the run does not know it). */
export type ColumnType = 'string' | 'int' | 'float';

/** One documented column. */
export interface ColumnDoc {
  name: string;
  type: ColumnType;
  doc: string;
}

/** Columns of `picks.*`, in file order. */
export const PICK_COLUMNS = [
  { name: 'variant', type: 'string', doc: 'sweep variant (`dcd sweep`), empty for `dcd run`' },
  { name: 'world_seed', type: 'int', doc: 'seed of the world the selection was made in (data draw, original model, failure sets); null where no seed redraws them' },
  { name: 'backbone', type: 'string', doc: 'row label of the backbone whose features selected it (the `dcd-<backbone>` row)' },
  { name: 'selection', type: 'string', doc: '`debug-train` (added to training) or `de-val` (Algorithm 1\'s validation picks, chosen first)' },
  { name: 'pool_id', type: 'string', doc: 'id of the image in the weak pool' },
  { name: 'path', type: 'string', doc: 'the pool image\'s file (absolute, as the run read it); null for pools held in memory (synthetic, Fashion-MNIST)' },
  { name: 'url', type: 'string', doc: 'where the pool image came from, where the pool list gives it' },
  { name: 'weak_label', type: 'int', doc: 'class index the image is added under (its weak label: the seed image\'s class)' },
  { name: 'weak_class', type: 'string', doc: 'name of that class' },
  { name: 'seed_image_id', type: 'string', doc: 'id of the debug-seed image it was picked for' },
  { name: 'distance', type: 'float', doc: 'squared L2 distance between the two images\' features under this backbone' },
  { name: 'rank', type: 'int', doc: '1 = the nearest pick of this seed image in this selection' },
  { name: 'true_label', type: 'int', doc: 'the class the image really shows where the pool records it (-1: none of the classes); null where unknown' },
  { name: 'true_class', type: 'string', doc: 'name of that class (`none` for -1)' },
  { name: 'context', type: 'string', doc: 'the pool image\'s context (background, site, ...) where recorded' },
  { name: 'seed_image_context', type: 'string', doc: 'the seed image\'s context where recorded' },
] as const satisfies readonly ColumnDoc[];

/** Columns of `sets.*`, in file order. */
export const SET_COLUMNS = [
  { name: 'world_seed', type: 'int', doc: 'seed of the world (data draw, original model); null where no seed redraws them' },
  { name: 'set', type: 'string', doc: '`seed` (debug-seed: failures on MFreq, used for selection) or `heldout` (debug-heldout: failures on the complement, never used for selection)' },
  { name: 'id', type: 'string', doc: 'image id (the id the seed_image_id column of picks refers to)' },
  { name: 'path', type: 'string', doc: 'the image\'s file; null for sets held in memory' },
  { name: 'label', type: 'int', doc: 'true class index' },
  { name: 'class_name', type: 'string', doc: 'true class name' },
  { name: 'context', type: 'string', doc: 'the image\'s context where recorded' },
  { name: 'original_pred', type: 'int', doc: 'class the original model predicts (null where the run has no `original` row)' },
  { name: 'original_pred_class', type: 'string', doc: 'name of that class' },
] as const satisfies readonly ColumnDoc[];

type Row<C extends readonly ColumnDoc[]> = { [K in C[number] as K['name']]: (K['type'] extends 'string' ? string : number) | null };
export type PickRow = Row<typeof PICK_COLUMNS>;
export type SetRow = Row<typeof SET_COLUMNS>;

/** Pixels of the exported images, for writers that need image files (FiftyOne). */
export interface ImageSource {
  /** Image set whose row `index` holds the image (in-memory pixels), or a file path. */
  set?: ImageSet;
  index?: number;
  file?: string;
}

/** What an export holds. */
export interface ExportData {
  runDir: string;
  classes: string[];
  picks: PickRow[];
  sets: SetRow[];
  /** Per row of `picks` and of `sets`: where its pixels are. */
  pickImages: ImageSource[];
  setImages: ImageSource[];
}

/** `pixels:<i>` rows live in the set's sidecar file; every other path is the image's own file. */
const realPath = (p: string | undefined) => (p && !p.startsWith('pixels:') ? p : null);

function worldOf(label: string): number | null {
  const m = /-s(\d+)$/.exec(label);
  return m ? Number(m[1]) : null;
}

function className(classes: readonly string[], i: number | null | undefined): string | null {
  if (i === null || i === undefined) return null;
  return i < 0 ? 'none' : (classes[i] ?? String(i));
}

/** The original paths of a data stage's sets, by id (the failure sets' rows point at their own sidecars). */
async function originalPaths(data: StageRecord, sets: readonly string[]): Promise<Map<string, ManifestRow>> {
  const out = new Map<string, ManifestRow>();
  for (const s of sets) {
    if (!data.manifest.outputs[s]) continue;
    for (const r of (await readImageSet(data.file(s))).rows) out.set(`${s}\u0000${r.id}`, r);
  }
  return out;
}

/** Reads the picks and seed/heldout sets of the run in `runDir`. */
export async function readExport(runDir: string): Promise<ExportData> {
  const run = openRunFolder(runDir);
  const picks: PickRow[] = [];
  const pickImages: ImageSource[] = [];
  const sets: SetRow[] = [];
  const setImages: ImageSource[] = [];
  let classes: string[] = [];
  const doneSelects = new Set<string>();
  // a pool manifest is read once per data draw, however many selections were made from it
  const poolRows = new Map<string, Promise<Map<string, ManifestRow>>>();
  const poolOf = (data: StageRecord) => poolRows.get(data.dir) ?? (poolRows.set(data.dir, originalPaths(data, ['pool'])), poolRows.get(data.dir)!);
  const doneFailures = new Set<string>();
  const need = (s: StageRecord | undefined, what: string, from: StageRecord) => {
    if (!s) throw new ArtifactError(`${from.dir}: its ${what} stage is not in ${runDir} (manifest inputs name a stage no folder holds); rerun dcd run to complete the run`);
    return s;
  };
  // the original model's predictions on seed/heldout, per failure stage
  const originalPreds = new Map<string, Map<string, number>>();
  for (const row of run.rows.filter((r) => r.method === 'original')) {
    const f = row.evaluate.manifest.inputs['stage:failures'];
    if (!f || originalPreds.has(f)) continue;
    const t = await readArrowFile(row.evaluate.file('predictions'));
    const file = row.evaluate.file('predictions');
    const ids = stringColumn(t, 'id', file), set = stringColumn(t, 'set', file), pred = int32Column(t, 'pred', file);
    const m = new Map<string, number>();
    ids.forEach((id, i) => (set[i] === 'seed' || set[i] === 'heldout') && m.set(`${set[i]}\u0000${id}`, pred[i]!));
    originalPreds.set(f, m);
  }

  for (const row of run.rows) {
    const failures = need(row.evaluate.input('failures'), 'failures', row.evaluate);
    const data = need(failures.input('data'), 'data', failures);
    const classesFile = data.file('classes');
    classes = (JSON.parse(readFileSync(classesFile, 'utf8')) as { names: string[] }).names;
    const world = worldOf(failures.manifest.label);
    const seedSet = await readImageSet(failures.file('seed'));
    const seedById = new Map(seedSet.rows.map((r) => [r.id, r]));

    if (!doneFailures.has(failures.dir)) {
      doneFailures.add(failures.dir);
      const orig = await originalPaths(data, ['mfreq', 'complement']);
      const preds = originalPreds.get(failures.manifest.outputs_hash);
      for (const [name, src] of [['seed', 'mfreq'], ['heldout', 'complement']] as const) {
        const s = name === 'seed' ? seedSet : await readImageSet(failures.file(name));
        s.rows.forEach((r, i) => {
          const p = realPath(r.path) ?? realPath(orig.get(`${src}\u0000${r.id}`)?.path);
          const pred = preds?.get(`${name}\u0000${r.id}`) ?? null;
          sets.push({
            world_seed: world,
            set: name,
            id: r.id,
            path: p,
            label: r.label,
            class_name: r.class_name || className(classes, r.label),
            context: rowFacts(r).context ?? null,
            original_pred: pred,
            original_pred_class: className(classes, pred),
          });
          setImages.push(s.pixels ? { set: s, index: i } : p ? { file: p } : {});
        });
      }
    }

    if (!row.method.startsWith('dcd-')) continue;
    const select = need(row.evaluate.input('added'), 'selection (added)', row.evaluate);
    const key = `${row.variant}\u0000${select.dir}`;
    if (doneSelects.has(key)) continue;
    doneSelects.add(key);
    const orig = await poolOf(data);
    const backbone = row.method.slice('dcd-'.length);
    for (const [kind, selection] of [['deval', 'de-val'], ['debug_train', 'debug-train']] as const) {
      if (!select.manifest.outputs[`${kind}_picks`]) continue;
      const picksFile = select.file(`${kind}_picks`);
      const t = await readArrowFile(picksFile);
      const ids = stringColumn(t, 'id', picksFile), labels = int32Column(t, 'label', picksFile), seedIds = stringColumn(t, 'seed_id', picksFile);
      const dist = float32Column(t, 'distance', picksFile), rank = int32Column(t, 'rank', picksFile);
      const chosen = await readImageSet(select.file(kind));
      const rowIndex = new Map(chosen.rows.map((r, i) => [r.id, i]));
      ids.forEach((id, i) => {
        const j = rowIndex.get(id);
        if (j === undefined) throw new ArtifactError(`${picksFile}: pick ${id} is not in ${select.file(kind)}; the selection's files disagree: delete ${select.dir} and rerun dcd run`);
        const r = chosen.rows[j]!;
        const o = orig.get(`pool\u0000${id}`);
        const facts = rowFacts(o ?? r);
        const p = realPath(o?.path) ?? realPath(r.path);
        picks.push({
          variant: row.variant,
          world_seed: worldOf(select.manifest.label),
          backbone,
          selection,
          pool_id: id,
          path: p,
          url: o?.url ?? r.url ?? null,
          weak_label: labels[i]!,
          weak_class: className(classes, labels[i]!),
          seed_image_id: seedIds[i]!,
          distance: dist[i]!,
          rank: rank[i]!,
          true_label: facts.truth ?? null,
          true_class: className(classes, facts.truth),
          context: facts.context ?? null,
          seed_image_context: rowFacts(seedById.get(seedIds[i]!) ?? {}).context ?? null,
        });
        pickImages.push(chosen.pixels ? { set: chosen, index: j } : p && existsSync(p) ? { file: p } : {});
      });
    }
  }
  return { runDir, classes, picks, sets, pickImages, setImages };
}
