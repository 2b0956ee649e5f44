/**
 * Finding a folder dataset's parts by their names (`dcd init`): set folders named by their
 * role (`train`, `test`, `mfreq`, `complement`), and beside them `pool.csv` (or .tsv, .jsonl,
 * .ndjson, .arrow), `classes.txt`, `subset.txt`, `contexts.csv`; then what is in them.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { DataError } from '../core/errors.js';
import { checkManifestImages } from './build.js';
import { FOLDER_ROLES, readFolderDataset, readSubsetNames, checkSubsetInPool, type FolderDataset, type FolderRole, type FolderSpec } from './folders.js';

/** Pool list names looked for, in this order. */
export const POOL_LIST_NAMES = ['pool.csv', 'pool.tsv', 'pool.jsonl', 'pool.ndjson', 'pool.arrow'];

/** What {@link detectFolderLayout} found in a folder. */
export interface FolderLayout {
  dir: string;
  spec: FolderSpec;
  /** subset.txt, when present. */
  subset?: string;
  /** Folders that are not a role (nor the pool's images): the user may mean one of them. */
  others: string[];
}

/**
 * Detects the parts of a folder dataset in `dir`. `given` overrides a part (paths relative
 * to `dir` or absolute). A missing part is an error that lists the folders found and the
 * option or config key that names it.
 */
export function detectFolderLayout(dir: string, given: Partial<Record<FolderRole | 'pool', string>> = {}): FolderLayout {
  const root = path.resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new DataError(`${root}: not a folder; give the folder that holds train/, test/, mfreq/, complement/ and pool.csv`);
  const entries = readdirSync(root, { withFileTypes: true }).filter((e) => !e.name.startsWith('.'));
  const folders = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  const file = (name: string) => (entries.some((e) => e.isFile() && e.name === name) ? path.join(root, name) : undefined);
  const at = (p: string | undefined) => (p === undefined ? undefined : path.resolve(root, p));
  const spec: Partial<FolderSpec> = {};
  const missing: string[] = [];
  for (const role of FOLDER_ROLES) {
    const p = at(given[role]) ?? (folders.includes(role) ? path.join(root, role) : undefined);
    if (p) spec[role] = p;
    else missing.push(role);
  }
  const pool = at(given.pool) ?? POOL_LIST_NAMES.map(file).find((f) => f !== undefined);
  if (pool) spec.pool = pool;
  else missing.push('pool');
  const used = new Set(Object.values(spec).map((p) => path.relative(root, p!).split(path.sep)[0]));
  // folders holding pool images are the pool's, not unknown sets
  const others = folders.filter((f) => !used.has(f) && f !== 'pool' && !(FOLDER_ROLES as readonly string[]).includes(f));
  if (missing.length) {
    const hint = missing.map((m) => (m === 'pool' ? `--pool LIST (data.folders.pool: a ${POOL_LIST_NAMES.join(' / ')} with path,weak_label)` : `--${m} FOLDER (data.folders.${m})`)).join(', ');
    throw new DataError(
      `${root}: no ${missing.join(', ')} found; name the set folders by their role (train, test, mfreq, complement) and put pool.csv beside them, or give ${hint}` +
        (others.length ? `; other folders here: ${others.join(', ')}` : ''),
    );
  }
  const classes = file('classes.txt');
  const contexts = file('contexts.csv');
  const subset = file('subset.txt');
  return { dir: root, spec: { ...(spec as FolderSpec), ...(classes ? { classes } : {}), ...(contexts ? { contexts } : {}) }, ...(subset ? { subset } : {}), others };
}

/** What `dcd init` reports about a folder dataset. */
export interface FolderInspection {
  data: FolderDataset;
  /** Images per set (train, test, mfreq, complement, pool) that decode. */
  counts: Record<string, number>;
  /** Per class: images in each set. */
  perClass: { name: string; train: number; test: number; mfreq: number; complement: number; pool: number }[];
  unreadable: { set: string; id: string; path: string; reason: string }[];
  /** Median shorter side of a sample of images. */
  medianSide: number;
  /** Subset classes (indices), from subset.txt or the pool's weak labels. */
  subset: number[];
}

/** Reads and decodes every image once (small) to count what is usable; errors as the run would give them. */
export async function inspectFolderDataset(layout: FolderLayout, opts: { concurrency?: number; onTotal?: (n: number) => void; onProgress?: (n: number) => void } = {}): Promise<FolderInspection> {
  const data = await readFolderDataset(layout.spec);
  const all = [...FOLDER_ROLES.flatMap((r) => data.sets[r]), ...data.pool];
  opts.onTotal?.(all.length);
  const check = await checkManifestImages(all, { concurrency: opts.concurrency ?? 2, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
  const bad = new Set(check.bad.map((b) => b.row));
  const counts: Record<string, number> = {};
  const perClass = data.classes.map((name) => ({ name, train: 0, test: 0, mfreq: 0, complement: 0, pool: 0 }));
  for (const r of all) {
    if (bad.has(r)) continue;
    counts[r.set] = (counts[r.set] ?? 0) + 1;
    const y = r.set === 'pool' ? r.weak_label! : r.label;
    perClass[y]![r.set as FolderRole | 'pool']++;
  }
  for (const s of [...FOLDER_ROLES, 'pool'])
    if (!counts[s]) throw new DataError(`${s === 'pool' ? layout.spec.pool : layout.spec[s as FolderRole]}: none of its images could be read (e.g. ${check.bad.find((b) => b.row.set === s)?.reason}); check the files`);
  const subset = layout.subset
    ? readSubsetNames(layout.subset, data.classes, 'subset.txt')
    : [...new Set(data.pool.map((r) => r.weak_label!))].sort((a, b) => a - b);
  checkSubsetInPool(subset, check.good.filter((r) => r.set === 'pool'), data.classes, layout.subset ?? layout.spec.pool);
  // image size from a spread sample of readable images
  const good = check.good.filter((r) => r.path);
  const step = Math.max(1, Math.floor(good.length / 64));
  const sides: number[] = [];
  for (let i = 0; i < good.length; i += step) {
    const m = await sharp(good[i]!.path).metadata();
    if (m.width && m.height) sides.push(Math.min(m.width, m.height));
  }
  sides.sort((a, b) => a - b);
  return {
    data,
    counts,
    perClass,
    unreadable: check.bad.map((b) => ({ set: b.row.set, id: b.row.id, path: b.row.path || b.row.url || '', reason: b.reason })),
    medianSide: sides[Math.floor(sides.length / 2)] ?? 32,
    subset,
  };
}
