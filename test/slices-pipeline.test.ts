/**
 * Slices and select.clean through `dcd run` on the tiny synthetic config: the per-slice table in
 * every report format, the slice gallery and map in the HTML page, noise before/after cleaning,
 * determinism by seed, and bad configs refused before any stage folder exists.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { spawnAsync } from './spawn-async.js';
import { readArrowFile, stringColumn } from '../src/core/arrow.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');

/** The tiny config with `edit` applied, written into a fresh folder; returns that folder and the file. */
function tinyConfig(edit: (c: Record<string, any>) => void): { cwd: string; file: string } {
  const cwd = mkdtempSync(path.join(tmpdir(), 'dcd-slices-'));
  const cfg = YAML.parse(readFileSync(path.join(ROOT, 'test/fixtures/pipeline/tiny.yaml'), 'utf8')) as Record<string, any>;
  edit(cfg);
  const file = path.join(cwd, 'tiny.yaml');
  writeFileSync(file, YAML.stringify(cfg));
  return { cwd, file };
}

const run = (cwd: string, file: string) => spawnAsync('node', [CLI, 'run', file], { cwd, env: { ...process.env, DCD_BACKEND: 'wasm' }, timeout: 600_000 });
/** The single folder of `stage` in a run (`runs/tiny/<stage>/<label>-<hash>`). */
const stageDir = (cwd: string, stage: string) => {
  const d = path.join(cwd, 'runs/tiny', stage);
  const all = readdirSync(d);
  expect(all).toHaveLength(1);
  return path.join(d, all[0]!);
};

