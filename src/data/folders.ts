/**
 * A user's own data as the paper's roles: every set an ImageFolder
 * (`<set>/<class name>/<image>`, nested folders allowed, any format sharp reads), plus a
 * weak pool list, an optional class order and optional contexts.
 *
 * | role | paper | what it is |
 * |---|---|---|
 * | `train` | ImageNet train | the original model's training set; its class folders define the classes |
 * | `test` | ImageNet val ("INet") | in-distribution test |
 * | `mfreq` | V2 MatchedFrequency | deployment set whose failures become debug-seed |
 * | `complement` | V2 Complement | deployment set whose failures become debug-heldout |
 * | `pool` | the weak web pool | CSV / TSV / JSONL / Arrow list: `path` (or `url`), `weak_label`, optional `id`, `true_label`, `context`, `query` |
 *
 * Pool paths are relative to the list's folder and may not leave it. Weak labels are class
 * names (or indices into the class order). `true_label` (a class name, or anything else for
 * "none of the classes") feeds the report's wrong-pick gallery and noise rates; `context` its
 * context statistics. `contexts.csv` (`path,context`, paths relative to its own folder) gives
 * the context of images of the other sets (retention by context, paper Fig. 7).
 *
 * Manifest rows carry `context` as JSON (`{"context": ..., "true_label": ...}`), the
 * convention of the synthetic benchmark, so the report reads both the same way.
 */
import { existsSync, lstatSync, readdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import type { FoldersDataConfig } from '../core/config.js';
import { DataError } from '../core/errors.js';
import { listImages, parseCsv, readListRecords, readText, str, subdirs } from './adapters.js';
import type { ManifestRow } from './manifest.js';
import { imageBatches } from './images.js';
import { manifestItems } from './idx.js';

/** The ImageFolder roles, in the order a run reads them. */
export const FOLDER_ROLES = ['train', 'test', 'mfreq', 'complement'] as const;
export type FolderRole = (typeof FOLDER_ROLES)[number];

/** Where each part of a folder dataset is: a config's `data.folders` (absolute paths; src/core/config.ts documents them). */
export type FolderSpec = FoldersDataConfig;

/** A folder dataset read from disk (no pixels decoded yet). */
export interface FolderDataset {
  classes: string[];
  sets: Record<FolderRole, ManifestRow[]>;
  pool: ManifestRow[];
  /** Files under a set folder that are not inside a class folder (ignored). */
  stray: { role: FolderRole; file: string }[];
}

/** The class order of a `classes.txt`: one name a line, blank lines skipped, no duplicates. */
export function readClassList(file: string, key = 'data.folders.classes'): string[] {
  const names: string[] = [];
  const at = new Map<string, number>();
  readText(file, key)
    .split(/\r?\n/)
    .forEach((line, i) => {
      const name = line.trim();
      if (!name) return;
      if (at.has(name)) throw new DataError(`${file}:${i + 1}: class "${name}" is listed twice (first on line ${at.get(name)}); list each class once`);
      at.set(name, i + 1);
      names.push(name);
    });
  if (!names.length) throw new DataError(`${file}: no class names; write one class name a line, in the order of the model's outputs`);
  return names;
}

/**
 * The images of one ImageFolder set: `root/<class>/**\/<image>` (nested folders allowed).
 * Class folders must be known classes (`classes`); a set without images is an error.
 */
export function scanFolderSet(root: string, role: FolderRole, classes: readonly string[], opts: { trainRoot?: string; key?: string } = {}): { rows: ManifestRow[]; stray: string[] } {
  const key = opts.key ?? `data.folders.${role}`;
  if (!existsSync(root)) throw new DataError(`${key}: ${root} not found; point it at a folder with one sub-folder per class (${root}/<class>/<image>)`);
  if (!statSync(root).isDirectory()) throw new DataError(`${key}: ${root} is a file; expected a folder with one sub-folder per class`);
  const index = new Map(classes.map((c, i) => [c, i]));
  const rows: ManifestRow[] = [];
  const folders = subdirs(root);
  for (const c of folders) {
    const label = index.get(c);
    if (label === undefined) {
      if (role === 'train')
        throw new DataError(`${key}: class folder "${c}" (${path.join(root, c)}) is not in the class list; add it to classes.txt or remove the folder`);
      throw new DataError(
        `${key}: ${path.join(root, c)} is class "${c}", which train${opts.trainRoot ? ` (${opts.trainRoot})` : ''} lacks; the model cannot predict it — add train images of "${c}", or remove the folder from ${role}`,
      );
    }
    for (const f of listImages(path.join(root, c))) rows.push({ id: `${c}/${f}`, path: path.join(root, c, f), label, wnid: '', class_name: c, set: role });
  }
  const stray = readdirSync(root, { withFileTypes: true })
    .filter((e) => !e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name);
  if (!rows.length)
    throw new DataError(
      `${key}: ${root} holds no images${folders.length ? ` in its ${folders.length} class folder(s)` : ' and no class folders'}; expected ${root}/<class>/<image> (jpg, png, webp, ...)`,
    );
  return { rows, stray };
}

/** A class given by name, or by index into `classes`; undefined when it is neither. */
function classIndex(v: unknown, classes: readonly string[], index: ReadonlyMap<string, number>): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v < classes.length ? v : undefined;
  const s = str(v);
  if (s === undefined) return undefined;
  const byName = index.get(s);
  if (byName !== undefined) return byName;
  if (/^\d+$/.test(s) && Number(s) < classes.length) return Number(s);
  return undefined;
}

