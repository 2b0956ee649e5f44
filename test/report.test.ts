import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { clipFit, linearFit, plotAccVsSelected, readReportInput, writeReport, type ClassResult, type ReportInput } from '../src/eval/report.js';
import { aggregate, csvTable, formatCell, meanStd, type RowResult } from '../src/eval/table.js';
import { main } from '../src/cli/main.js';

const GOLDEN = path.join(import.meta.dirname, 'fixtures', 'train', 'report');
const UPDATE = process.env.DCD_UPDATE_GOLDEN === '1';
const CHROMIUM = '/usr/bin/chromium';

const acc = (m: number, c: number, i: number) => ({ mfreq: m, compl: c, inet: i });
const cls = (pairs: [number, number][]): ClassResult[] => pairs.map(([a, s], label) => ({ label, name: `class ${label}`, acc: a, selected: s }));

/** A run as `dcd report --results` reads it (fractions). */
interface FileRun {
  method: string;
  seed: number;
  seedAcc: number;
  heldoutAcc: number;
  subset: { mfreq: number; compl: number; inet: number };
  all: { mfreq: number; compl: number; inet: number };
  perClass?: ClassResult[];
}

/** The result table's form of a run: percent per column. */
const result = (r: FileRun): RowResult => ({
  method: r.method,
  seed: r.seed,
  variant: '',
  metrics: { seed: 100 * r.seedAcc, heldout: 100 * r.heldoutAcc, mfreq_sub: 100 * r.subset.mfreq, compl_sub: 100 * r.subset.compl, test_sub: 100 * r.subset.inet, mfreq_all: 100 * r.all.mfreq, compl_all: 100 * r.all.compl, test_all: 100 * r.all.inet },
  ...(r.perClass ? { perClass: r.perClass } : {}),
});

/** Retention rows (percent; null where no image has a class). */
const RETENTION = [
  { backbone: 'dino_vits16', k: 1, classRetention: 58, contextRetention: 87.5, classQueries: 800, contextQueries: 800 },
  { backbone: 'dino_vits16', k: 5, classRetention: 48.5, contextRetention: 82.75, classQueries: 800, contextQueries: 800 },
  { backbone: 'resnet50', k: 1, classRetention: null, contextRetention: 80.25, classQueries: 0, contextQueries: 800 },
];

/** A fixed small result set: original once, the others over two seeds. */
const RUNS: FileRun[] = [
  { method: 'dcd-dino_vits16', seed: 0, seedAcc: 0.3, heldoutAcc: 0.28, subset: acc(0.52, 0.61, 0.66), all: acc(0.7, 0.77, 0.8), perClass: cls([[0.6, 40], [0.5, 10], [0.8, 25]]) },
  { method: 'original', seed: 0, seedAcc: 0, heldoutAcc: 0, subset: acc(0.5, 0.6, 0.65), all: acc(0.7, 0.76, 0.8) },
  { method: 'random', seed: 0, seedAcc: 0.2, heldoutAcc: 0.19, subset: acc(0.5, 0.6, 0.64), all: acc(0.69, 0.76, 0.79), perClass: cls([[0.5, 40], [0.45, 10], [0.7, 25]]) },
  { method: 'complete', seed: 0, seedAcc: 0.25, heldoutAcc: 0.22, subset: acc(0.45, 0.55, 0.5), all: acc(0.66, 0.7, 0.75) },
  { method: 'dcd-dino_vits16', seed: 1, seedAcc: 0.32, heldoutAcc: 0.3, subset: acc(0.54, 0.63, 0.65), all: acc(0.71, 0.77, 0.8), perClass: cls([[0.62, 40], [0.48, 10], [0.82, 25]]) },
  { method: 'random', seed: 1, seedAcc: 0.22, heldoutAcc: 0.21, subset: acc(0.52, 0.6, 0.64), all: acc(0.7, 0.75, 0.79), perClass: cls([[0.52, 40], [0.47, 10], [0.72, 25]]) },
  { method: 'complete', seed: 1, seedAcc: 0.23, heldoutAcc: 0.24, subset: acc(0.47, 0.55, 0.52), all: acc(0.66, 0.72, 0.75) },
];
const RESULTS = RUNS.map(result);

