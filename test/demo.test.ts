import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import YAML from 'yaml';
import { initBackend } from '../src/core/backend.js';
import { spawnAsync } from './spawn-async.js';
import { createSmallCnn, conv3x3 } from '../src/backbones-demo/small-cnn.js';
import { trainDemoBackbone } from '../src/backbones-demo/backbones.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');

describe('small CNN (im2col conv)', () => {
  it('conv3x3 equals tf.conv2d with the same weights', async () => {
    await initBackend('wasm', { quiet: true });
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const x = tf.randomNormal([2, 5, 6, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      const w = tf.randomNormal([3, 3, 3, 4], 0, 1, 'float32', 2) as tf.Tensor4D; // HWIO
      const b = tf.randomNormal([4], 0, 1, 'float32', 3) as tf.Tensor1D;
      const ref = tf.add(tf.conv2d(x, w, 1, 'same'), b);
      const got = conv3x3(x, w.reshape([27, 4]) as tf.Tensor2D, b);
      expect(got.shape).toEqual([2, 5, 6, 4]);
      const diff = tf.max(tf.abs(tf.sub(ref, got))).dataSync()[0]!;
      expect(diff).toBeLessThan(1e-4);
    });
    const m = createSmallCnn({ widths: [4, 8], numClasses: 3, seed: 0 });
    const f = tf.tidy(() => m.forwardHead(m.forwardFeatures(tf.zeros([2, 16, 16, 3]) as tf.Tensor4D)));
    expect(f.shape).toEqual([2, 3]);
    f.dispose();
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a broad_cnn backbone is trained on the broad draw only and has no head', async () => {
    await initBackend('wasm', { quiet: true });
    const m = trainDemoBackbone({ kind: 'broad_cnn', widths: [4, 8], broadSize: 72, steps: 3 }, { imageSize: 16 });
    expect(m.numClasses).toBe(36); // joint (class, context) labels: 6 × 6
    expect(m.numFeatures).toBe(8);
    m.dispose();
    const r = trainDemoBackbone({ kind: 'random_cnn', widths: [4, 8] }, {});
    expect(r.numClasses).toBe(0);
    r.dispose();
    expect(() => trainDemoBackbone({ kind: 'self' }, {})).toThrow(/debugged model itself/);
  });
});

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
