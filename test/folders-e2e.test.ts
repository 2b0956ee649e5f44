/**
 * A folder dataset as a user brings it, through the real CLI: written by a script that is
 * not dcd's code (scripts/make-folder-dataset.mjs, sharp only), then `dcd init` and
 * `dcd run configs/folders-demo.yaml`; and `dcd init` on nested folders of mixed formats.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { loadConfig } from '../src/core/config.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const ENV = { ...process.env, DCD_LOG: 'info' };

/** Runs the CLI without blocking the test worker (a blocked worker misses vitest's RPC on a busy machine). */
function cli(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('node', [CLI, ...args], { cwd, env: ENV });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let work: string;
let data: string;

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npx tsc -p tsconfig.json first`);
  work = mkdtempSync(path.join(tmpdir(), 'dcd-folders-e2e-'));
  data = path.join(work, 'data');
  const g = spawnSync('node', [path.join(ROOT, 'scripts/make-folder-dataset.mjs'), data, '--train', '240', '--test', '120', '--shifted', '96', '--pool', '480', '--size', '16'], { encoding: 'utf8' });
  expect(g.status, g.stderr).toBe(0);
  // one pool image that is not an image: skipped and listed, the run goes on
  writeFileSync(path.join(data, 'pool/disc/broken.png'), 'not a png');
  appendFileSync(path.join(data, 'pool.csv'), 'pool/disc/broken.png,disc,disc,snow\n');
}, 120_000);

describe('folder dataset through the CLI', () => {
  it('dcd init prints classes, counts per set, the pool and the unreadable image, and writes a config that plans', async () => {
    const r = await cli(['init', data, '--out', path.join(work, 'init.yaml')], work);
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(r.stdout).toMatch(/6 classes \(order of classes\.txt\)/);
    expect(r.stdout).toMatch(/^ {2}disc \* +40 +20 +16 +16 +120$/m);
    expect(r.stdout).toMatch(/^ {2}ring +40 +20 +16 +16 +0$/m);
    expect(r.stdout).toMatch(/^ {2}total +240 +120 +96 +96 +480$/m);
    // listed: 481; readable: 480 (the counts above)
    expect(r.stdout).toMatch(/pool: 481 images, 481 with true_label, 481 with context/);
    expect(r.stdout).toMatch(/1 image\(s\) could not be read[^\n]*\n {2}pool\t.*broken\.png\t/);
    const cfg = loadConfig(path.join(work, 'init.yaml'));
    expect(cfg.data.kind).toBe('folders');
    expect(cfg.data.image_size).toBe(16);
    expect(cfg.data.folders!.pool).toBe(path.join(data, 'pool.csv'));
    expect(cfg.failures.subset).toBe(path.join(data, 'subset.txt'));
    // three seeds in one world, the selection sized by the run (5% of the pool), an ssl backbone on the pool
    expect(cfg.world_seed).toBe(0);
    expect(cfg.seeds).toEqual([0, 1, 2]);
    expect(cfg.select.pool_share).toBe(0.05);
    expect(cfg.backbones.find((b) => b.weights === 'ssl')?.pretrain).toMatchObject({ method: 'simclr', data: 'pool' });
    expect(r.stdout).toMatch(/k_train sized by the run to 0\.05 of the pool, ssl backbone \d+ steps, seeds 0,1,2 in world 0/);
    // 16 MFreq images per subset class against 120 pool images: no warning
    expect(r.stdout).not.toMatch(/warning:/);
    const plan = await cli(['run', path.join(work, 'init.yaml'), '--dry-run'], work);
    expect(plan.code, plan.stderr.slice(-2000)).toBe(0);
    expect(plan.stdout + plan.stderr).toMatch(/data\/folders/);
    // a second init does not overwrite without --force
    const again = await cli(['init', data, '--out', path.join(work, 'init.yaml')], work);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/init\.yaml exists; pass --force/);
  }, 300_000);

  it('dcd run configs/folders-demo.yaml: the paper table, retention by context, noise rates, and the wrong-pick gallery', async () => {
    const r = await cli(['run', path.join(ROOT, 'configs/folders-demo.yaml'), '--set', `vars.data=${data}`, '--set', 'seeds=[0]', '--set', 'train.epochs=4', '--set', 'data.image_size=16'], work);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expect(r.stdout).toMatch(/\| method \| Seed \| Heldout \| MFreq \(sub\) \| Compl\. \(sub\) \| INet \(sub\) \| MFreq \(all\) \| Compl\. \(all\) \| INet \(all\) \|/);
    for (const row of ['original', 'complete', 'random', 'dcd-broad_cnn', 'dcd-random_cnn']) expect(r.stdout).toMatch(new RegExp(`^\\| ${row} \\|( \\d+\\.\\d\\d \\|){8}$`, 'm'));
    // retention by context from contexts.csv (paper Fig. 7), all 96 mfreq images annotated
    expect(r.stdout).toMatch(/^\| broad_cnn \| 1 \| \d+\.\d\d \| \d+\.\d\d \| 96 \| 96 \|$/m);
    // noise rate and context share of the picks, from the pool's true_label and context
    expect(r.stdout).toMatch(/^\| picks of dcd-random_cnn \| \d+ \| \d+\.\d\d \| \d+\.\d\d \|$/m);
    expect(r.stdout).toMatch(/^\| pool, uniform draw \(Random, expected\) \| 480 \| \d+\.\d\d \| \d+\.\d\d \|$/m);
    expect(r.stderr).toMatch(/skipped 1 unreadable image\(s\)/);
    // one seed: dcd run says the spread is unknown, before any stage
    expect(r.stderr).toMatch(/warning: config\.seeds has 1 seed \(0\): the table shows no spread/);
    const run = path.join(work, 'runs/folders-demo');
    // the select stage records its sizing (k_train 7 as configured) and says every warning it found
    const sel = readdirSync(path.join(run, 'select')).find((d) => d.startsWith('broad_cnn'))!;
    const sizing = JSON.parse(readFileSync(path.join(run, 'select', sel, 'summary.json'), 'utf8')).sizing as { kTrain: number; share: number; warnings: string[] };
    expect(sizing.kTrain).toBe(7);
    for (const w of sizing.warnings) expect(r.stderr).toContain(w);
    if (sizing.share > 0.25) expect(sizing.warnings.some((w) => /above 25\.0%/.test(w))).toBe(true);
    const dataDir = readdirSync(path.join(run, 'data'))[0]!;
    expect(readFileSync(path.join(run, 'data', dataDir, 'unreadable.tsv'), 'utf8')).toMatch(/^pool\tpool\/disc\/broken\.png\t.*broken\.png\t/m);
    const rep = readdirSync(path.join(run, 'report'))[0]!;
    const html = readFileSync(path.join(run, 'report', rep, 'html/report.html'), 'utf8');
    expect(html).toMatch(/Retrieved neighbours per seed image/);
    // the pool's true labels reach the gallery: wrongly labelled picks, "weak → true"
    expect(html).toMatch(/Wrongly labelled picks/);
    expect(html).toMatch(/(disc|square|triangle|plus) → (disc|square|triangle|plus|cross|ring|none)/);
  }, 600_000);
});

describe('dcd init on nested folders and mixed formats', () => {
  it('counts PNG, JPEG and WebP images in nested folders, lists other folders, and its config loads', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'dcd-init-mixed-'));
    const img = async (rel: string, fmt: 'png' | 'jpeg' | 'webp', w = 40, h = 30) => {
      const f = path.join(root, rel);
      mkdirSync(path.dirname(f), { recursive: true });
      await sharp({ create: { width: w, height: h, channels: 3, background: { r: 90, g: 140, b: 30 } } })
        .toFormat(fmt)
        .toFile(f);
    };
    const fmts = ['png', 'jpeg', 'webp'] as const;
    for (const set of ['train', 'test', 'mfreq', 'complement'])
      for (const cls of ['owl', 'bat'])
        for (const [i, fmt] of fmts.entries()) await img(`${set}/${cls}/${i ? `site${i}/day${i}/` : ''}${i}.${fmt === 'jpeg' ? 'jpg' : fmt}`, fmt);
    // pool images in a folder of any name: not reported as an unknown set
    for (const [i, fmt] of fmts.entries()) await img(`web/crawl/${i}.${fmt === 'jpeg' ? 'jpeg' : fmt}`, fmt, 64, 48);
    writeFileSync(path.join(root, 'pool.jsonl'), fmts.map((f, i) => JSON.stringify({ path: `web/crawl/${i}.${f}`, weak_label: i % 2 ? 'owl' : 'bat' })).join('\n') + '\n');
    await img('unsorted/x.png', 'png');
    writeFileSync(path.join(root, 'train/README.txt'), 'not an image, outside the class folders');
    const r = await cli(['init', root], root);
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(r.stdout).toMatch(/pool +.*pool\.jsonl/);
    expect(r.stdout).toMatch(/other folder unsorted\/: not a role/);
    expect(r.stdout).not.toMatch(/other folder web/);
    expect(r.stdout).toMatch(/2 classes \(sorted class folders of train\)/);
    expect(r.stdout).toMatch(/^ {2}bat \* +3 +3 +3 +3 +2$/m);
    expect(r.stdout).toMatch(/^ {2}owl \* +3 +3 +3 +3 +1$/m);
    expect(r.stdout).toMatch(/ignored 1 file\(s\) outside class folders, e\.g\. train\/README\.txt/);
    expect(r.stdout).toMatch(/every image could be read/);
    // 3 MFreq images of bat against 2 pool images: even k_train 1 takes more than the pool
    expect(r.stdout).toMatch(/warning: class bat: k_train 1 × 3 seed images \(if every MFreq image of the class failed\) would take 2 of its 2 pool images \(100\.0%\)/);
    expect(r.stdout).toMatch(/warning: class owl: 1 pool images for 3 seed images × \(k_val 1 \+ k_train 1\) = 6/);
    const cfg = loadConfig(path.join(root, 'dcd.yaml'));
    // 30 px median shorter side → 32
    expect(cfg.data.image_size).toBe(32);
    expect(cfg.failures.subset).toBe('pool');
  }, 300_000);
});
