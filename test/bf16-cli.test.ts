/**
 * The start-up precision line through the real CLI (node dist/src/cli/main.js) on the native
 * backend: `dcd run --precision bf16` names the precision right before the run/backend line,
 * `dcd embed --precision bf16` prints it before embedding, and with `ONEDNN_MAX_CPU_ISA=AVX512_CORE`
 * hiding the bf16 units both print the one-line fallback and compute in fp32, and `dcd run` keys its
 * stages as fp32 ones (an fp32 run's cached stages serve the fallback run).
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnAsync } from './spawn-async.js';
import { registerNativeBackend } from '../src/backends/native.js';
import { bf16Support } from '../src/backends/precision.js';
import { embeddingMatrix, readArrowFile } from '../src/core/arrow.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const NATIVE = registerNativeBackend().ok;
const BF16 = NATIVE && bf16Support('native').ok;
const HIDE_BF16 = { ONEDNN_MAX_CPU_ISA: 'AVX512_CORE' };
// the ISA named is avx512_core where the CPU has AVX-512, else what the CPU has (avx2, …)
const FALLBACK = /^dcd: warning: precision fp32 \(bf16 asked for, unavailable: this CPU has no bf16 dot-product units for oneDNN \(ISA \w+; needs avx512_core_bf16 or AMX\)\)$/m;

async function dcd(args: string[], cwd: string, env: Record<string, string> = {}) {
  const r = await spawnAsync('node', [CLI, ...args], { cwd, env: { ...process.env, DCD_BACKEND: 'native', DCD_LOG: 'info', ...env }, timeout: 120_000 });
  expect(r.status, r.stderr.slice(-2000)).toBe(0);
  return r;
}

/** configs/demo-flat.yaml shrunk to seconds: small sets, one untrained backbone, seed 0, embed stages only. */
const DEMO_EMBED = [
  'run', path.join(ROOT, 'configs/demo-flat.yaml'), '--seeds', '0', '--only', 'embed',
  '--set', 'data.synthetic.train.size=48', '--set', 'data.synthetic.test.size=24',
  '--set', 'data.synthetic.shifted.size=24', '--set', 'data.synthetic.pool.size=48',
  '--set', 'backbones=[{name: random_cnn, weights: demo, pretrain: {kind: random_cnn, widths: [8], seed: 1000}}]',
];