/** True when `abs` lies strictly under `base` (both absolute). */
function under(base: string, abs: string): boolean {
  const rel = path.relative(base, abs);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/**
 * `p` resolved against `base`, or undefined when it leaves `base`: by its name (`../`, an
 * absolute path) or through a symlink (the real path of the file, or of its nearest existing
 * folder, is outside the real path of `base`; a dangling symlink counts as leaving).
 */
function inside(base: string, p: string): string | undefined {
  const abs = path.resolve(base, p);
  if (!under(base, abs)) return undefined;
  let probe = abs;
  for (;;) {
    try {
      lstatSync(probe);
      break;
    } catch {
      if (path.dirname(probe) === probe) return abs;
      probe = path.dirname(probe);
    }
  }
  try {
    const real = realpathSync(probe);
    const realBase = realpathSync(base);
    return real === realBase || under(realBase, real) ? abs : undefined;
  } catch {
    return undefined; // a dangling symlink
  }
}

const listClasses = (classes: readonly string[]) => (classes.length <= 8 ? classes.join(', ') : `${classes.slice(0, 8).join(', ')}, ...`);

/**
 * Reads a weak-pool list into manifest rows (label -1, `weak_label` set). Every error names
 * the file and line: no path/url, a weak label that is no class, a path that leaves the
 * list's folder, a duplicate id.
 */
export async function readPoolList(file: string, classes: readonly string[]): Promise<ManifestRow[]> {
  const recs = await readListRecords(file, 'data.folders.pool');
  const base = path.dirname(path.resolve(file));
  const index = new Map(classes.map((c, i) => [c, i]));
  if (!recs.length) throw new DataError(`data.folders.pool: ${file} lists no images; the pool needs at least one image per subset class`);
  const cols = new Set(Object.keys(recs[0]!.fields));
  if (!cols.has('weak_label'))
    throw new DataError(`${file}: no weak_label column (has: ${[...cols].join(', ') || 'none'}); give each pool image the class it was collected for (a class name or index)`);
  const seen = new Map<string, string>();
  const out: ManifestRow[] = [];
  for (const { fields: r, where } of recs) {
    const p = str(r.path);
    const url = str(r.url);
    if (!p && !url) throw new DataError(`${where}: needs a path (relative to ${base}) or a url`);
    const wl = r.weak_label;
    const weak = classIndex(wl, classes, index);
    if (weak === undefined)
      throw new DataError(`${where}: weak_label ${JSON.stringify(wl ?? null)} is no class; expected a class name (${listClasses(classes)}) or an index 0..${classes.length - 1}`);
    let abs = '';
    if (p) {
      const a = inside(base, p);
      if (!a) throw new DataError(`${where}: path "${p}" leaves the list's folder ${base} (by name or through a symlink); keep pool images under the folder of the list and give paths relative to it`);
      abs = a;
    }
    const id = str(r.id) ?? (p ? path.relative(base, abs).split(path.sep).join('/') : url!);
    const first = seen.get(id);
    if (first) throw new DataError(`${where}: duplicate id "${id}" (first at ${first}); every pool image must be listed once`);
    seen.set(id, where);
    const row: ManifestRow = { id, path: abs, label: -1, wnid: '', class_name: classes[weak]!, set: 'pool', weak_label: weak };
    if (url) row.url = url;
    const ctx: Record<string, unknown> = {};
    const c = str(r.context);
    if (c !== undefined) ctx.context = c;
    if (r.true_label !== undefined && str(r.true_label) !== undefined) ctx.true_label = classIndex(r.true_label, classes, index) ?? -1;
    const q = str(r.query);
    if (q !== undefined) ctx.query = q;
    if (Object.keys(ctx).length) row.context = JSON.stringify(ctx);
    out.push(row);
  }
  return out;
}

/** `contexts.csv`: header `path,context`; paths relative to its folder. Returns absolute path → context. */
export function readContexts(file: string, key = 'data.folders.contexts'): Map<string, string> {
  const lines: number[] = [];
  const rows = parseCsv(readText(file, key), file, ',', lines);
  const head = (rows[0] ?? []).map((h) => h.trim());
  const ip = head.indexOf('path');
  const ic = head.indexOf('context');
  if (ip < 0 || ic < 0) throw new DataError(`${file}:1: expected a header "path,context"; found "${head.join(',')}"`);
  const base = path.dirname(path.resolve(file));
  const out = new Map<string, string>();
  const at = new Map<string, number>();
  rows.slice(1).forEach((r, i) => {
    const line = lines[i + 1]!;
    if (r.length === 1 && r[0]!.trim() === '') return;
    const p = str(r[ip]);
    if (!p) throw new DataError(`${file}:${line}: empty path`);
    const abs = inside(base, p);
    if (!abs) throw new DataError(`${file}:${line}: path "${p}" leaves the folder ${base} (by name or through a symlink); give paths relative to the folder of contexts.csv`);
    if (at.has(abs)) throw new DataError(`${file}:${line}: "${p}" is listed twice (first on line ${at.get(abs)})`);
    at.set(abs, line);
    out.set(abs, (r[ic] ?? '').trim());
  });
  return out;
}

/**
 * Y_sub from a file of class names (or indices), one or more a line; `#` starts a comment.
 * Errors name the line of a name that is no class.
 */
export function readSubsetNames(file: string, classes: readonly string[], key = 'failures.subset'): number[] {
  const index = new Map(classes.map((c, i) => [c, i]));
  const out = new Set<number>();
  readText(file, key)
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const line = raw.replace(/#.*/, '').trim();
      if (!line) return;
      // a whole line is one name (names may hold spaces); else comma-separated names
      const toks = index.has(line) ? [line] : line.split(',').map((t) => t.trim()).filter(Boolean);
      for (const t of toks) {
        const y = classIndex(t, classes, index);
        if (y === undefined) throw new DataError(`${file}:${i + 1}: "${t}" is no class; expected a class name (${listClasses(classes)}) or an index 0..${classes.length - 1}`);
        out.add(y);
      }
    });
  if (!out.size) throw new DataError(`${file}: the class subset is empty; write the classes to debug, one a line`);
  return [...out].sort((a, b) => a - b);
}