describe('report table', () => {
  it('aggregates seeds as mean ± sample std in the paper order', () => {
    const t = aggregate(RESULTS);
    expect(t.map((r) => [r.name, r.n])).toEqual([['original', 1], ['complete', 2], ['random', 2], ['dcd-dino_vits16', 2]]);
    // dcd Seed column: mean(30, 32) = 31, sample std = 2/√2
    const c = t[3]!.cells.seed!;
    expect(c.mean).toBeCloseTo(31, 12);
    expect(c.std).toBeCloseTo(2 / Math.SQRT2, 12);
    expect(formatCell(c)).toBe('31.00 ± 1.41');
    expect(formatCell(meanStd([62.89]))).toBe('62.89');
    expect(linearFit([0, 1, 2], [1, 3, 5])).toEqual({ a: 1, b: 2 });
  });

  it('shows a set the runs did not evaluate (eval.sets left it out) as "–", and leaves its CSV cells empty', () => {
    const t = aggregate(RESULTS.map((r) => ({ ...r, metrics: { ...r.metrics, heldout: null } })));
    expect(t.every((r) => formatCell(r.cells.heldout!) === '–')).toBe(true);
    expect(formatCell(t[0]!.cells.seed!)).not.toBe('–');
    expect(csvTable(t).split('\n')).toContain('"original",heldout,,,0');
  });
});

