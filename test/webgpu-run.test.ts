/**
 * `dcd run --backend webgpu` end to end through the real CLI on the tiny synthetic config, shrunk
 * further for a software device (SwiftShader runs the demo's small CNN at a few images per second
 * on this 2-core machine): fewer images, fewer steps. Every stage runs on webgpu — the original
 * model's training, the embedding, the leakage filter, the selection, the fine-tunes, evaluation
 * — and the run prints its table with the adapter named on the start-up line.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadWebgpuBackend, SOFTWARE_VULKAN_ICDS } from '../src/backends/webgpu.js';
import { spawnAsync } from './spawn-async.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const TINY = path.join(ROOT, 'test/fixtures/pipeline/tiny.yaml');
/** What the software device is spared, against tiny.yaml (images ÷ 2.5–4, steps ÷ 8–10). */
const SHRINK = [
  'data.synthetic.train.size=64',
  'data.synthetic.test.size=32',
  'data.synthetic.shifted.size=32',
  'data.synthetic.pool.size=64',
  'original.max_steps=3',
  'train.batch_size=16',
  'train.finetune.max_steps=1',
];

const WEBGPU = SOFTWARE_VULKAN_ICDS.some((p) => existsSync(p)) || (await loadWebgpuBackend({ allowSoftware: true })).ok;

describe.runIf(WEBGPU)('dcd run --backend webgpu (end to end, real CLI, shrunk tiny config)', () => {
  it('runs every stage on webgpu and prints the table', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'dcd-webgpu-run-'));
    const args = [CLI, 'run', TINY, '--backend', 'webgpu', ...SHRINK.flatMap((s) => ['--set', s])];
    const r = await spawnAsync(process.execPath, args, { cwd, env: { ...process.env, DCD_BACKEND: undefined, DCD_LOG: 'info' }, timeout: 1_150_000 });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    expect(r.stderr).toMatch(/dcd: run runs\/tiny, backend webgpu on .+/);
    const table = r.stdout.slice(0, r.stdout.indexOf('\nresults:'));
    for (const method of ['original', 'complete', 'random', 'dcd-random_cnn']) expect(table).toMatch(new RegExp(`^\\| ${method} \\|`, 'm'));
    // every stage recorded the backend it ran on
    const runDir = path.join(cwd, 'runs/tiny');
    let stages = 0;
    for (const stage of readdirSync(runDir, { withFileTypes: true }).filter((d) => d.isDirectory()))
      for (const inst of readdirSync(path.join(runDir, stage.name))) {
        const m = path.join(runDir, stage.name, inst, 'manifest.json');
        if (!existsSync(m)) continue;
        expect(JSON.parse(readFileSync(m, 'utf8')).compute?.backend, m).toBe('webgpu');
        stages++;
      }
    expect(stages).toBeGreaterThan(10);
  }, 1_200_000);
});
