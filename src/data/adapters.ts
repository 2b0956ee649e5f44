/**
 * Dataset adapters: each turns a data set on disk into manifest rows
 * (see src/data/manifest.ts). ImageFolder, ILSVRC2012 train/val, ImageNet-V2 (three
 * variants and the Complement), class subsets and weak-pool lists.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import pLimit from 'p-limit';
import { ConfigError, DataError } from '../core/errors.js';
import { sha256File } from '../core/fsutil.js';
import { readArrowFile } from '../core/arrow.js';
import type { ManifestRow } from './manifest.js';
import { loadSynsets, synsetsByWnid, type Synset } from './synsets.js';
import { devkitGroundTruth, devkitIdMap, devkitMetaMat, isDevkitPath, openDevkit, parseDevkitSynsets, type Devkit } from './devkit.js';

/** File endings treated as images (torchvision's IMG_EXTENSIONS plus .gif), case-insensitive. */
export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp', '.gif'];

const isImageFile = (name: string) => IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());
const WNID = /^n\d{8}$/;

function requireDir(dir: string, what: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new DataError(`${dir}: expected ${what} (a folder); not found`);
}

/**
 * Checks an `--images` argument (a folder of images, searched recursively, or a manifest
 * `.arrow`) before any work starts; the error says what to pass instead.
 * @throws DataError when the path does not exist; ConfigError when it is another kind of file
 */
export function checkImagesInput(images: string, flag = '--images'): void {
  if (!existsSync(images))
    throw new DataError(
      `${flag} ${images}: no such folder or manifest (looked for ${path.resolve(images)}). ` +
        'Pass a folder of images (searched recursively: .jpg, .png, .webp, ...) or a manifest .arrow written by `dcd data manifest`',
    );
  if (!statSync(images).isDirectory() && !images.endsWith('.arrow'))
    throw new ConfigError(`${flag} ${images}: a file, but not a manifest .arrow; pass the folder that holds the images, or a manifest from \`dcd data manifest\``);
}

/** Image files under `dir`, recursively, as paths relative to `dir`, sorted (code-point order, like Python's sorted). */
export function listImages(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    const entries = readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if ((e.isFile() || e.isSymbolicLink()) && isImageFile(e.name)) out.push(r);
    }
  };
  walk('');
  return out;
}

/** The visible sub-folders of `dir`, sorted by code point. */
export function subdirs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Class names of an ImageFolder root by class index, as {@link imageFolder} writes them in `class_name`. */
export function imageFolderClasses(root: string): string[] {
  requireDir(root, 'an ImageFolder root with one sub-folder per class');
  const byWnid = synsetsByWnid();
  return subdirs(root).map((c) => (WNID.test(c) && byWnid.get(c) ? byWnid.get(c)!.names[0]! : c));
}

/**
 * torchvision ImageFolder: one sub-folder per class, classes indexed in sorted folder
 * order. A folder named like a wnid gets its ImageNet name.
 */
export function imageFolder(root: string, opts: { set?: string } = {}): ManifestRow[] {
  requireDir(root, 'an ImageFolder root with one sub-folder per class');
  const byWnid = synsetsByWnid();
  const classes = subdirs(root);
  if (!classes.length) throw new DataError(`${root}: no class sub-folders; ImageFolder expects root/<class>/<image>`);
  const rows: ManifestRow[] = [];
  classes.forEach((c, label) => {
    const syn = WNID.test(c) ? byWnid.get(c) : undefined;
    for (const f of listImages(path.join(root, c)))
      rows.push({ id: `${c}/${f}`, path: path.join(root, c, f), label, wnid: syn ? c : '', class_name: syn ? syn.names[0]! : c, set: opts.set ?? 'train' });
  });
  return rows;
}

/**
 * ILSVRC2012 train: `root/<wnid>/*.JPEG`. The label is the wnid's position in the
 * sorted 1000-class list (`synsets`), so a partial tree keeps ImageNet's indices.
 */