describe('slices and select.clean through dcd run (tiny)', () => {
  it('writes the per-slice table, gallery and map, records noise before/after cleaning, and repeats by seed', async () => {
    const edit = (c: Record<string, any>) => {
      c.slices = { enabled: true, k: 3 };
      c.select.clean = 'knn';
    };
    const a = tinyConfig(edit);
    const r = await run(a.cwd, a.file);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const rep = stageDir(a.cwd, 'report');
    const md = readFileSync(path.join(rep, 'report.md'), 'utf8');
    // the per-slice table: a header with three slices and one row per method
    expect(md).toMatch(/## Heldout accuracy per failure slice \(seed 0's world, backbone random_cnn\)/);
    expect(md).toMatch(/^\| method \| Slice 1 \(n=\d+\) \| Slice 2 \(n=\d+\) \| Slice 3 \(n=\d+\) \|$/m);
    for (const m of ['original', 'complete', 'random', 'dcd-random_cnn']) expect(md).toMatch(new RegExp(`^\\| ${m} \\| (\\d+\\.\\d\\d|–) \\| (\\d+\\.\\d\\d|–) \\| (\\d+\\.\\d\\d|–) \\|$`, 'm'));
    // the heldout images in the slices are the heldout set
    const sl = stageDir(a.cwd, 'slices');
    const sm = JSON.parse(readFileSync(path.join(sl, 'manifest.json'), 'utf8')) as { counts: Record<string, number> };
    const fm = JSON.parse(readFileSync(path.join(stageDir(a.cwd, 'failures'), 'manifest.json'), 'utf8')) as { counts: Record<string, number> };
    expect(sm.counts.slices).toBe(3);
    expect(sm.counts.heldout).toBe(fm.counts.heldout);
    expect(sm.counts.seed).toBe(fm.counts.seed);
    const ns = [...md.matchAll(/Slice \d \(n=(\d+)\)/g)].map((x) => Number(x[1]));
    expect(ns.reduce((s, n) => s + n, 0)).toBe(fm.counts.heldout);
    // csv and json carry the same rows
    const csv = readFileSync(path.join(rep, 'report.csv'), 'utf8');
    expect(csv.split('\n').filter((l) => /,slice_\d,/.test(l))).toHaveLength(4 * 3);
    const json = JSON.parse(readFileSync(path.join(rep, 'report.json'), 'utf8')) as { slices: { columns: { key: string }[]; rows: { name: string }[] } };
    expect(json.slices.columns.map((c) => c.key)).toEqual(['slice_1', 'slice_2', 'slice_3']);
    expect(json.slices.rows.map((x) => x.name)).toEqual(['original', 'complete', 'random', 'dcd-random_cnn']);
    // the HTML page: the table, the gallery with thumbnails, the map
    const html = readFileSync(path.join(rep, 'html/report.html'), 'utf8');
    expect(html).toContain('<h2>Heldout accuracy per failure slice');
    expect(html).toContain('<section class="dcd-slices">');
    expect((html.match(/<h3>Slice \d: \d+ seed image/g) ?? []).length).toBe(3);
    expect(html).toMatch(/<h2>Map of the selection<\/h2>[\s\S]*<svg/);
    // select.clean: noise before and after in the selection table, the dropped picks in the wrong-label gallery
    expect(md).toMatch(/^\| picks of dcd-random_cnn before select\.clean \| \d+ \| \d+\.\d\d \| /m);
    expect(md).toMatch(/^\| picks of dcd-random_cnn after select\.clean \| \d+ \| \d+\.\d\d \| /m);
    const sel = stageDir(a.cwd, 'select');
    const clean = JSON.parse(readFileSync(path.join(sel, 'clean.json'), 'utf8')) as { rounds: number; dropped: { train: number; deval: number }; picks: { train: number; train_before: number } };
    const dropped = stringColumn(await readArrowFile(path.join(sel, 'dropped.arrow')), 'id', 'dropped.arrow');
    expect(clean.dropped.train + clean.dropped.deval).toBe(dropped.length);
    expect(dropped.length).toBeGreaterThan(0);
    expect(clean.rounds).toBeGreaterThan(1);
    // refilled: dropped picks are not in the final selection
    const picks = new Set(stringColumn(await readArrowFile(path.join(sel, 'debug_train-picks.arrow')), 'id', 'picks'));
    for (const id of dropped) expect(picks.has(id)).toBe(false);
    expect(html).toContain('dcd-random_cnn: picks dropped by select.clean');

    // determinism: the same config in a fresh folder gives the same slices and the same cleaned picks
    const b = tinyConfig(edit);
    const r2 = await run(b.cwd, b.file);
    expect(r2.status, r2.stderr.slice(-3000)).toBe(0);
    expect(readFileSync(path.join(stageDir(b.cwd, 'slices'), 'slices.csv'), 'utf8')).toBe(readFileSync(path.join(sl, 'slices.csv'), 'utf8'));
    expect(readFileSync(path.join(stageDir(b.cwd, 'select'), 'dropped.csv'), 'utf8')).toBe(readFileSync(path.join(sel, 'dropped.csv'), 'utf8'));
    expect(readFileSync(path.join(stageDir(b.cwd, 'report'), 'report.md'), 'utf8')).toBe(md);
  }, 600_000);

  it.each([
    ['more slices than seed images', (c: Record<string, any>) => (c.slices = { enabled: true, k: 81 }), /config\.slices\.k: 81 slices, but there are at most 80 debug-seed images/],
    ['clean_k larger than the pool', (c: Record<string, any>) => Object.assign(c.select, { clean: 'knn', clean_k: 240 }), /config\.select\.clean_k: 240 neighbours per pick, but the pool has 240 image\(s\)/],
    ['select.per_slice', (c: Record<string, any>) => ((c.slices = { enabled: true }), (c.select.per_slice = 10)), /config\.select\.per_slice: a budget per failure slice is not available in the pipeline yet/],
    ['slices without heldout evaluated', (c: Record<string, any>) => ((c.slices = { enabled: true }), (c.eval.sets = ['seed', 'test'])), /config\.slices\.enabled: per-slice accuracy is read on the debug-heldout set/],
  ])('refuses %s before any stage folder exists', async (_name, edit, msg) => {
    const { cwd, file } = tinyConfig(edit);
    const r = await run(cwd, file);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(msg);
    expect(existsSync(path.join(cwd, 'runs/tiny/data'))).toBe(false);
    expect(existsSync(path.join(cwd, 'runs/tiny')) ? readdirSync(path.join(cwd, 'runs/tiny')).filter((d) => !d.endsWith('.yaml') && !d.endsWith('.log')) : []).toEqual([]);
  }, 120_000);
});
