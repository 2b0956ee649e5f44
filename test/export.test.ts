/**
 * `dcd export` through the real CLI on a real small run (the tiny synthetic config): the
 * documented columns and row counts of picks and sets in CSV, the same rows read back from
 * Parquet by an independent reader (hyparquet), and the FiftyOne folder against FiftyOne's
 * documented FiftyOneImageClassificationDataset layout. Bad input: a missing run folder, a
 * folder without a finished report, a non-empty FiftyOne target.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { spawnAsync } from './spawn-async.js';
import { PICK_COLUMNS, SET_COLUMNS } from '../src/export/rows.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const TINY = path.join(ROOT, 'test/fixtures/pipeline/tiny.yaml');
const ENV = { ...process.env, DCD_LOG: 'quiet' };

let cwd: string;
let run: string;
const cli = (args: string[]) => spawnAsync('node', [CLI, ...args], { cwd, env: ENV, timeout: 300_000 });

/** RFC 4180 CSV → rows of strings (quoted fields with commas, quotes and line breaks). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(field), (field = '');
    else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field), rows.push(row), (row = []), (field = ''), i++;
    } else field += c;
  }
  return rows;
}

/** Counts the run's stages recorded, read from the stage manifests themselves. */
function manifestCounts(stage: string): Record<string, number>[] {
  const dir = path.join(run, stage);
  return readdirSync(dir).map((d) => (JSON.parse(readFileSync(path.join(dir, d, 'manifest.json'), 'utf8')) as { counts: Record<string, number> }).counts);
}

beforeAll(async () => {
  cwd = mkdtempSync(path.join(tmpdir(), 'dcd-export-'));
  const r = await cli(['run', TINY]);
  expect(r.status, r.stderr).toBe(0);
  run = path.join(cwd, 'runs/tiny');
}, 300_000);