/** Subset classes that no pool image carries as its weak label; an error naming them and `where`. */
export function checkSubsetInPool(subset: readonly number[], pool: readonly ManifestRow[], classes: readonly string[], where: string): void {
  const have = new Set(pool.map((r) => r.weak_label ?? -1));
  const missing = subset.filter((y) => !have.has(y));
  if (missing.length)
    throw new DataError(
      `${where}: subset class(es) ${missing.map((y) => `"${classes[y] ?? y}"`).join(', ')} have no pool images (no pool line has them as weak_label); add pool images of them or drop them from the subset`,
    );
}

/** Reads every part of a folder dataset: classes, the four sets, the pool, and contexts where given. */
export async function readFolderDataset(spec: FolderSpec): Promise<FolderDataset> {
  if (!existsSync(spec.train)) throw new DataError(`data.folders.train: ${spec.train} not found; point it at the original model's training set (one sub-folder per class)`);
  const classes = spec.classes ? readClassList(spec.classes) : subdirs(spec.train);
  if (!classes.length) throw new DataError(`data.folders.train: ${spec.train} has no class folders; expected ${spec.train}/<class>/<image>`);
  const sets = {} as Record<FolderRole, ManifestRow[]>;
  const stray: FolderDataset['stray'] = [];
  for (const role of FOLDER_ROLES) {
    const r = scanFolderSet(spec[role], role, classes, { trainRoot: spec.train });
    sets[role] = r.rows;
    stray.push(...r.stray.map((file) => ({ role, file })));
  }
  if (!spec.classes) {
    // Classes come from train's folders: an empty one would be a class the model never sees an image of.
    const inTrain = new Set(sets.train.map((r) => r.label));
    const empty = classes.filter((_, i) => !inTrain.has(i));
    if (empty.length)
      throw new DataError(
        `data.folders.train: class folder(s) ${empty.map((c) => path.join(spec.train, c)).join(', ')} hold no images; without a classes.txt every train folder is a class. Add images to ${empty.length > 1 ? 'them' : 'it'}, remove ${empty.length > 1 ? 'them' : 'it'}, or list the classes in classes.txt`,
      );
  }
  if (spec.classes) {
    const inTrain = new Set(sets.train.map((r) => r.label));
    const lacking = classes.filter((_, i) => !inTrain.has(i));
    if (lacking.length)
      throw new DataError(`data.folders.classes: ${spec.classes} lists ${lacking.map((c) => `"${c}"`).join(', ')}, which train (${spec.train}) has no images of; add them to train or remove the line`);
  }
  const pool = await readPoolList(spec.pool, classes);
  if (spec.contexts) {
    const ctx = readContexts(spec.contexts);
    for (const role of FOLDER_ROLES)
      for (const r of sets[role]) {
        const c = ctx.get(r.path);
        if (c !== undefined) r.context = JSON.stringify({ context: c });
      }
  }
  return { classes, sets, pool, stray };
}