export function ilsvrcTrain(root: string, opts: { set?: string; synsets?: Synset[] } = {}): ManifestRow[] {
  requireDir(root, 'an ILSVRC2012 train folder with one sub-folder per wnid');
  const byWnid = synsetsByWnid(opts.synsets ?? loadSynsets());
  const folders = subdirs(root);
  const bad = folders.filter((f) => !byWnid.has(f));
  if (bad.length)
    throw new DataError(`${root}: sub-folder(s) ${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ', ...' : ''} are not ImageNet-1k wnids; expected root/nXXXXXXXX/<image>`);
  const rows: ManifestRow[] = [];
  for (const w of folders) {
    const s = byWnid.get(w)!;
    for (const f of listImages(path.join(root, w)))
      rows.push({ id: `${w}/${f}`, path: path.join(root, w, f), label: s.index, wnid: w, class_name: s.names[0]!, set: opts.set ?? 'train' });
  }
  return rows;
}

/** Parses `LOC_val_solution.csv` (ImageId,PredictionString "wnid x y x y ..."): image id → wnid (the first box's). */
export function parseLocValSolution(file: string): Map<string, string> {
  const rows = parseCsv(readText(file), file);
  const head = rows[0]?.map((h) => h.trim()) ?? [];
  const iId = head.indexOf('ImageId');
  const iP = head.indexOf('PredictionString');
  if (iId < 0 || iP < 0) throw new DataError(`${file}: expected a header "ImageId,PredictionString"; found "${head.join(',')}"`);
  const out = new Map<string, string>();
  rows.slice(1).forEach((r, i) => {
    if (r.length === 1 && r[0] === '') return;
    const w = (r[iP] ?? '').trim().split(/\s+/)[0] ?? '';
    if (!WNID.test(w)) throw new DataError(`${file}:${i + 2}: PredictionString should start with a wnid, found "${r[iP]}"`);
    out.set(r[iId]!.trim(), w);
  });
  return out;
}

/**
 * Parses a map from ILSVRC2012_ID (1..1000, the devkit's meta.mat order) to wnid: either
 * `map_clsloc.txt` lines (`n02119789 1 kit_fox`) or a CSV with `wordnet_id,ilsvrc2012_id`.
 */
export function parseIlsvrcIdMap(file: string): Map<number, string> {
  const out = new Map<number, string>();
  readText(file)
    .split(/\r?\n/)
    .forEach((line, i) => {
      const s = line.trim();
      if (!s || s.startsWith('#') || /^wordnet_id/i.test(s)) return;
      const parts = s.split(/[\s,]+/);
      const w = parts.find((p) => WNID.test(p));
      const id = parts.find((p) => /^\d+$/.test(p));
      if (!w || !id) throw new DataError(`${file}:${i + 1}: expected "wnid ILSVRC2012_ID [name]" or "wnid,ILSVRC2012_ID"; found "${s}"`);
      out.set(Number(id), w);
    });
  return out;
}

