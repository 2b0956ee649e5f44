/**
 * End-to-end through the built CLI (`npm test` builds dist/ first): `dcd train` killed
 * with SIGKILL mid-run and restarted ends with exactly the weights of an uninterrupted run.
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { spawn } from 'node:child_process';
import { spawnAsync } from './spawn-async.js';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { writeManifest, type ManifestRow } from '../src/data/manifest.js';
import { readSafetensors } from '../src/models/safetensors.js';
import { createModel } from '../src/models/registry.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const dir = mkdtempSync(path.join(tmpdir(), 'dcd-resume-'));
const manifest = path.join(dir, 'train.arrow');

async function makeImages(n: number, classes: number): Promise<void> {
  const rows: ManifestRow[] = [];
  for (let i = 0; i < n; i++) {
    const y = i % classes;
    const px = Buffer.alloc(40 * 40 * 3);
    for (let p = 0; p < 40 * 40; p++) {
      px[p * 3 + y] = 150 + ((p * 7 + i * 13) % 100);
      px[p * 3 + ((y + 1) % 3)] = (p * 31 + i) % 80;
    }
    const file = path.join(dir, `img${i}.png`);
    await sharp(px, { raw: { width: 40, height: 40, channels: 3 } }).png().toFile(file);
    rows.push({ id: `img${i}.png`, path: file, label: y, wnid: '', class_name: `c${y}`, set: 'train' });
  }
  await writeManifest(manifest, rows, { 'dcd.classes': JSON.stringify(['c0', 'c1', 'c2']) });
}

const args = (out: string) => [
  CLI, 'train', '--backend', 'wasm', '--model', 'resnet_tiny', '--train', manifest, '--out', out,
  '--epochs', '2', '--batch-size', '4', '--lr', '0.05', '--checkpoint-every', '1', '--seed', '3', '--resize', '36', '--crop', '32',
];

function step(out: string): number {
  try {
    return JSON.parse(readFileSync(path.join(out, 'latest.json'), 'utf8')).globalStep as number;
  } catch {
    return 0;
  }
}

describe('dcd train resume after SIGKILL', () => {
  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx tsc -p tsconfig.json\` (npm test does) before this test`);
    await makeImages(16, 3);
  });

  it('gives the same weights as an uninterrupted run', async () => {
    const a = path.join(dir, 'a');
    const full = await spawnAsync('node', args(a), { env: { ...process.env, DCD_LOG: 'info' } });
    expect(full.status, full.stderr).toBe(0);
    expect(step(a)).toBe(8);

    const b = path.join(dir, 'b');
    const child = spawn('node', args(b), { stdio: ['ignore', 'ignore', 'pipe'] });
    let killedAt = -1;
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        const s = step(b);
        if (s >= 2) {
          clearInterval(timer);
          killedAt = s;
          child.kill('SIGKILL');
        }
      }, 5);
      child.on('exit', (code, signal) => {
        clearInterval(timer);
        if (signal === 'SIGKILL') resolve();
        else reject(new Error(`the child ended before it could be killed (code ${code}); make the run longer`));
      });
    });
    expect(killedAt).toBeGreaterThanOrEqual(2);
    expect(step(b)).toBeLessThan(8);
    const again = await spawnAsync('node', args(b));
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/resuming .*step-0000000\d/);
    expect(step(b)).toBe(8);
    // metrics.jsonl lists every step once, as the uninterrupted run's does
    const stepsOf = (d: string) =>
      readFileSync(path.join(d, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { type: string; globalStep?: number })
        .filter((o) => o.type === 'step')
        .map((o) => o.globalStep);
    expect(stepsOf(b)).toEqual(stepsOf(a));
    expect(stepsOf(a)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);

    const wa = await readSafetensors(path.join(a, 'model.safetensors'));
    const wb = await readSafetensors(path.join(b, 'model.safetensors'));
    expect([...wb.tensors.keys()]).toEqual([...wa.tensors.keys()]);
    for (const [k, t] of wa.tensors) expect(Array.from(wb.tensors.get(k)!.data as Float32Array), k).toEqual(Array.from(t.data as Float32Array));
    // and training did change the weights (the run starts from createModel's seeded init)
    const init = createModel('resnet_tiny', { numClasses: 3, seed: 3 });
    expect(Array.from(init.params().get('fc.weight')!.dataSync())).not.toEqual(Array.from(wa.tensors.get('fc.weight')!.data as Float32Array));
    init.dispose();
  });

  it('refuses to resume a run folder with other settings, and reports bad input', async () => {
    const a = path.join(dir, 'a');
    const r = await spawnAsync('node', args(a).map((v) => (v === '0.05' ? '0.5' : v)));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/different settings/);
    const bad = await spawnAsync('node', [CLI, 'train', '--model', 'resnet_tiny', '--train', path.join(dir, 'nope.arrow'), '--out', path.join(dir, 'x')]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/nope\.arrow/);
  });
});
