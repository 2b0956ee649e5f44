/**
 * FOCUS ("Familiar Objects in Common and Uncommon Settings", Kattakinda & Feizi, ICML
 * 2022): images of 10 object categories annotated with time of day, weather and
 * locations, stored in `annotations.db` (SQLite) beside the images.
 *
 * Assumed schema (the public repo reads rows of (image path with a leading '/',
 * category, time, weather, "loc1, loc2")): one table with columns for the image path
 * (`image_path`, `file`, `path` or `image`), `category`, `time`, `weather` and
 * `locations` (comma-separated). The adapter finds the table that has a `category`
 * column and maps the other columns by those names, so a renamed table still works.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DataError } from '../core/errors.js';
import type { ManifestRow } from './manifest.js';

/** FOCUS categories in label order (the repo's BGVarDataset.categories). */
export const FOCUS_CATEGORIES = ['truck', 'car', 'plane', 'ship', 'cat', 'dog', 'horse', 'deer', 'frog', 'bird'] as const;
/** Values of the context attributes, as in the FOCUS repo ('none' = not annotated). */
export const FOCUS_TIMES = ['day', 'night', 'none'] as const;
export const FOCUS_WEATHERS = ['cloudy', 'foggy', 'partly cloudy', 'raining', 'snowing', 'sunny', 'none'] as const;
export const FOCUS_LOCATIONS = ['forest', 'grass', 'indoors', 'rocks', 'sand', 'street', 'snow', 'water', 'none'] as const;

const PATH_COLUMNS = ['image_path', 'file', 'path', 'image', 'filename', 'image_file'];

/** The context of a FOCUS image, stored as JSON in the manifest's `context` column. */
export interface FocusContext {
  time: string;
  weather: string;
  locations: string[];
}

/**
 * FOCUS as manifest rows: label = category index in {@link FOCUS_CATEGORIES}, `context`
 * = JSON {@link FocusContext}. `root` is the folder with `annotations.db` and the images
 * (or the .db file itself).
 */
export function focus(root: string, opts: { set?: string } = {}): ManifestRow[] {
  const dbFile = root.endsWith('.db') ? root : path.join(root, 'annotations.db');
  const base = path.dirname(dbFile);
  if (!existsSync(dbFile)) throw new DataError(`${dbFile}: FOCUS annotations database not found; expected <root>/annotations.db`);
  let db: Database.Database;
  try {
    db = new Database(dbFile, { readonly: true, fileMustExist: true });
  } catch (e) {
    throw new DataError(`${dbFile}: cannot open as SQLite (${(e as Error).message})`);
  }
  try {
    let tables: { name: string }[];
    try {
      tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[];
    } catch (e) {
      throw new DataError(`${dbFile}: not a readable SQLite database (${(e as Error).message})`);
    }
    let found: { table: string; cols: Record<'path' | 'category' | 'time' | 'weather' | 'locations', string | undefined> } | undefined;
    for (const { name } of tables) {
      const cols = (db.prepare(`PRAGMA table_info("${name.replace(/"/g, '""')}")`).all() as { name: string }[]).map((c) => c.name);
      const lower = new Map(cols.map((c) => [c.toLowerCase(), c]));
      if (!lower.has('category')) continue;
      const p = PATH_COLUMNS.map((c) => lower.get(c)).find(Boolean);
      if (!p) continue;
      found = { table: name, cols: { path: p, category: lower.get('category'), time: lower.get('time'), weather: lower.get('weather'), locations: lower.get('locations') ?? lower.get('location') } };
      break;
    }
    if (!found)
      throw new DataError(
        `${dbFile}: no table with a "category" column and an image path column (${PATH_COLUMNS.join(', ')}); tables: ${tables.map((t) => t.name).join(', ') || 'none'}`,
      );
    const q = (c: string | undefined) => (c ? `"${c}"` : 'NULL');
    const sql = `SELECT ${q(found.cols.path)} AS p, ${q(found.cols.category)} AS c, ${q(found.cols.time)} AS t, ${q(found.cols.weather)} AS w, ${q(found.cols.locations)} AS l FROM "${found.table}" ORDER BY ${q(found.cols.path)}`;
    const recs = db.prepare(sql).all() as { p: string; c: string; t: string | null; w: string | null; l: string | null }[];
    const rows: ManifestRow[] = [];
    for (const r of recs) {
      const cat = String(r.c).trim().toLowerCase();
      const label = (FOCUS_CATEGORIES as readonly string[]).indexOf(cat);
      if (label < 0) throw new DataError(`${dbFile}: image ${r.p} has category "${r.c}"; expected one of ${FOCUS_CATEGORIES.join(', ')}`);
      const rel = String(r.p).replace(/^\/+/, '');
      const ctx: FocusContext = {
        time: (r.t ?? 'none').trim() || 'none',
        weather: (r.w ?? 'none').trim() || 'none',
        locations: (r.l ?? 'none').split(',').map((s) => s.trim()).filter(Boolean),
      };
      rows.push({ id: rel, path: path.join(base, rel), label, wnid: '', class_name: cat, set: opts.set ?? 'focus', context: JSON.stringify(ctx) });
    }
    return rows;
  } finally {
    db.close();
  }
}