/** True when `file` starts like a Level-5 MAT-file (so it is meta.mat, not a text map). */
function isMatFile(file: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const head = Buffer.alloc(10);
    return readSync(fd, head, 0, 10, 0) === 10 && head.toString('latin1') === 'MATLAB 5.0';
  } catch {
    return false; // unreadable: let the text reader report it
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The ILSVRC2012_ID → wnid map of the 1000 classes from `source`: the devkit (folder or
 * `ILSVRC2012_devkit_t12.tar.gz`), its `data/meta.mat`, or a text map
 * ({@link parseIlsvrcIdMap}). `kit` reuses a devkit already opened from the same path.
 */
export function loadIlsvrcIdMap(source: string, kit?: Devkit): Map<number, string> {
  if (kit || isDevkitPath(source)) {
    const m = devkitMetaMat(kit ?? openDevkit(source));
    return devkitIdMap(parseDevkitSynsets(m.bytes, m.file), m.file);
  }
  if (isMatFile(source)) return devkitIdMap(parseDevkitSynsets(readFileSync(source), source), source);
  return parseIlsvrcIdMap(source);
}

/**
 * ILSVRC2012 validation. Labels come from, in order of preference:
 * `locSolution` (Kaggle's `LOC_val_solution.csv`); or `groundTruth` (the devkit's
 * `ILSVRC2012_validation_ground_truth.txt`, one ILSVRC2012_ID per image in file-number
 * order) plus `idMap` (ILSVRC2012_ID → wnid, see {@link loadIlsvrcIdMap}: the devkit's
 * IDs are *not* the sorted-wnid class indices); or wnid sub-folders (a val tree already
 * sorted into classes, handled like train). `groundTruth` may be the devkit itself
 * (folder or tarball): then it also supplies the ID map, as torchvision's `ImageNet`
 * does. `labels` takes either label file and decides by its ending (.csv =
 * LOC_val_solution.csv).
 */
export function ilsvrcVal(
  root: string,
  opts: { set?: string; locSolution?: string; groundTruth?: string; idMap?: string; labels?: string; synsets?: Synset[] } = {},
): ManifestRow[] {
  requireDir(root, 'the ILSVRC2012 validation folder');
  if (opts.labels) {
    // one label file, either format: a .csv is LOC_val_solution.csv, anything else the devkit ground truth
    opts = opts.labels.toLowerCase().endsWith('.csv') ? { ...opts, locSolution: opts.labels } : { ...opts, groundTruth: opts.labels };
  }
  const set = opts.set ?? 'test';
  const byWnid = synsetsByWnid(opts.synsets ?? loadSynsets());
  let wnidOf: (file: string) => string | undefined;
  let source: string;
  if (opts.locSolution) {
    const m = parseLocValSolution(opts.locSolution);
    wnidOf = (f) => m.get(path.basename(f).replace(/\.[^.]+$/, ''));
    source = opts.locSolution;
  } else if (opts.groundTruth) {
    const kit = isDevkitPath(opts.groundTruth) ? openDevkit(opts.groundTruth) : undefined;
    if (!opts.idMap && !kit)
      throw new DataError(
        `${opts.groundTruth}: the devkit ground truth holds ILSVRC2012_IDs (meta.mat order), not class indices; pass the ID → wnid map too (the devkit folder, ILSVRC2012_devkit_t12.tar.gz or its data/meta.mat; or map_clsloc.txt), pass the devkit itself instead of the .txt, or use LOC_val_solution.csv`,
      );
    const gt = kit ? devkitGroundTruth(kit) : { file: opts.groundTruth, bytes: undefined };
    const ids = (gt.bytes ? gt.bytes.toString('utf8') : readText(gt.file))
      .split(/\r?\n/)
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s, i) => {
        const n = Number(s);
        if (!Number.isInteger(n) || n < 1 || n > 1000) throw new DataError(`${gt.file}:${i + 1}: expected an ILSVRC2012_ID 1..1000, found "${s}"`);
        return n;
      });
    const idMap = opts.idMap ? loadIlsvrcIdMap(opts.idMap, opts.idMap === opts.groundTruth ? kit : undefined) : loadIlsvrcIdMap(opts.groundTruth, kit);
    wnidOf = (f) => {
      const m = /ILSVRC2012_val_(\d{8})/.exec(f);
      if (!m) return undefined;
      const id = ids[Number(m[1]) - 1];
      return id === undefined ? undefined : idMap.get(id);
    };
    source = gt.file;
  } else {
    const dirs = subdirs(root).filter((d) => WNID.test(d));
    if (!dirs.length)
      throw new DataError(`${root}: no labels for the validation images; pass LOC_val_solution.csv, or the devkit (folder or ILSVRC2012_devkit_t12.tar.gz), or sort val into wnid folders`);
    return ilsvrcTrain(root, { set, synsets: opts.synsets });
  }
  const rows: ManifestRow[] = [];
  const missing: string[] = [];
  for (const f of listImages(root)) {
    const w = wnidOf(f);
    const s = w ? byWnid.get(w) : undefined;
    if (!s) {
      missing.push(f);
      continue;
    }
    rows.push({ id: f, path: path.join(root, f), label: s.index, wnid: s.wnid, class_name: s.names[0]!, set });
  }
  if (missing.length)
    throw new DataError(`${source}: no ImageNet-1k label for ${missing.length} image(s) of ${root}, e.g. ${missing.slice(0, 3).join(', ')}; is it the label file of this folder?`);
  return rows;
}

