import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { clipFit, formatCell, linearFit, meanStd, plotAccVsSelected, readReportInput, reportTable, writeReport, type MethodRun, type ReportInput } from '../src/eval/report.js';
import { main } from '../src/cli/main.js';

const GOLDEN = path.join(import.meta.dirname, 'fixtures', 'train', 'report');
const UPDATE = process.env.DCD_UPDATE_GOLDEN === '1';
const CHROMIUM = '/usr/bin/chromium';

const acc = (m: number, c: number, i: number) => ({ mfreq: m, compl: c, inet: i });
const cls = (pairs: [number, number][]) => pairs.map(([a, s], label) => ({ label, name: `class ${label}`, acc: a, selected: s }));

/** Retention rows (percent; null where no image has a class). */
const RETENTION = [
  { backbone: 'dino_vits16', k: 1, classRetention: 58, contextRetention: 87.5, classQueries: 800, contextQueries: 800 },
  { backbone: 'dino_vits16', k: 5, classRetention: 48.5, contextRetention: 82.75, classQueries: 800, contextQueries: 800 },
  { backbone: 'resnet50', k: 1, classRetention: null, contextRetention: 80.25, classQueries: 0, contextQueries: 800 },
];

/** A fixed small result set: original once, the others over two seeds. */
const RUNS: MethodRun[] = [
  { method: 'dcd-dino_vits16', seed: 0, seedAcc: 0.3, heldoutAcc: 0.28, subset: acc(0.52, 0.61, 0.66), all: acc(0.7, 0.77, 0.8), perClass: cls([[0.6, 40], [0.5, 10], [0.8, 25]]) },
  { method: 'original', seed: 0, seedAcc: 0, heldoutAcc: 0, subset: acc(0.5, 0.6, 0.65), all: acc(0.7, 0.76, 0.8) },
  { method: 'random', seed: 0, seedAcc: 0.2, heldoutAcc: 0.19, subset: acc(0.5, 0.6, 0.64), all: acc(0.69, 0.76, 0.79), perClass: cls([[0.5, 40], [0.45, 10], [0.7, 25]]) },
  { method: 'complete', seed: 0, seedAcc: 0.25, heldoutAcc: 0.22, subset: acc(0.45, 0.55, 0.5), all: acc(0.66, 0.7, 0.75) },
  { method: 'dcd-dino_vits16', seed: 1, seedAcc: 0.32, heldoutAcc: 0.3, subset: acc(0.54, 0.63, 0.65), all: acc(0.71, 0.77, 0.8), perClass: cls([[0.62, 40], [0.48, 10], [0.82, 25]]) },
  { method: 'random', seed: 1, seedAcc: 0.22, heldoutAcc: 0.21, subset: acc(0.52, 0.6, 0.64), all: acc(0.7, 0.75, 0.79), perClass: cls([[0.52, 40], [0.47, 10], [0.72, 25]]) },
  { method: 'complete', seed: 1, seedAcc: 0.23, heldoutAcc: 0.24, subset: acc(0.47, 0.55, 0.52), all: acc(0.66, 0.72, 0.75) },
];

describe('report table', () => {
  it('aggregates seeds as mean ± sample std in the paper order', () => {
    const t = reportTable(RUNS);
    expect(t.rows.map((r) => [r.method, r.n])).toEqual([['original', 1], ['complete', 2], ['random', 2], ['dcd-dino_vits16', 2]]);
    // dcd Seed column: mean(0.30, 0.32) = 0.31, sample std = 0.02/√2
    const c = t.rows[3]!.cells[0]!;
    expect(c.mean).toBeCloseTo(0.31, 12);
    expect(c.std).toBeCloseTo(0.02 / Math.SQRT2, 12);
    expect(formatCell(c)).toBe('31.00 ± 1.41');
    expect(formatCell(meanStd([0.6289]))).toBe('62.89');
    expect(linearFit([0, 1, 2], [1, 3, 5])).toEqual({ a: 1, b: 2 });
    expect(() => reportTable([{ ...RUNS[0]!, seedAcc: 30 }])).toThrow(/accuracy 30; expected fractions/);
    expect(() => reportTable([{ ...RUNS[0]!, seedAcc: Infinity }])).toThrow(/accuracy Infinity; expected fractions/);
  });

  it('shows a set the runs did not evaluate (NaN: eval.sets left it out) as "–", and leaves its CSV cells empty', async () => {
    const { tableCsv } = await import('../src/eval/report.js');
    const t = reportTable(RUNS.map((r) => ({ ...r, heldoutAcc: NaN })));
    expect(t.rows.every((r) => formatCell(r.cells[1]!) === '–')).toBe(true);
    expect(formatCell(t.rows[0]!.cells[0]!)).not.toBe('–');
    expect(tableCsv(t).split('\n')[1]).toMatch(/^original,1,[0-9.]+,[0-9.]+,,,/);
  });
});

