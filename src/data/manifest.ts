/**
 * The manifest: one Arrow schema for every image set dcd reads.
 *
 * | column | type | meaning |
 * |---|---|---|
 * | `id` | Utf8 | unique within the manifest (usually the path relative to the set's root) |
 * | `path` | Utf8 | where the pixels are: a file path, or `idx:<file>#<index>` for an image inside an IDX file |
 * | `label` | Int32 | class index, -1 when there is none (weak pool, unlabelled) |
 * | `wnid` | Utf8 | WordNet id of the class ('' when the set has none) |
 * | `class_name` | Utf8 | human-readable class name ('' when unknown) |
 * | `set` | Utf8 | set name: train, test, mfreq, complement, pool, ... |
 * | `weak_label` | Int32, optional | the class searched for (weak pool), -1 none |
 * | `url` | Utf8, optional | where the image came from |
 * | `context` | Utf8, optional | JSON object of context attributes (FOCUS: time, weather, locations; synthetic: context) |
 * | `sha256` | Utf8, optional | hex sha256 of the file's bytes |
 *
 * Metadata: `dcd.kind` = `manifest`, `dcd.source` (the adapter), `dcd.classes` (JSON list of
 * class names by index, when known), plus whatever the adapter adds.
 */
import { buildTable, metadataOf, readArrowFile, requireColumns, writeArrowFile, type ColumnInput } from '../core/arrow.js';
import { ArtifactError } from '../core/errors.js';
import type { Table } from 'apache-arrow';

/** One row of a manifest. */
export interface ManifestRow {
  id: string;
  path: string;
  /** Class index; -1 = none. */
  label: number;
  wnid: string;
  class_name: string;
  set: string;
  weak_label?: number;
  url?: string;
  context?: string;
  sha256?: string;
}

/** A manifest in memory. */
export interface Manifest {
  rows: ManifestRow[];
  /** Schema metadata, keys prefixed `dcd.`. */
  meta: Record<string, string>;
}

export const REQUIRED_COLUMNS = ['id', 'path', 'label', 'wnid', 'class_name', 'set'] as const;
const OPTIONAL_STRING = ['url', 'context', 'sha256'] as const;

/** Builds the Arrow table of a manifest (optional columns appear when any row has them). */
export function manifestTable(rows: readonly ManifestRow[], meta: Record<string, string> = {}): Table {
  const ids = new Set<string>();
  for (const r of rows) {
    if (ids.has(r.id)) throw new ArtifactError(`manifest: duplicate id "${r.id}"; ids must be unique within a manifest`);
    ids.add(r.id);
    if (!Number.isInteger(r.label)) throw new ArtifactError(`manifest: row "${r.id}" has label ${r.label}; expected an integer (-1 for none)`);
  }
  const cols: Record<string, ColumnInput> = {
    id: { kind: 'utf8', values: rows.map((r) => r.id) },
    path: { kind: 'utf8', values: rows.map((r) => r.path) },
    label: { kind: 'int32', values: Int32Array.from(rows, (r) => r.label) },
    wnid: { kind: 'utf8', values: rows.map((r) => r.wnid) },
    class_name: { kind: 'utf8', values: rows.map((r) => r.class_name) },
    set: { kind: 'utf8', values: rows.map((r) => r.set) },
  };
  if (rows.some((r) => r.weak_label !== undefined)) cols.weak_label = { kind: 'int32', values: Int32Array.from(rows, (r) => r.weak_label ?? -1) };
  for (const k of OPTIONAL_STRING) if (rows.some((r) => r[k] !== undefined)) cols[k] = { kind: 'utf8', values: rows.map((r) => r[k] ?? null) };
  return buildTable(cols, { 'dcd.kind': 'manifest', ...meta });
}

/** Writes a manifest Arrow file atomically. */
export async function writeManifest(file: string, rows: readonly ManifestRow[], meta: Record<string, string> = {}): Promise<void> {
  await writeArrowFile(file, manifestTable(rows, meta));
}