/** The three ImageNet-V2 variants and their set names in manifests. */
export const V2_VARIANTS = { 'matched-frequency': 'mfreq', 'threshold0.7': 'threshold0.7', 'top-images': 'top-images' } as const;
export type V2Variant = keyof typeof V2_VARIANTS;

/**
 * ImageNet-V2 (`imagenetv2-<variant>-format-val/<class index>/<hash>.jpeg`). Folder names
 * are class indices, read as numbers: sorting them as strings (0, 1, 10, 100, ...) and
 * using the position, as ImageFolder does, mislabels 990 of the 1000 classes.
 */
export function imagenetV2(root: string, variant: V2Variant, opts: { set?: string; synsets?: Synset[] } = {}): ManifestRow[] {
  requireDir(root, `an ImageNet-V2 ${variant} folder with sub-folders 0..999`);
  if (!(variant in V2_VARIANTS)) throw new DataError(`ImageNet-V2 variant "${variant}": expected one of ${Object.keys(V2_VARIANTS).join(', ')}`);
  const synsets = opts.synsets ?? loadSynsets();
  const folders = subdirs(root);
  const bad = folders.filter((f) => !/^\d+$/.test(f) || Number(f) >= synsets.length);
  if (bad.length) throw new DataError(`${root}: sub-folder(s) ${bad.slice(0, 5).join(', ')} are not class indices 0..${synsets.length - 1}`);
  const rows: ManifestRow[] = [];
  for (const f of folders.sort((a, b) => Number(a) - Number(b))) {
    const s = synsets[Number(f)]!;
    for (const img of listImages(path.join(root, f)))
      rows.push({ id: `${variant}/${f}/${img}`, path: path.join(root, f, img), label: s.index, wnid: s.wnid, class_name: s.names[0]!, set: opts.set ?? V2_VARIANTS[variant] });
  }
  return rows;
}

/** sha256 of every row's file, `concurrency` at a time; fills `row.sha256`. */
export async function hashRows(rows: ManifestRow[], concurrency = 4): Promise<void> {
  const limit = pLimit(concurrency);
  await Promise.all(
    rows.map((r) =>
      limit(async () => {
        try {
          r.sha256 = await sha256File(r.path);
        } catch (e) {
          throw new DataError(`${r.path}: cannot hash (${(e as Error).message})`);
        }
      }),
    ),
  );
}

/**
 * The V2 Complement: (MatchedFrequency ∪ Threshold0.7 ∪ TopImages) minus MatchedFrequency,
 * by content sha256, each image once (the first occurrence, Threshold0.7 before TopImages).
 */
export async function imagenetV2Complement(roots: { matchedFrequency: string; threshold: string; topImages: string }, opts: { synsets?: Synset[] } = {}): Promise<ManifestRow[]> {
  const mf = imagenetV2(roots.matchedFrequency, 'matched-frequency', opts);
  const rest = [...imagenetV2(roots.threshold, 'threshold0.7', opts), ...imagenetV2(roots.topImages, 'top-images', opts)];
  await hashRows(mf);
  await hashRows(rest);
  const seen = new Set(mf.map((r) => r.sha256!));
  const out: ManifestRow[] = [];
  for (const r of rest) {
    if (seen.has(r.sha256!)) continue;
    seen.add(r.sha256!);
    out.push({ ...r, set: 'complement' });
  }
  return out;
}

