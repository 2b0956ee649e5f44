/**
 * `weights: ssl` through the real CLI: `dcd run` pretrains the backbone on the pool (DINO),
 * uses it for selection and retention, and reports the loss; `dcd retention` reads the
 * pretrained backbone's embeddings.
 */
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const CFG = path.join(ROOT, 'test/fixtures/pipeline/tiny-ssl.yaml');
const ENV = { ...process.env, DCD_BACKEND: 'wasm', DCD_LOG: 'info' };
/** Runs the CLI without blocking the test worker (a blocked worker misses vitest's RPC deadlines). */
function run(args: string[], cwd: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('node', [CLI, ...args], { cwd, env: ENV });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('weights: ssl (end to end, real CLI)', () => {
  it('pretrains on the pool, selects with it, reports the loss; dcd retention reads its embeddings', async () => {
    const cwd = mkdtempSync(path.join(process.env.DCD_TEST_TMP ?? tmpdir(), 'dcd-ssl-'));
    const r = await run(['run', CFG], cwd);
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(r.stdout).toMatch(/^\| dcd-ssl \|/m);
    expect(r.stdout).toMatch(/^\| ssl \| 1 \| \d+\.\d\d \|/m); // retention row
    const bbRoot = path.join(cwd, 'runs/tiny-ssl/backbone');
    const bb = path.join(bbRoot, readdirSync(bbRoot).find((d) => d.startsWith('ssl-'))!);
    const losses = readFileSync(path.join(bb, 'loss.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number });
    expect(losses.map((l) => l.step)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(existsSync(path.join(bb, 'loss.png'))).toBe(true);
    const report = readFileSync(path.join(cwd, 'runs/tiny-ssl/report.md'), 'utf8');
    expect(report).toMatch(/Self-supervised pretraining/);
    expect(report).toMatch(/\| ssl \| dino \| pool \| 240 \| 6 \|/);
    // a second run is fully cached (the pretraining included)
    const r2 = await run(['run', CFG], cwd);
    expect(r2.status).toBe(0);
    expect(r2.stderr).not.toMatch(/backbone\/ssl: running/);
    // dcd retention on the run's mfreq set, from the ssl backbone's embeddings (found by their dcd.backbone metadata)
    const dataRoot = path.join(cwd, 'runs/tiny-ssl/data');
    const mfreq = path.join(dataRoot, readdirSync(dataRoot)[0]!, 'mfreq.arrow');
    const rr = await run(['retention', '--backbones', 'ssl_cnn', '--embeddings', path.join(cwd, 'runs/tiny-ssl/embed'), '--data', mfreq, '--k', '1,5', '--out', path.join(cwd, 'ret')], cwd);
    expect(rr.status, rr.stderr.slice(-2000)).toBe(0);
    expect(rr.stdout).toMatch(/^\| ssl_cnn \| 1 \| \d+\.\d\d \| \d+\.\d\d \|/m);
  }, 300_000);

  it('refuses a test set as pretraining data, naming the key', async () => {
    const cwd = mkdtempSync(path.join(process.env.DCD_TEST_TMP ?? tmpdir(), 'dcd-ssl-'));
    const bad = path.join(cwd, 'bad.yaml');
    writeFileSync(bad, `extends: ${CFG}\nbackbones:\n  - { name: ssl_cnn, weights: ssl, pretrain: { method: dino, data: mfreq } }\n`);
    const r = await run(['run', bad, '--dry-run'], cwd);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/backbones\[0\]\.pretrain\.data: ".*mfreq" is a debug or test set/);
  });
});
