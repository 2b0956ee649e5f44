/**
 * `dcd run` end to end through the real CLI (node dist/src/cli/main.js) on a tiny
 * synthetic config: the table, the artifacts, caching on a second run, and a real
 * SIGKILL in the middle of a training stage followed by a resume.
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { spawn } from 'node:child_process';
import { spawnAsync } from './spawn-async.js';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const TINY = path.join(ROOT, 'test/fixtures/pipeline/tiny.yaml');
const ENV = { ...process.env, DCD_BACKEND: 'wasm', DCD_LOG: 'info' };
// Checkpoints every 5 steps, so that a kill lands between two of them.
const ARGS = ['run', TINY, '--set', 'train.checkpoint_every_steps=5'];

async function runCli(args: string[], cwd: string) {
  const r = await spawnAsync('node', [CLI, ...args], { cwd, env: ENV, timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** manifest.json of every completed stage → its finish time. */
function manifests(runDir: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(runDir)) return out;
  for (const stage of readdirSync(runDir)) {
    const d = path.join(runDir, stage);
    if (!statSync(d).isDirectory()) continue;
    for (const inst of readdirSync(d)) {
      const m = path.join(d, inst, 'manifest.json');
      if (existsSync(m)) out.set(`${stage}/${inst}`, JSON.parse(readFileSync(m, 'utf8')).timings.finished);
    }
  }
  return out;
}

/** The result table (stdout up to the "results:" line). */
function tableOf(stdout: string): string {
  return stdout.slice(0, stdout.indexOf('\nresults:'));
}