/**
 * Reads a class-subset file: wnids or class indices, separated by newlines, commas or
 * spaces; `#` starts a comment. Returns sorted unique class indices.
 */
export function readClassSubset(file: string, synsets: Synset[] = loadSynsets()): number[] {
  const byWnid = synsetsByWnid(synsets);
  const out = new Set<number>();
  readText(file)
    .split(/\r?\n/)
    .forEach((line, i) => {
      for (const tok of line.replace(/#.*/, '').split(/[\s,]+/).filter(Boolean)) {
        if (WNID.test(tok)) {
          const s = byWnid.get(tok);
          if (!s) throw new DataError(`${file}:${i + 1}: "${tok}" is not one of the ${synsets.length} classes`);
          out.add(s.index);
        } else if (/^\d+$/.test(tok) && Number(tok) < synsets.length) out.add(Number(tok));
        else throw new DataError(`${file}:${i + 1}: expected a wnid (nXXXXXXXX) or a class index 0..${synsets.length - 1}, found "${tok}"`);
      }
    });
  if (!out.size) throw new DataError(`${file}: the class subset is empty`);
  return [...out].sort((a, b) => a - b);
}

/** Rows whose label (or weak label, when unlabelled) is in `classes`. */
export function subsetRows(rows: readonly ManifestRow[], classes: readonly number[]): ManifestRow[] {
  const keep = new Set(classes);
  return rows.filter((r) => keep.has(r.label >= 0 ? r.label : (r.weak_label ?? -1)));
}

/**
 * A weak-pool list (CSV with a header, JSONL, or Arrow): each record has `path` and/or
 * `url`, a weak label (`weak_label`, `wnid` or `label`: a wnid or a class index) and
 * optionally `query`. Relative paths are resolved against the list's folder. True labels
 * are unknown (label -1); the query goes into `context` as `{"query": ...}`.
 */
export async function weakPool(file: string, opts: { set?: string; synsets?: Synset[] } = {}): Promise<ManifestRow[]> {
  if (!existsSync(file)) throw new DataError(`${file}: weak-pool list not found`);
  const synsets = opts.synsets ?? loadSynsets();
  const byWnid = synsetsByWnid(synsets);
  const recs = (await readListRecords(file, 'weak pool')).map((r) => r.fields);
  const base = path.dirname(path.resolve(file));
  const out: ManifestRow[] = [];
  const ids = new Set<string>();
  recs.forEach((r, i) => {
    const where = `${file}: record ${i + 1}`;
    const p = str(r.path);
    const url = str(r.url);
    if (!p && !url) throw new DataError(`${where}: needs a "path" or a "url"`);
    const wl = r.weak_label ?? r.wnid ?? r.label;
    let s: Synset | undefined;
    if (typeof wl === 'number' || (typeof wl === 'string' && /^\d+$/.test(wl.trim()))) s = synsets[Number(wl)];
    else if (typeof wl === 'string') s = byWnid.get(wl.trim());
    if (!s) throw new DataError(`${where}: weak label ${JSON.stringify(wl)} is not a wnid or a class index 0..${synsets.length - 1}`);
    const id = str(r.id) || p || url!;
    if (ids.has(id)) throw new DataError(`${where}: duplicate id/path/url "${id}"`);
    ids.add(id);
    const row: ManifestRow = { id, path: p ? path.resolve(base, p) : '', label: -1, wnid: s.wnid, class_name: s.names[0]!, set: opts.set ?? 'pool', weak_label: s.index };
    if (url) row.url = url;
    const q = str(r.query);
    if (q) row.context = JSON.stringify({ query: q });
    if (str(r.sha256)) row.sha256 = str(r.sha256);
    out.push(row);
  });
  return out;
}

/** A record's field as a trimmed string; undefined when absent or blank. */
export function str(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  const s = String(v).trim();
  return s === '' ? undefined : s;
}

/** A text file; with `key` (the config key that names it), a missing file is an error naming the key. */
export function readText(file: string, key?: string): string {
  if (key !== undefined && !existsSync(file)) throw new DataError(`${key}: ${file} not found; fix the path (relative paths are relative to the config file)`);
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new DataError(key === undefined ? `${file}: cannot read (${why})` : `${key}: cannot read ${file} (${why})`);
  }
}