/** Result of {@link decodeFolderRows}. */
export interface DecodedRows {
  /** The rows whose image decoded, in input order. */
  rows: ManifestRow[];
  /** HWC uint8 RGB, [rows.length, size, size, 3]. */
  pixels: Uint8Array;
  /** Rows that did not decode, with the reason. */
  skipped: { id: string; path: string; reason: string }[];
}

/**
 * Decodes the images of `rows` once, shorter side to `size` and centre crop `size` × `size`
 * (the eval transform), to uint8 RGB. Unreadable images (missing, empty, corrupt, not an
 * image, no path) are skipped and listed, not fatal.
 */
export async function decodeFolderRows(rows: readonly ManifestRow[], size: number, opts: { concurrency?: number; onProgress?: (n: number) => void } = {}): Promise<DecodedRows> {
  const per = size * size * 3;
  const byId = new Map(rows.map((r) => [r.id, r]));
  const skipped: DecodedRows['skipped'] = rows.filter((r) => !r.path).map((r) => ({ id: r.id, path: r.url ?? '', reason: 'no path (a url only: download it first, e.g. dcd pool download)' }));
  const items = manifestItems(rows.filter((r) => r.path));
  const parts: { ids: string[]; data: Float32Array }[] = [];
  let n = 0;
  // mean 0, std 1/255: the batch values are the 8-bit pixels themselves
  const t = { resize: size, crop: size, mean: [0, 0, 0], std: [1 / 255, 1 / 255, 1 / 255] };
  for await (const b of imageBatches(items, t, 256, { concurrency: opts.concurrency ?? 2 })) {
    parts.push({ ids: b.ids, data: b.data });
    n += b.ids.length;
    skipped.push(...b.skipped);
    opts.onProgress?.(b.ids.length + b.skipped.length);
  }
  const pixels = new Uint8Array(n * per);
  const kept: ManifestRow[] = [];
  let o = 0;
  for (const p of parts) {
    for (let i = 0; i < p.ids.length * per; i++) pixels[o + i] = Math.min(255, Math.max(0, Math.round(p.data[i]!)));
    o += p.ids.length * per;
    for (const id of p.ids) kept.push(byId.get(id)!);
  }
  return { rows: kept, pixels, skipped };
}