describe('writeReport', () => {
  it('matches the golden Markdown, CSV and terminal table; writes plots (SVG + PNG) and an offline HTML page', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-report-'));
    const img = async (name: string, r: number, g: number, b: number) => {
      const f = path.join(dir, name);
      await sharp({ create: { width: 48, height: 40, channels: 3, background: { r, g, b } } }).png().toFile(f);
      return f;
    };
    const input: ReportInput = {
      title: 'demo',
      runs: RUNS,
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
    const md = readFileSync(files.markdown, 'utf8');
    const csv = readFileSync(files.csv, 'utf8');
    if (UPDATE) {
      mkdirSync(GOLDEN, { recursive: true });
      writeFileSync(path.join(GOLDEN, 'report.md'), md);
      writeFileSync(path.join(GOLDEN, 'report.csv'), csv);
      writeFileSync(path.join(GOLDEN, 'report.txt'), files.text);
    }
    expect(md).toBe(readFileSync(path.join(GOLDEN, 'report.md'), 'utf8'));
    expect(csv).toBe(readFileSync(path.join(GOLDEN, 'report.csv'), 'utf8'));
    expect(files.text).toBe(readFileSync(path.join(GOLDEN, 'report.txt'), 'utf8'));
    const json = JSON.parse(readFileSync(files.json, 'utf8'));
    expect(json.rows).toHaveLength(4);
    expect(files.plots.map((f) => path.basename(f))).toEqual([
      'fig10-dcd-dino_vits16-vs-random.svg', 'fig10-dcd-dino_vits16-vs-random.png', 'fig10-acc-vs-selected.svg', 'fig10-acc-vs-selected.png', 'retention.png',
    ]);
    const svg = readFileSync(files.plots[0]!, 'utf8');
    expect(svg.match(/<circle /g)).toHaveLength(3);
    expect(svg).toContain('3/3 classes above y = x');
    const meta = await sharp(files.plots[1]!).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 480, 400]);
    const html = readFileSync(files.html, 'utf8');
    const srcs = [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);
    expect(srcs.length).toBe(2 + 1 + 3 + 1 + 1);
    for (const s of srcs) expect(existsSync(path.join(out, s)), s).toBe(true);
    expect(html).not.toContain(dir); // offline: only relative paths into images/
    // the retention section of report.md, in the HTML too: its table and its plot
    expect(md).toContain('## Backbones: class and context retention of k nearest neighbours (mfreq set, paper Fig. 7)');
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
    spawnSync(CHROMIUM, [...flags, '--window-size=1100,1400', `--screenshot=${shot}`, `file://${files.html}`], { encoding: 'utf8', timeout: 60_000 });
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
    const files = await writeReport({ runs: RUNS }, path.join(dir, 'a'));
    expect(readFileSync(files.html, 'utf8')).not.toContain('retention');
    expect(readFileSync(files.html, 'utf8')).not.toContain('Paired differences');
    // the paired table, when given, goes under the accuracy table in both the page and report.md
    const paired = { columns: ['Seed', 'Heldout'], rows: [{ name: 'dcd-a − random', cells: ['+5.67 ± 1.15 (t 8.5; 3/3 > 0)', '–'] }], note: 'Paired per seed.' };
    const pf = await writeReport({ runs: RUNS, paired }, path.join(dir, 'p'));
    expect(readFileSync(pf.html, 'utf8')).toContain('<tr><td>dcd-a − random</td><td>+5.67 ± 1.15 (t 8.5; 3/3 &gt; 0)</td><td>–</td></tr>');
    expect(readFileSync(pf.markdown, 'utf8')).toContain('| dcd-a − random | +5.67 ± 1.15 (t 8.5; 3/3 > 0) | – |');
    // what the seeds vary (world_seed), under the caption of both; absent without it
    const note = "One world for every seed (world_seed 0): the seeds vary only the Random draw and the methods' training.";
    const wf = await writeReport({ runs: RUNS, seedNote: note }, path.join(dir, 'w'));
    expect(readFileSync(wf.markdown, 'utf8')).toContain(`mean ± std over n seeds. ${note}`);
    expect(readFileSync(wf.html, 'utf8')).toContain('(world_seed 0): the seeds vary only the Random draw and the methods\' training.</p>');
    expect(readFileSync(pf.markdown, 'utf8')).not.toContain('world_seed');
    const missing = path.join(dir, 'nope.png');
    await expect(writeReport({ runs: RUNS, retention: { rows: RETENTION, plot: missing } }, path.join(dir, 'b'))).rejects.toThrow(/cannot copy the retention plot .*nope\.png/);
  });

  it('dcd report validates its input and prints the table', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-report-cli-'));
    const good = path.join(dir, 'results.json');
    writeFileSync(good, JSON.stringify({ runs: RUNS.slice(0, 3) }));
    expect(await main(['report', '--results', good, '--out', path.join(dir, 'r')])).toBe(0);
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