describe('dcd export', () => {
  it('csv: the documented columns, one row per pick and per seed/heldout image', async () => {
    const r = await cli(['export', 'runs/tiny', '--format', 'csv']);
    expect(r.status, r.stderr).toBe(0);
    const picks = parseCsv(readFileSync(path.join(run, 'export/picks.csv'), 'utf8'));
    const sets = parseCsv(readFileSync(path.join(run, 'export/sets.csv'), 'utf8'));
    expect(picks[0]).toEqual(PICK_COLUMNS.map((c) => c.name));
    expect(sets[0]).toEqual(SET_COLUMNS.map((c) => c.name));
    const [sel] = manifestCounts('select');
    expect(picks.length - 1).toBe(sel!.debug_train! + sel!.deval!);
    const [fail] = manifestCounts('failures');
    expect(sets.length - 1).toBe(fail!.seed! + fail!.heldout!);
    const col = (rows: string[][], name: string) => rows.slice(1).map((x) => x[rows[0]!.indexOf(name)]!);
    expect(col(picks, 'selection').filter((s) => s === 'debug-train').length).toBe(sel!.debug_train);
    expect(new Set(col(picks, 'backbone'))).toEqual(new Set(['random_cnn']));
    // every pick's seed image is a seed-set image, and ranks restart at 1 per seed image
    const seedIds = new Set(col(sets, 'id').filter((_, i) => col(sets, 'set')[i] === 'seed'));
    expect(col(picks, 'seed_image_id').every((id) => seedIds.has(id))).toBe(true);
    expect(col(picks, 'rank').every((k) => Number(k) >= 1)).toBe(true);
    expect(col(picks, 'distance').every((d) => Number.isFinite(Number(d)) && Number(d) >= 0)).toBe(true);
    // the synthetic pool records true labels and contexts; the original model fails on every seed image
    expect(col(picks, 'true_label').every((t) => t !== '')).toBe(true);
    expect(col(picks, 'context').every((t) => t !== '')).toBe(true);
    // the noise rate of the debug-train picks, from the export, is the one the run's report printed
    const train = col(picks, 'selection').map((s) => s === 'debug-train');
    const truth = col(picks, 'true_label'), weak = col(picks, 'weak_label');
    const noisy = truth.filter((t, i) => train[i] && t !== weak[i]).length;
    const printed = /\| picks of dcd-random_cnn \| (\d+) \| ([\d.]+) \|/.exec(readFileSync(path.join(run, 'report.md'), 'utf8'));
    expect(Number(printed![1])).toBe(sel!.debug_train);
    expect(((100 * noisy) / sel!.debug_train!).toFixed(2)).toBe(printed![2]);
    const isSeed = col(sets, 'set').map((s) => s === 'seed');
    const pred = col(sets, 'original_pred'), label = col(sets, 'label');
    expect(pred.every((p, i) => !isSeed[i] || (p !== '' && p !== label[i]))).toBe(true);
  }, 120_000);

  it('parquet: an independent reader (hyparquet) reads the same rows and columns as the CSV', async () => {
    const r = await cli(['export', 'runs/tiny', '--format', 'parquet']);
    expect(r.status, r.stderr).toBe(0);
    for (const [name, columns] of [['picks', PICK_COLUMNS], ['sets', SET_COLUMNS]] as const) {
      const b = readFileSync(path.join(run, `export/${name}.parquet`));
      const ab = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
      const meta = parquetMetadata(ab);
      expect(meta.schema.slice(1).map((s) => s.name)).toEqual(columns.map((c) => c.name));
      const rows = (await parquetReadObjects({ file: ab })) as Record<string, unknown>[];
      const csv = parseCsv(readFileSync(path.join(run, `export/${name}.csv`), 'utf8'));
      expect(rows.length).toBe(csv.length - 1);
      rows.forEach((row, i) =>
        columns.forEach((c, j) => {
          const v = row[c.name];
          const s = csv[i + 1]![j]!;
          if (v === null || v === undefined) expect(s).toBe('');
          else if (c.type === 'float') expect(Number(v)).toBeCloseTo(Number(s), 12);
          else expect(String(v)).toBe(s);
        }),
      );
    }
  }, 120_000);

  it('fiftyone: the documented FiftyOneImageClassificationDataset layout, one image per sample', async () => {
    const r = await cli(['export', 'runs/tiny', '--format', 'fiftyone', '--out', 'fo']);
    expect(r.status, r.stderr).toBe(0);
    const dir = path.join(cwd, 'fo/fiftyone');
    const labels = JSON.parse(readFileSync(path.join(dir, 'labels.json'), 'utf8')) as { classes: string[]; labels: Record<string, { label: number | null; attributes: Record<string, unknown> }> };
    expect(labels.classes.length).toBeGreaterThan(1);
    const [sel] = manifestCounts('select');
    const [fail] = manifestCounts('failures');
    const uuids = Object.keys(labels.labels);
    expect(uuids.length).toBe(sel!.debug_train! + sel!.deval! + fail!.seed! + fail!.heldout!);
    // <dataset_dir>/data/<uuid>.<ext>: the uuid is the image's path under data/ without its extension
    const files = ['picks', 'seed', 'heldout'].flatMap((p) => readdirSync(path.join(dir, 'data', p)).map((f) => `${p}/${f.replace(/\.png$/, '')}`));
    expect(new Set(files)).toEqual(new Set(uuids));
    for (const [uuid, l] of Object.entries(labels.labels)) {
      expect(l.label === null || (Number.isInteger(l.label) && l.label >= 0 && l.label < labels.classes.length)).toBe(true);
      expect(['picks', 'seed', 'heldout']).toContain(l.attributes.role);
      if (l.attributes.role === 'picks') expect(l.label).toBe(l.attributes.weak_label);
      else expect(l.label).toBe(l.attributes.label);
      expect(uuid.startsWith(String(l.attributes.role))).toBe(true);
    }
    const meta = await sharp(path.join(dir, 'data/picks/000000.png')).metadata();
    expect([meta.width, meta.height]).toEqual([16, 16]);
  }, 120_000);

  it('bad input: a missing run folder, a folder with no finished report, a non-empty FiftyOne folder', async () => {
    const missing = await cli(['export', 'runs/nope']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/runs\/nope: no such run folder/);
    mkdirSync(path.join(cwd, 'runs/empty/data'), { recursive: true });
    const empty = await cli(['export', 'runs/empty']);
    expect(empty.status).toBe(1);
    expect(empty.stderr).toMatch(/no finished report stage/);
    mkdirSync(path.join(cwd, 'full/fiftyone'), { recursive: true });
    writeFileSync(path.join(cwd, 'full/fiftyone/keep.txt'), 'mine');
    const full = await cli(['export', 'runs/tiny', '--format', 'fiftyone', '--out', 'full']);
    expect(full.status).toBe(2);
    expect(full.stderr).toMatch(/full\/fiftyone exists and is not empty/);
    expect(existsSync(path.join(cwd, 'full/fiftyone/keep.txt'))).toBe(true);
    const bad = await cli(['export', 'runs/tiny', '--format', 'xlsx']);
    expect(bad.status).toBe(2);
  }, 120_000);
});