/**
 * The records of an image list (the weak pool's: CSV / TSV with a header, JSONL, or Arrow), each
 * with the line (CSV/JSONL) or row (Arrow) it came from; `key` names the list in errors.
 */
export async function readListRecords(file: string, key: string): Promise<{ fields: Record<string, unknown>; where: string }[]> {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.arrow' || ext === '.feather' || ext === '.ipc') {
    if (!existsSync(file)) throw new DataError(`${key}: ${file} not found; fix the path (relative paths are relative to the config file)`);
    return (await readArrowFile(file)).toArray().map((r, i) => ({ fields: r.toJSON() as Record<string, unknown>, where: `${file}: row ${i}` }));
  }
  if (ext === '.csv' || ext === '.tsv') {
    const lines: number[] = [];
    const rows = parseCsv(readText(file, key), file, ext === '.tsv' ? '\t' : ',', lines);
    const head = (rows[0] ?? []).map((h) => h.trim());
    if (!head.length || (head.length === 1 && head[0] === '')) throw new DataError(`${file}: empty pool list; expected a header line (path,weak_label[,true_label,context]) and one line per image`);
    return rows.slice(1).flatMap((r, i) => {
      if (r.length === 1 && r[0]!.trim() === '') return [];
      const line = lines[i + 1]!;
      if (r.length > head.length) throw new DataError(`${file}:${line}: ${r.length} fields but the header has ${head.length}; quote fields that contain "${ext === '.tsv' ? '\\t' : ','}"`);
      return [{ fields: Object.fromEntries(head.map((h, j) => [h, r[j] ?? ''])), where: `${file}:${line}` }];
    });
  }
  if (ext === '.jsonl' || ext === '.ndjson')
    return readText(file, key)
      .split(/\r?\n/)
      .flatMap((l, i) => {
        if (!l.trim()) return [];
        let v: unknown;
        try {
          v = JSON.parse(l);
        } catch (e) {
          throw new DataError(`${file}:${i + 1}: not valid JSON (${(e as Error).message}); write one JSON object a line`);
        }
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new DataError(`${file}:${i + 1}: expected a JSON object ({"path": ..., "weak_label": ...}), found ${l.trim().slice(0, 40)}`);
        return [{ fields: v as Record<string, unknown>, where: `${file}:${i + 1}` }];
      });
  throw new DataError(`${key}: ${file}: unknown pool list format "${ext}"; expected .csv, .tsv, .jsonl, .ndjson or .arrow`);
}

/**
 * RFC 4180 CSV: quoted fields may hold separators, newlines and doubled quotes.
 * @param lines when given, receives the 1-based line number each row starts on (for error messages)
 */
export function parseCsv(text: string, file = '<csv>', sep = ',', lines?: number[]): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  let line = 1;
  let rowStart = 1;
  const n = text.length;
  if (text.charCodeAt(0) === 0xfeff) i = 1;
  while (i < n) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i++;
        continue;
      }
      if (c === '\n') line++;
      field += c;
      i++;
      continue;
    }
    if (c === '"' && field === '') {
      quoted = true;
      i++;
    } else if (c === sep) {
      row.push(field);
      field = '';
      i++;
    } else if (c === '\n' || c === '\r') {
      row.push(field);
      rows.push(row);
      lines?.push(rowStart);
      row = [];
      field = '';
      i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
      rowStart = ++line;
    } else {
      field += c;
      i++;
    }
  }
  if (quoted) throw new DataError(`${file}: unterminated quoted field at the end of the file`);
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
    lines?.push(rowStart);
  }
  return rows;
}