let reference: string;

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npx tsc -p tsconfig.json first`);
});

describe('dcd run (end to end, real CLI)', () => {
  it('runs every stage, prints the table, writes manifests and the resolved config; a second run is fully cached', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'dcd-run-'));
    const r = await runCli(ARGS, cwd);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    for (const row of ['original', 'complete', 'random', 'dcd-random_cnn']) expect(r.stdout).toMatch(new RegExp(`^\\| ${row} \\|`, 'm'));
    expect(r.stdout).toMatch(/\| method \| Seed \| Heldout \| MFreq \(sub\)/);
    // the backbones' retention table (paper Fig. 7) follows, from the run's own embeddings
    expect(r.stdout).toMatch(/class and context retention/);
    expect(r.stdout).toMatch(/^\| random_cnn \| 1 \| \d+\.\d\d \| \d+\.\d\d \|/m);
    // Progress: stage, items done, ETA.
    expect(r.stderr).toMatch(/\[\d+\/25\] original\/train-s0: running/);
    expect(r.stderr).toMatch(/ETA \d+s/);
    // the backend is named once, when the run starts
    expect(r.stderr.match(/backend/g)).toHaveLength(1);
    // one seed: the run first says the spread is unknown and what to set (issue 24's warning)
    expect(r.stderr).toMatch(/^dcd: warning: config\.seeds has 1 seed \(0\): the table shows no spread.*Set seeds: \[0, 1, 2\].*\ndcd: run runs\/tiny, backend wasm\n/);
    const runDir = path.join(cwd, 'runs/tiny');
    expect(readFileSync(path.join(runDir, 'report.md'), 'utf8')).toBe(tableOf(r.stdout));
    expect(readFileSync(path.join(runDir, 'config.resolved.yaml'), 'utf8')).toMatch(/checkpoint_every_steps: 5/);
    const ms = manifests(runDir);
    expect(ms.size).toBe(25);
    const rep = [...ms.keys()].find((k) => k.startsWith('report/'))!;
    // one report.md, written by the report stage; the run folder's is a link to it
    const reports = readdirSync(runDir, { recursive: true, withFileTypes: true }).filter((e) => e.name === 'report.md' && e.isFile());
    expect(reports.map((e) => path.relative(runDir, path.join(e.parentPath, e.name)))).toEqual([path.join(rep, 'report.md')]);
    expect(realpathSync(path.join(runDir, 'report.md'))).toBe(realpathSync(path.join(runDir, rep, 'report.md')));
    const html = readFileSync(path.join(runDir, rep, 'html/report.html'), 'utf8');
    expect(html).toMatch(/dcd-random_cnn/);
    // Figure 10 plots from per-class heldout accuracy, and the retrieval grid with thumbnails
    expect(html).toMatch(/images\/fig10-dcd-random_cnn-vs-random\.png/);
    expect(html).toMatch(/Retrieved neighbours per seed image/);
    // the retention section of report.md, with its plot; the wrongly labelled picks of the DCD row
    expect(html).toMatch(/<h2>Backbones: class and context retention of k nearest neighbours \(mfreq set, paper Fig\. 7\)<\/h2>/);
    expect(html).toMatch(/<tr><td>random_cnn<\/td><td>1<\/td><td>\d+\.\d\d<\/td>/);
    expect(existsSync(path.join(runDir, rep, 'html/images/retention.png'))).toBe(true);
    expect(html).toMatch(/<h3>dcd-random_cnn: \d+ wrongly labelled of \d+ picks/);
    expect(r.stdout).toContain(`HTML report: ${path.join(runDir, rep, 'html/report.html')}`);
    const thumbs = [...html.matchAll(/src="(images\/t\d+\.png)"/g)].map((m) => m[1]!);
    expect(thumbs.length).toBeGreaterThan(1);
    for (const t of thumbs) expect(existsSync(path.join(runDir, rep, 'html', t)), t).toBe(true);
    const fail = [...ms.keys()].find((k) => k.startsWith('failures/'))!;
    const fm = JSON.parse(readFileSync(path.join(runDir, fail, 'manifest.json'), 'utf8'));
    expect(fm.counts.seed).toBeGreaterThan(0);
    expect(Object.keys(fm.inputs)).toEqual(['stage:data', 'stage:original']);
    // every table cell is a percentage or a dash
    for (const line of tableOf(r.stdout).split('\n').filter((l) => /^\| (original|complete|random|dcd-\S+) \|/.test(l)))
      for (const c of line.split('|').slice(2, -1)) expect(c.trim()).toMatch(/^(\d{1,3}\.\d\d|–)$/);
    reference = tableOf(r.stdout);

    const again = await runCli(ARGS, cwd);
    expect(again.code, again.stderr.slice(-3000)).toBe(0);
    expect(again.stdout).toMatch(/stages ran: 0, cached: 25/);
    expect(tableOf(again.stdout)).toBe(reference);
    expect(manifests(runDir)).toEqual(ms);

    const dry = await runCli([...ARGS, '--dry-run', '--set', 'select.k_train=3'], cwd);
    expect(dry.code, dry.stderr.slice(-3000)).toBe(0);
    expect(dry.stdout).toMatch(/^cached +data\/synthetic-s0/m);
    expect(dry.stdout).toMatch(/^run +select\/random_cnn-s0 +config changed since the last run: k_train 2 → 3/m);
    expect(dry.stdout).toMatch(/^cached +train\/complete-s0/m);
  });

  it('resumes after kill -9 during training: no completed stage recomputed, the same table', async () => {
    expect(reference).toBeDefined();
    const cwd = mkdtempSync(path.join(tmpdir(), 'dcd-kill-'));
    const runDir = path.join(cwd, 'runs/tiny');
    const child = spawn('node', [CLI, ...ARGS], { cwd, env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((res) => child.on('exit', (code, sig) => res(sig ? -1 : code)));
    // Wait until the original model's training has written its first checkpoint, then SIGKILL.
    const deadline = Date.now() + 180_000;
    let killedIn = '';
    while (Date.now() < deadline) {
      const orig = path.join(runDir, 'original');
      const inst = existsSync(orig) ? readdirSync(orig)[0] : undefined;
      if (inst && existsSync(path.join(orig, inst, 'train', 'latest.json')) && !existsSync(path.join(orig, inst, 'manifest.json'))) {
        child.kill('SIGKILL');
        killedIn = inst;
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(await exited).toBe(-1);
    expect(killedIn).not.toBe('');
    expect(err).toMatch(/original\/train-s0: running/);
    const before = manifests(runDir);
    expect([...before.keys()]).toEqual([expect.stringMatching(/^data\//)]);
    expect(existsSync(path.join(runDir, 'original', killedIn, 'manifest.json'))).toBe(false);

    const r = await runCli(ARGS, cwd);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expect(r.stderr).toMatch(/data\/synthetic-s0: cached/);
    expect(r.stderr).toMatch(/original\/train-s0: resumed from step \d+/);
    const after = manifests(runDir);
    for (const [k, finished] of before) expect(after.get(k)).toBe(finished);
    expect(tableOf(r.stdout)).toBe(reference);
  });
});
