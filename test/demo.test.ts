import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { spawnAsync } from './spawn-async.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
/**
 * What the in-memory demo experiment (removed) checked, now through `dcd run` on the tiny
 * config with two seeds and two demo backbones (one trained on a broad draw, one the debugged
 * model itself): every method on every seed, and selection sizes that agree with each other.
 */
describe('demo experiment through dcd run (tiny, two seeds)', () => {
  it('runs every method on every seed, with consistent sizes', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'dcd-demo-'));
    const cfg = YAML.parse(readFileSync(path.join(ROOT, 'test/fixtures/pipeline/tiny.yaml'), 'utf8'));
    cfg.seeds = [0, 1];
    cfg.backbones = [
      { name: 'broad_cnn', label: 'broad', weights: 'demo', pretrain: { kind: 'broad_cnn', widths: [4, 8], broadSize: 72, steps: 3, seed: 1000 } },
      { name: 'self', label: 'self', weights: 'demo', pretrain: { kind: 'self' } },
    ];
    cfg.filter = { enabled: false };
    const file = path.join(cwd, 'demo-tiny.yaml');
    writeFileSync(file, YAML.stringify(cfg));
    const r = await spawnAsync('node', [CLI, 'run', file], { cwd, env: { ...process.env, DCD_BACKEND: 'wasm' }, timeout: 600_000 });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const runDir = path.join(cwd, 'runs/tiny');
    const report = JSON.parse(readFileSync(path.join(runDir, 'report', readdirSync(path.join(runDir, 'report'))[0]!, 'report.json'), 'utf8')) as {
      rows: { name: string; n: number }[];
      results: { method: string; seed: number; metrics: Record<string, number | null> }[];
    };
    expect(report.rows.map((x) => [x.name, x.n])).toEqual([['original', 2], ['complete', 2], ['random', 2], ['dcd-broad', 2], ['dcd-self', 2]]);
    expect(report.results).toHaveLength(10);
    expect(r.stdout).toMatch(/^\| dcd-broad \| \d+\.\d\d ± \d+\.\d\d \| /m);
    // per stage kind and seed, the counts its manifest recorded
    const counts = (stage: string, label: string) => JSON.parse(readFileSync(path.join(runDir, stage, readdirSync(path.join(runDir, stage)).find((d) => d.startsWith(`${label}-`))!, 'manifest.json'), 'utf8')).counts as Record<string, number>;
    for (const seed of [0, 1]) {
      // the original model gets every seed image wrong: that is what makes it the seed set
      expect(report.results.find((x) => x.seed === seed && x.method === 'original')!.metrics.seed).toBe(0);
      const failures = counts('failures', `single-s${seed}`);
      expect(failures.seed).toBeGreaterThan(0);
      const dcd = counts('select', `broad-s${seed}`).debug_train!;
      expect(dcd).toBeGreaterThan(0);
      expect(dcd).toBeLessThanOrEqual(2 * failures.seed!); // k_train = 2 picks per seed image at most
      // Random takes as many per class as the first backbone's DCD; Complete adds the whole (unfiltered) pool
      expect(counts('baseline', `random-s${seed}`).added).toBe(dcd);
      expect(counts('baseline', `complete-s${seed}`).added).toBe(240);
    }
  }, 600_000);
});
