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

  it('select.per_slice: each slice gets per_slice picks, split over its seeds (nearest the centre first), Random draws as many; a new per_slice reruns select, not slices', async () => {
    const perSlice = 7;
    const a = tinyConfig((c) => {
      c.slices = { enabled: true, k: 3 };
      c.select.per_slice = perSlice;
    });
    const r = await run(a.cwd, a.file);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const sl = stageDir(a.cwd, 'slices');
    const sel = stageDir(a.cwd, 'select');
    // select read the slices stage (its input), which did not read a selection
    const selManifest = JSON.parse(readFileSync(path.join(sel, 'manifest.json'), 'utf8')) as { inputs: Record<string, string> };
    expect(Object.keys(selManifest.inputs)).toContain('stage:slices');
    const slManifest = JSON.parse(readFileSync(path.join(sl, 'manifest.json'), 'utf8')) as { inputs: Record<string, string> };
    expect(Object.keys(slManifest.inputs)).not.toContain('stage:select');
    // the split rule, seed by seed: ⌊7 / size⌋ each, the remainder to the seeds nearest the centre
    const state = JSON.parse(readFileSync(path.join(sl, 'slices-state.json'), 'utf8')) as { seedIds: string[]; slices: { members: number[]; byCentre: number[] }[] };
    expect(state.slices).toHaveLength(3);
    const want = new Map<string, number>();
    for (const x of state.slices) {
      const base = Math.floor(perSlice / x.members.length);
      x.byCentre.forEach((i, t) => want.set(state.seedIds[i]!, base + (t < perSlice - base * x.members.length ? 1 : 0)));
    }
    const picks = stringColumn(await readArrowFile(path.join(sel, 'debug_train-picks.arrow')), 'seed_id', 'picks');
    const got = new Map<string, number>();
    for (const id of picks) got.set(id, (got.get(id) ?? 0) + 1);
    for (const [id, n] of want) expect(got.get(id) ?? 0, `picks of seed ${id}`).toBe(n);
    expect(picks).toHaveLength(3 * perSlice);
    const summary = JSON.parse(readFileSync(path.join(sel, 'summary.json'), 'utf8')) as { per_slice: { per_slice: number; slices: { slice: number; seeds: number; selected: number }[] } };
    expect(summary.per_slice.per_slice).toBe(perSlice);
    expect(summary.per_slice.slices.map((x) => x.selected)).toEqual([perSlice, perSlice, perSlice]);
    expect(summary.per_slice.slices.map((x) => x.seeds)).toEqual(state.slices.map((x) => x.members.length));
    // the report: picks per slice in report.md, report.json and the HTML page
    const rep = stageDir(a.cwd, 'report');
    const md = readFileSync(path.join(rep, 'report.md'), 'utf8');
    expect(md).toMatch(/^\| debug-train picks \| Slice 1 \| Slice 2 \| Slice 3 \|$/m);
    expect(md).toMatch(new RegExp(`^\\| dcd-random_cnn \\| ${perSlice} \\| ${perSlice} \\| ${perSlice} \\|$`, 'm'));
    const json = JSON.parse(readFileSync(path.join(rep, 'report.json'), 'utf8')) as { slices: { picks: { name: string; counts: number[] }[] } };
    expect(json.slices.picks).toEqual([{ name: 'dcd-random_cnn', counts: [perSlice, perSlice, perSlice] }]);
    expect(readFileSync(path.join(rep, 'html/report.html'), 'utf8')).toContain(`<tr><td>dcd-random_cnn</td><td>${perSlice}</td><td>${perSlice}</td><td>${perSlice}</td></tr>`);
    // Random draws as many images as the selection took
    const baselines = readdirSync(path.join(a.cwd, 'runs/tiny/baseline')).filter((d) => d.startsWith('random-'));
    expect(baselines).toHaveLength(1);
    const rnd = JSON.parse(readFileSync(path.join(a.cwd, 'runs/tiny/baseline', baselines[0]!, 'manifest.json'), 'utf8')) as { counts: { added: number } };
    expect(rnd.counts.added).toBe(3 * perSlice);

    // another per_slice in the same folder: select (and what follows) runs again, the slices stage is reused
    const cfg2 = YAML.parse(readFileSync(a.file, 'utf8')) as Record<string, any>;
    cfg2.select.per_slice = 4;
    writeFileSync(a.file, YAML.stringify(cfg2));
    const r2 = await run(a.cwd, a.file);
    expect(r2.status, r2.stderr.slice(-3000)).toBe(0);
    expect(readdirSync(path.join(a.cwd, 'runs/tiny/slices'))).toHaveLength(1);
    expect(readdirSync(path.join(a.cwd, 'runs/tiny/select'))).toHaveLength(2);
    const reports = readdirSync(path.join(a.cwd, 'runs/tiny/report')).map((d) => path.join(a.cwd, 'runs/tiny/report', d)).filter((d) => d !== rep);
    expect(reports).toHaveLength(1);
    expect(readFileSync(path.join(reports[0]!, 'report.md'), 'utf8')).toMatch(/^\| dcd-random_cnn \| 4 \| 4 \| 4 \|$/m);

    // a budget the slices' classes cannot serve (≈ 200 pool images of the two subset classes, 3 × 75 asked
    // besides the de-val picks): the run goes on, and the select stage names the short slices and the key
    cfg2.select.per_slice = 75;
    writeFileSync(a.file, YAML.stringify(cfg2));
    const r3 = await run(a.cwd, a.file);
    expect(r3.status, r3.stderr.slice(-3000)).toBe(0);
    expect(r3.stderr).toMatch(/select\.per_slice 75: [123] slice\(s\) got fewer debug-train picks \(slice \d \d+[^)]*\): their classes ran out of pool images; lower select\.per_slice or add pool images of those classes/);
  }, 600_000);

  it.each([
    ['more slices than seed images', (c: Record<string, any>) => (c.slices = { enabled: true, k: 81 }), /config\.slices\.k: 81 slices, but there are at most 80 debug-seed images/],
    ['clean_k larger than the pool', (c: Record<string, any>) => Object.assign(c.select, { clean: 'knn', clean_k: 240 }), /config\.select\.clean_k: 240 neighbours per pick, but the pool has 240 image\(s\)/],
    ['select.per_slice without slices', (c: Record<string, any>) => (c.select.per_slice = 10), /config\.select\.per_slice: budgets picks per failure slice, but slices\.enabled is false; set slices\.enabled: true or remove per_slice/],
    ['select.per_slice below 1', (c: Record<string, any>) => ((c.slices = { enabled: true }), (c.select.per_slice = 0)), /config\.select\.per_slice: expected a number > 0/],
    ['select.per_slice past the pool', (c: Record<string, any>) => ((c.slices = { enabled: true, k: 3 }), (c.select.per_slice = 81)), /config\.select\.per_slice: 81 debug-train picks × at least 3 slice\(s\) = 243, but the pool has 240 image\(s\); lower select\.per_slice to 80 or less/],
    ['select.per_slice with pool_share', (c: Record<string, any>) => ((c.slices = { enabled: true }), (c.select.per_slice = 5), (c.select.pool_share = 0.05)), /config\.select\.per_slice: sizes the debug-train picks per slice, but select\.pool_share \(0\.05\) sizes them per seed image too/],
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