/** Rows of a manifest table; errors name `file`. */
export function manifestRows(t: Table, file = '<table>'): ManifestRow[] {
  requireColumns(t, REQUIRED_COLUMNS, file);
  const get = (n: string) => (t.getChild(n) ? (t.getChild(n)!.toArray() as ArrayLike<unknown>) : undefined);
  const id = get('id')!, p = get('path')!, label = get('label')!, wnid = get('wnid')!, cn = get('class_name')!, set = get('set')!;
  const weak = get('weak_label');
  const opt = OPTIONAL_STRING.map((k) => [k, get(k)] as const);
  const rows: ManifestRow[] = new Array(t.numRows);
  const seen = new Map<string, number>();
  for (let i = 0; i < t.numRows; i++) {
    // a malformed file (nulls, non-integer labels, repeated ids) is refused here, not carried into a run
    if (id[i] === null || id[i] === undefined || id[i] === '') throw new ArtifactError(`${file}: column id: row ${i} has no id; every manifest row needs a unique id — re-create the file`);
    const first = seen.get(String(id[i]));
    if (first !== undefined) throw new ArtifactError(`${file}: column id: "${String(id[i])}" in rows ${first} and ${i}; ids must be unique within a manifest — re-create the file`);
    seen.set(String(id[i]), i);
    for (const [name, col] of [['label', label], ['weak_label', weak]] as const)
      if (col && !Number.isInteger(Number(col[i] ?? NaN)))
        throw new ArtifactError(`${file}: column ${name}: row ${i} (id ${String(id[i])}) holds ${String(col[i])}; expected an integer class index (-1 for none) — re-create the file`);
    const r: ManifestRow = {
      id: String(id[i]),
      path: String(p[i]),
      label: Number(label[i]),
      wnid: String(wnid[i] ?? ''),
      class_name: String(cn[i] ?? ''),
      set: String(set[i] ?? ''),
    };
    if (weak) r.weak_label = Number(weak[i]);
    for (const [k, col] of opt) if (col && col[i] != null) r[k] = String(col[i]);
    rows[i] = r;
  }
  return rows;
}

/** Reads a manifest Arrow file written by {@link writeManifest}; errors name the file and the missing columns. */
export async function readManifest(file: string): Promise<Manifest> {
  const t = await readArrowFile(file);
  return { rows: manifestRows(t, file), meta: metadataOf(t) };
}

/** Counts of a manifest per set and per class (label, wnid, name). */
export interface ManifestSummary {
  total: number;
  perSet: Record<string, number>;
  perClass: { label: number; wnid: string; class_name: string; count: number; perSet: Record<string, number> }[];
}

/** Counts per set and per class, classes in label order (unlabelled last, grouped by weak label when present). */
export function summarizeManifest(rows: readonly ManifestRow[]): ManifestSummary {
  const perSet: Record<string, number> = {};
  const byClass = new Map<string, ManifestSummary['perClass'][number]>();
  for (const r of rows) {
    perSet[r.set] = (perSet[r.set] ?? 0) + 1;
    const label = r.label >= 0 ? r.label : (r.weak_label ?? -1);
    const key = `${label}\u0000${r.wnid}\u0000${r.class_name}`;
    let c = byClass.get(key);
    if (!c) byClass.set(key, (c = { label, wnid: r.wnid, class_name: r.class_name, count: 0, perSet: {} }));
    c.count++;
    c.perSet[r.set] = (c.perSet[r.set] ?? 0) + 1;
  }
  const perClass = [...byClass.values()].sort((a, b) => (a.label < 0 ? 1e9 : a.label) - (b.label < 0 ? 1e9 : b.label) || a.class_name.localeCompare(b.class_name));
  return { total: rows.length, perSet, perClass };
}

/** Plain-text rendering of {@link summarizeManifest}: one line per set, then one per class. */
export function formatSummary(s: ManifestSummary, maxClasses = Infinity): string {
  const sets = Object.keys(s.perSet).sort();
  const lines = [`${s.total} images`, ...sets.map((k) => `  set ${k}: ${s.perSet[k]}`)];
  lines.push(`${s.perClass.length} classes` + (s.perClass.length > maxClasses ? ` (first ${maxClasses} shown)` : ''));
  lines.push(['label', 'wnid', 'class', 'count', ...sets].join('\t'));
  for (const c of s.perClass.slice(0, maxClasses))
    lines.push([c.label, c.wnid || '-', c.class_name || '-', c.count, ...sets.map((k) => c.perSet[k] ?? 0)].join('\t'));
  return lines.join('\n');
}