describe('writeReport', () => {
  it('matches the golden Markdown and CSV; writes plots (SVG + PNG) and an offline HTML page', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-report-'));
    const img = async (name: string, r: number, g: number, b: number) => {
      const f = path.join(dir, name);
      await sharp({ create: { width: 48, height: 40, channels: 3, background: { r, g, b } } }).png().toFile(f);
      return f;
    };
    const input: ReportInput = {
      title: 'demo',
      results: RESULTS,
      retrieval: {
        seeds: [
          {
            image: { id: 'seed/0.png', path: await img('s0.png', 200, 30, 30), label: 'class 0' },
            neighbours: {
              dino_vits16: [{ id: 'pool/1.png', path: await img('p1.png', 190, 40, 40), distance: 0.12 }, { id: 'pool/2.png', path: await img('p2.png', 180, 60, 20), distance: 0.31 }],
              resnet50: [{ id: 'pool/3.png', path: await img('p3.png', 20, 200, 30), distance: 1.5 }],
            },
          },
        ],
        wrong: [
          { method: 'dcd-dino_vits16', checked: 50, wrong: 7, images: [{ id: 'pool/9.png', path: await img('p9.png', 10, 10, 220), label: 'weak class 0 → true class 2' }] },
          { method: 'dcd-resnet50', checked: 40, wrong: 0, images: [] },
        ],
      },
      retention: { set: 'mfreq', rule: 'lenient', rows: RETENTION, plot: await img('retention.png', 250, 250, 250) },
    };
    const out = path.join(dir, 'report');
    const files = await writeReport(input, out);
    const md = readFileSync(path.join(out, files.markdown), 'utf8');
    const csv = readFileSync(path.join(out, files.csv!), 'utf8');
    if (UPDATE) {
      mkdirSync(GOLDEN, { recursive: true });
      writeFileSync(path.join(GOLDEN, 'report.md'), md);
      writeFileSync(path.join(GOLDEN, 'report.csv'), csv);
    }
    expect(md).toBe(readFileSync(path.join(GOLDEN, 'report.md'), 'utf8'));
    expect(csv).toBe(readFileSync(path.join(GOLDEN, 'report.csv'), 'utf8'));
    const json = JSON.parse(readFileSync(path.join(out, files.json), 'utf8'));
    expect(json.rows).toHaveLength(4);
    expect(json.columns).toEqual(['seed', 'heldout', 'mfreq_sub', 'compl_sub', 'test_sub', 'mfreq_all', 'compl_all', 'test_all']);
    expect(files.plots.map((f) => path.basename(f))).toEqual([
      'fig10-dcd-dino_vits16-vs-random.svg', 'fig10-dcd-dino_vits16-vs-random.png', 'fig10-acc-vs-selected.svg', 'fig10-acc-vs-selected.png', 'retention.png',
    ]);
    const svg = readFileSync(path.join(out, files.plots[0]!), 'utf8');
    expect(svg.match(/<circle /g)).toHaveLength(3);
    expect(svg).toContain('3/3 classes above y = x');
    const meta = await sharp(path.join(out, files.plots[1]!)).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 480, 400]);
    const html = readFileSync(path.join(out, files.html!), 'utf8');
    // the HTML page shows the one table: the same cells as report.md
    expect(html).toContain('<tr><td>dcd-dino_vits16</td><td>2</td><td>31.00 ± 1.41</td>');
    expect(md).toContain('| dcd-dino_vits16 | 31.00 ± 1.41 |');
    const srcs = [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);
    expect(srcs.length).toBe(2 + 1 + 3 + 1 + 1);
    for (const s of srcs) expect(existsSync(path.join(out, s)), s).toBe(true);
    expect(html).not.toContain(dir); // offline: only relative paths into images/
    // the retention section of report.md, in the HTML too: its table and its plot
    expect(md).toContain('### Backbones: class and context retention of k nearest neighbours (mfreq set, paper Fig. 7)');
    expect(html).toContain('<h2>Backbones: class and context retention of k nearest neighbours (mfreq set, paper Fig. 7)</h2>');
    expect(html).toContain('<tr><td>dino_vits16</td><td>5</td><td>48.50</td><td>82.75</td><td>800</td><td>800</td></tr>');
    expect(html).toContain('<tr><td>resnet50</td><td>1</td><td>n/a</td><td>80.25</td><td>0</td><td>800</td></tr>');
    expect(readFileSync(path.join(out, 'images/retention.png'))).toEqual(readFileSync(input.retention!.plot!));
    // wrongly labelled picks: a section per DCD row, with its counts
    expect(html).toContain('<h3>dcd-dino_vits16: 7 wrongly labelled of 50 picks (14.0%); 1 shown</h3>');
    expect(html).toContain('<h3>dcd-resnet50: 0 wrongly labelled of 40 picks (0.0%)</h3>');

    // headless Chromium: the page renders and every image loads
    if (!existsSync(CHROMIUM)) {
      console.warn(`skipping the Chromium check: ${CHROMIUM} is absent (scripts/setup.sh installs it)`);
      return;
    }
    const probe = path.join(out, 'probe.html');
    writeFileSync(
      probe,
      html.replace(
        '</body>',
        `<script>window.addEventListener('load',()=>{const i=[...document.images];document.body.setAttribute('data-images',i.length+':'+i.filter(x=>x.complete&&x.naturalWidth>0).length);});</script></body>`,
      ),
    );
    const udd = mkdtempSync(path.join(tmpdir(), 'dcd-chrome-'));
    const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', `--user-data-dir=${udd}`];
    const dom = spawnSync(CHROMIUM, [...flags, '--virtual-time-budget=5000', '--dump-dom', `file://${probe}`], { encoding: 'utf8', timeout: 60_000 });
    expect(dom.stdout).toContain('data-images="8:8"');
    const shot = path.join(out, 'screenshot.png');
    spawnSync(CHROMIUM, [...flags, '--window-size=1100,1400', `--screenshot=${shot}`, `file://${path.join(out, files.html!)}`], { encoding: 'utf8', timeout: 60_000 });
    expect(existsSync(shot)).toBe(true);
    if (process.env.DCD_KEEP_SCREENSHOT) writeFileSync(process.env.DCD_KEEP_SCREENSHOT, readFileSync(shot));
  });

  it('Figure 10 (acc vs selected): each fit spans its own x range only; a method with one x gets no fit', () => {
    // complete adds the same number of images to every class: all its points sit at x = 2000
    const complete = RUNS.filter((r) => r.method === 'complete').map((r, i) => ({ ...r, perClass: cls([[0.4 + i * 0.01, 2000], [0.5, 2000], [0.55, 2000]]) }));
    const svg = plotAccVsSelected([...RUNS.filter((r) => r.method !== 'complete'), ...complete], ['complete', 'random', 'dcd-dino_vits16']);
    const fits = new Map([...svg!.matchAll(/<line class="fit" data-method="([^"]+)" x1="([\d.]+)" y1="([\d.]+)" x2="([\d.]+)" y2="([\d.]+)"/g)].map((m) => [m[1]!, m.slice(2).map(Number)]));
    expect([...fits.keys()]).toEqual(['random', 'dcd-dino_vits16']);
    // x axis 0 .. 2000·1.05 over pixels 60 .. 460: x = 10 → 61.9, x = 40 → 67.6 (not 0 .. 2100)
    const px = (x: number) => +(60 + (x / 2100) * 400).toFixed(1);
    for (const m of ['random', 'dcd-dino_vits16']) {
      expect(fits.get(m)![0]).toBeCloseTo(px(10), 5);
      expect(fits.get(m)![2]).toBeCloseTo(px(40), 5);
    }
    expect(svg).toContain('complete (one x: no fit)');
    // a fit leaving [0, 1] is cut where it leaves: y = −0.5 + 0.01·x over [0, 200] → [50, 150]
    expect(clipFit(-0.5, 0.01, 0, 200)).toEqual({ x0: 50, y0: 0, x1: 150, y1: 1 });
    expect(clipFit(0.3, 0, 0, 200)).toEqual({ x0: 0, y0: 0.3, x1: 200, y1: 0.3 });
    expect(clipFit(1.5, 0, 0, 200)).toBeUndefined();
  });

  it('the HTML report leaves out the retention section without retention rows, and names a missing plot', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-report-ret-'));
    const read = (out: string, f: string | undefined) => readFileSync(path.join(out, f!), 'utf8');
    // one seed per method: no paired table
    const one = RESULTS.filter((r) => r.seed === 0);
    const a = path.join(dir, 'a');
    const files = await writeReport({ results: one }, a);
    expect(read(a, files.html)).not.toContain('retention');
    expect(read(a, files.html)).not.toContain('Paired differences');
    expect(read(a, files.markdown)).not.toContain('Paired differences');
    // two seeds: the paired table under the accuracy table in both the page and report.md (heldout 28 − 19 and 30 − 21 points)
    const p = path.join(dir, 'p');
    const pf = await writeReport({ results: RESULTS }, p);
    expect(read(p, pf.html)).toContain('<tr><td>dcd-dino_vits16 − random</td><td>+10.00 ± 0.00 (t –; 2/2 &gt; 0)</td><td>+9.00 ± 0.00 (t –; 2/2 &gt; 0)</td>');
    expect(read(p, pf.markdown)).toContain('| dcd-dino_vits16 − random | +10.00 ± 0.00 (t –; 2/2 > 0) | +9.00 ± 0.00 (t –; 2/2 > 0) |');
    // what the seeds vary (world_seed), under the caption of both; absent without it
    const note = "One world for every seed (world_seed 0): the seeds vary only the Random draw and the methods' training.";
    const w = path.join(dir, 'w');
    const wf = await writeReport({ results: RESULTS, seedNote: note }, w);
    expect(read(w, wf.markdown)).toContain(`mean ± std over 2 seeds. Seed/Heldout: images the original model gets wrong; (sub): classes of the debug subset; (all): all classes. ${note}`);
    expect(read(w, wf.html)).toContain('(world_seed 0): the seeds vary only the Random draw and the methods\' training.</p>');
    expect(read(p, pf.markdown)).not.toContain('world_seed');
    // formats: report.md and report.json always, the CSV and the page only when asked for
    const m = path.join(dir, 'm');
    const mf = await writeReport({ results: RESULTS }, m, { formats: ['md'] });
    expect([mf.csv, mf.html, existsSync(path.join(m, 'report.csv')), existsSync(path.join(m, 'report.html'))]).toEqual([undefined, undefined, false, false]);
    expect(existsSync(path.join(m, 'report.json'))).toBe(true);
    const missing = path.join(dir, 'nope.png');
    await expect(writeReport({ results: RESULTS, retention: { rows: RETENTION, plot: missing } }, path.join(dir, 'b'))).rejects.toThrow(/cannot copy the retention plot .*nope\.png/);
    await expect(writeReport({ results: [] }, path.join(dir, 'e'))).rejects.toThrow(/report: no results given/);
  });

  it('report.md: the run sections (selection quality, retention, pretraining) after the tables, in that order', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-report-sec-'));
    const f = await writeReport(
      {
        title: 't',
        results: RESULTS.filter((r) => r.seed === 0),
        quality: { scope: 'seed 0', rows: [{ name: 'dcd-a', picks: 10, withTruth: 10, noise: 20, withContext: 0, sameContext: null }] },
        retention: { set: 'mfreq', rule: 'lenient', rows: RETENTION.slice(0, 1), plotRef: 'retention/x/retention.png' },
        pretraining: { rows: [{ backbone: 'b', method: 'dino', data: 'pool', images: 40, steps: 8, lossFirst: 2.5, lossLast: null, teacherEntropy: 1.25, resumedFrom: 0 }], plots: ['backbone/b/loss.png'] },
      },
      dir,
      { formats: ['md'] },
    );
    const md = readFileSync(path.join(dir, f.markdown), 'utf8');
    const heads = [...md.matchAll(/^#+ .*$/gm)].map((m) => m[0]);
    expect(heads).toEqual([
      '## t',
      "### Selections: noise rate and context of the debug-train picks (seed 0; from the pool's true_label and context)",
      '### Backbones: class and context retention of k nearest neighbours (mfreq set, paper Fig. 7)',
      '### Self-supervised pretraining of the ssl backbones (loss per step: loss.jsonl beside each plot)',
    ]);
    expect(md).toContain('| dino_vits16 | 1 | 58.00 | 87.50 | 800 | 800 |\n\nPlot: `retention/x/retention.png` (in the run folder).\n');
    expect(md).toContain('| b | dino | pool | 40 | 8 | 2.500 | NaN | 1.250 | 0 |\n\nLoss curves: `backbone/b/loss.png` (in the run folder).\n');
    expect(md.endsWith('(in the run folder).\n')).toBe(true);
  });

  it('dcd report validates its input and prints the table', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-report-cli-'));
    const good = path.join(dir, 'results.json');
    writeFileSync(good, JSON.stringify({ runs: RUNS.slice(0, 3) }));
    expect(await main(['report', '--results', good, '--out', path.join(dir, 'r')])).toBe(0);
    // percent, as `dcd run` writes it: 0.3 → 30.00
    expect(readFileSync(path.join(dir, 'r', 'report.md'), 'utf8')).toContain('| dcd-dino_vits16 | 30.00 | 28.00 |');
    expect(existsSync(path.join(dir, 'r', 'report.md'))).toBe(true);
    expect(readFileSync(path.join(dir, 'r', 'report.md'), 'utf8')).not.toContain('Paired differences'); // one seed
    // two seeds: the paired table, as `dcd run` writes it (heldout 28 − 19 and 30 − 21 points)
    writeFileSync(good, JSON.stringify({ runs: RUNS }));
    expect(await main(['report', '--results', good, '--out', path.join(dir, 'r3')])).toBe(0);
    expect(readFileSync(path.join(dir, 'r3', 'report.md'), 'utf8')).toMatch(/\| dcd-dino_vits16 − random \| \+10\.00 ± 0\.00 \(t –; 2\/2 > 0\) \| \+9\.00 ± 0\.00 \(t –; 2\/2 > 0\) \| \+1\.00 ± 0\.00 \(t –; 2\/2 > 0\) \|/);
    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ runs: [{ method: 'x', seedAcc: '0.3' }] }));
    await expect(readReportInput(bad)).rejects.toThrow(/bad\.json: not a valid report input:\n {2}runs\.0\.seedAcc/);
    expect(await main(['report', '--results', bad, '--out', path.join(dir, 'r2')])).toBe(2);
  });
});