/** The embed stages' manifests' configs of a run directory. */
function embedConfigs(runDir: string): Record<string, unknown>[] {
  const d = path.join(runDir, 'embed');
  return readdirSync(d).map((i) => JSON.parse(readFileSync(path.join(d, i, 'manifest.json'), 'utf8')).config);
}

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npx tsc -p tsconfig.json first`);
});

describe.runIf(NATIVE)('precision at start-up (real CLI, native backend)', () => {
  it.runIf(BF16)('dcd run --precision bf16: the precision line right before the run/backend line; the embed stages keyed bf16', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'dcd-bf16-run-'));
    const r = await dcd([...DEMO_EMBED, '--precision', 'bf16'], cwd);
    // --precision sets compute.precision only: training stays fp32 unless train.precision says bf16
    expect(r.stderr).toMatch(/^dcd: precision: embedding\/retrieval bf16, training fp32 \(bf16 on avx512_core_(bf16|amx): bf16 inputs, fp32 accumulation\)\ndcd: run runs\/demo-flat, backend native/m);
    expect(r.stderr.match(/precision/g)).toHaveLength(1);
    const configs = embedConfigs(path.join(cwd, 'runs/demo-flat'));
    expect(configs.length).toBe(2); // mfreq and pool
    for (const c of configs) expect(c.precision).toBe('bf16');
  });

  it('dcd run under ONEDNN_MAX_CPU_ISA=AVX512_CORE: the one-line fallback, then the run/backend line; the stages keyed as fp32 ones (an fp32 run\'s cache serves it)', async () => {
    // embed stages and the original model's training, all keyed by the precision they compute in
    const args = [...DEMO_EMBED.map((a) => (a === 'embed' ? 'embed,original' : a)), '--set', 'train.batch_size=16', '--set', 'train.epochs=1'];
    const bf16Args = [...args, '--precision', 'bf16', '--set', 'train.precision=bf16'];
    const cwd = mkdtempSync(path.join(tmpdir(), 'dcd-bf16-fallback-'));
    const plain = await dcd(args, cwd);
    expect(plain.stderr).not.toMatch(/precision/);
    const stageDirs = () => ['embed', 'original'].flatMap((k) => readdirSync(path.join(cwd, 'runs/demo-flat', k)).map((d) => `${k}/${d}`)).sort();
    const fp32Dirs = stageDirs();
    expect(fp32Dirs).toHaveLength(3); // mfreq and pool embeddings, the original model
    const r = await dcd(bf16Args, cwd, HIDE_BF16);
    expect(r.stderr).toMatch(FALLBACK);
    expect(r.stderr).toMatch(/\)\)\ndcd: run runs\/demo-flat, backend native/);
    expect(r.stderr.match(/bf16 asked for/g)).toHaveLength(1); // the run-level line only: the stages are planned in fp32
    // fp32 results under fp32 keys: the fp32 run's stages are reused, none is added
    expect(r.stdout).toMatch(/^ran 0 stage\(s\)/m);
    for (const d of fp32Dirs) expect(r.stdout).toContain(d.replace(/-[0-9a-f]+$/, ''));
    expect(stageDirs()).toEqual(fp32Dirs);
    if (!BF16) return;
    // where bf16 runs, the same flags plan the embed and training stages anew (bf16 keys)
    const plan = await dcd([...bf16Args, '--dry-run'], cwd);
    expect(plan.stdout).toMatch(/^run +embed\/random_cnn-mfreq-s0 /m);
    expect(plan.stdout).toMatch(/^run +embed\/random_cnn-pool-s0 /m);
    expect(plan.stdout).toMatch(/^run +original\/train-s0 /m);
    expect(plan.stdout).toMatch(/^cached +data\/synthetic-s0 /m);
  });

  it('dcd embed --precision bf16: the line before embedding; bf16 features differ from fp32, the fallback\'s equal them', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'dcd-bf16-embed-'));
    mkdirSync(path.join(cwd, 'imgs'));
    for (const f of ['parity-rgb.png', 'parity-portrait.jpg']) copyFileSync(path.join(ROOT, 'test/fixtures/data', f), path.join(cwd, 'imgs', f));
    const embed = (out: string, precision: string, env: Record<string, string> = {}) =>
      dcd(['embed', '--backbone', 'small_cnn:8-16', '--weights', 'random', '--images', 'imgs', '--out', out, '--precision', precision], cwd, env);
    const f32 = await embed('fp32.arrow', 'fp32');
    expect(f32.stderr).not.toMatch(/precision/);
    const hidden = await embed('hidden.arrow', 'bf16', HIDE_BF16);
    expect(hidden.stderr).toMatch(FALLBACK);
    expect(hidden.stderr.indexOf('precision')).toBeLessThan(hidden.stderr.indexOf('embedded'));
    const feats = async (f: string) => Array.from(embeddingMatrix(await readArrowFile(path.join(cwd, f))).data);
    expect(await feats('hidden.arrow')).toEqual(await feats('fp32.arrow'));
    if (!BF16) return;
    const bf = await embed('bf16.arrow', 'bf16');
    expect(bf.stderr).toMatch(/^dcd: precision bf16 \(convolutions and matmuls: bf16 inputs, fp32 accumulation\)\n/);
    expect(bf.stderr.indexOf('precision')).toBeLessThan(bf.stderr.indexOf('embedded'));
    const a = await feats('bf16.arrow');
    const b = await feats('fp32.arrow');
    expect(a).not.toEqual(b);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (Math.abs(b[i]!) + 1e-3));
    expect(worst).toBeLessThan(0.05); // bf16 rounding, not another computation
  });
});
