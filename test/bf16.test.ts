/**
 * bf16 compute on the native backend (native/src/bf16.cc, src/backends/precision.ts): the
 * fallback where bf16 cannot run (another backend; ONEDNN_MAX_CPU_ISA hiding the bf16 units),
 * the models' features in bf16 against PyTorch's fp32 reference features (cosine ≥ 0.999), and
 * bf16 convolution / matmul gradients against fp32.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { initBackend } from '../src/core/backend.js';
import { registerNativeBackend } from '../src/backends/native.js';
import { bf16Support, computePrecision, parsePrecision, setComputePrecision } from '../src/backends/precision.js';
import { readSafetensors } from '../src/models/safetensors.js';
import { loadCheckpoint } from '../src/models/load.js';
import { ResNet, type ResNetConfig } from '../src/models/resnet.js';
import { ViT, type ViTConfig } from '../src/models/vit.js';
import type { ImageModel } from '../src/core/types.js';
import type { KeyFamily } from '../src/models/registry.js';

const FIX = path.resolve('test/fixtures/parity');
const NATIVE = registerNativeBackend().ok;
const BF16 = NATIVE && bf16Support('native').ok;

/** Smallest per-row cosine between two [rows, d] arrays. */
function minCosine(a: Float32Array, b: Float32Array, rows: number): number {
  const d = a.length / rows;
  let min = 1;
  for (let r = 0; r < rows; r++) {
    let dot = 0, na = 0, nb = 0;
    for (let i = r * d; i < (r + 1) * d; i++) {
      dot += a[i]! * b[i]!;
      na += a[i]! ** 2;
      nb += b[i]! ** 2;
    }
    min = Math.min(min, dot / Math.sqrt(na * nb));
  }
  return min;
}
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
const nhwc = (t: { shape: number[]; data: unknown }) =>
  tf.tidy(() => tf.transpose(tf.tensor4d(t.data as Float32Array, t.shape as [number, number, number, number]), [0, 2, 3, 1]));

describe('precision option', () => {
  it('parses fp32 and bf16 and names the key on anything else', () => {
    expect(parsePrecision('bf16', 'compute.precision')).toBe('bf16');
    expect(() => parsePrecision('fp16', 'compute.precision')).toThrow(/compute\.precision: expected fp32 or bf16, received "fp16"/);
  });
  it('falls back to fp32 with a one-line notice on a backend other than native', async () => {
    await initBackend('cpu', { quiet: true });
    const r = setComputePrecision('bf16');
    expect(r.precision).toBe('fp32');
    expect(r.notice).toMatch(/^dcd: precision fp32 \(bf16 asked for, unavailable: backend cpu computes in fp32 only/);
    expect(r.notice).not.toContain('\n');
    expect(computePrecision()).toBe('fp32');
  });
  it.runIf(NATIVE)('falls back to fp32 where ONEDNN_MAX_CPU_ISA hides bf16 (child process)', () => {
    // through dist/ (built by \`npm test\`), as the CLI tests do
    const dist = path.resolve('dist/src');
    const code = `
      import { initBackend } from '${dist}/core/backend.js';
      import { setComputePrecision, computePrecision } from '${dist}/backends/precision.js';
      await initBackend('native', { quiet: true });
      const r = setComputePrecision('bf16');
      console.log(JSON.stringify({ ...r, now: computePrecision() }));`;
    const run = (env: Record<string, string>) => {
      const p = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', env: { ...process.env, ...env }, cwd: path.resolve('.') });
      expect(p.status, p.stderr).toBe(0);
      return JSON.parse(p.stdout.trim().split('\n').pop()!) as { precision: string; notice?: string; now: string };
    };
    const hidden = run({ ONEDNN_MAX_CPU_ISA: 'AVX512_CORE' });
    expect(hidden.precision).toBe('fp32');
    expect(hidden.now).toBe('fp32');
    expect(hidden.notice).toMatch(/unavailable: this CPU has no bf16 dot-product units for oneDNN \(ISA avx512_core;/);
    if (BF16) expect(run({}).precision).toBe('bf16');
  });
});

describe.runIf(BF16)('bf16 on the native backend', () => {
  beforeAll(async () => {
    await initBackend('native', { quiet: true });
  });
  afterAll(() => {
    setComputePrecision('fp32');
  });

  const BOTTLENECK: ResNetConfig = { block: 'bottleneck', layers: [1, 1, 1, 1], widths: [4, 8, 16, 32] };
  const BASIC: ResNetConfig = { block: 'basic', layers: [1, 1, 1, 1], widths: [4, 8, 16, 32] };
  const VIT: ViTConfig = { patch: 8, dim: 32, depth: 2, heads: 2, mlpRatio: 4, imgSize: 32 };

  /** Features of a fresh model (weights packed in the current precision) on the fixture's input. */
  async function features(make: () => ImageModel, file: string, family: KeyFamily, input: tf.Tensor4D): Promise<Float32Array> {
    const m = make();
    await loadCheckpoint(m, path.join(FIX, file), { family });
    const f = m.forwardFeatures(input);
    const out = f.dataSync() as Float32Array;
    f.dispose();
    m.dispose();
    return out;
  }

  const cases: [string, () => ImageModel, string, KeyFamily, string][] = [
    ['Bottleneck ResNet', () => new ResNet('f', BOTTLENECK, { numClasses: 10, seed: 1 }), 'resnet_bottleneck_tiny.pth', 'torchvision', 'resnet_bottleneck_tiny'],
    ['BasicBlock ResNet', () => new ResNet('f', BASIC, { numClasses: 10, seed: 1 }), 'resnet_basic_tiny.pth', 'torchvision', 'resnet_basic_tiny'],
    ['DINO ViT', () => new ViT('f', VIT, { numClasses: 0, seed: 1 }), 'vit_fixture.pth', 'dino', 'vit_fixture'],
  ];
  for (const [name, make, file, family, ref] of cases) {
    it(`${name}: bf16 features have cosine ≥ 0.999 to PyTorch's fp32 features, and differ from dcd's fp32 ones`, async () => {
      const refs = (await readSafetensors(path.join(FIX, `${ref}.ref.safetensors`))).tensors;
      const before = tf.memory().numTensors;
      const x = nhwc(refs.get(name === 'DINO ViT' ? 'input_32x32' : 'input')!);
      const want = refs.get(name === 'DINO ViT' ? 'features_32x32' : 'features')!.data as Float32Array;
      expect(setComputePrecision('fp32').precision).toBe('fp32');
      const f32 = await features(make, file, family, x);
      expect(setComputePrecision('bf16')).toEqual({ precision: 'bf16' });
      const bf = await features(make, file, family, x);
      setComputePrecision('fp32');
      const rows = x.shape[0];
      expect(minCosine(f32, want, rows)).toBeGreaterThanOrEqual(0.9999);
      const cos = minCosine(bf, want, rows);
      expect(cos).toBeGreaterThanOrEqual(0.999);
      if (process.env.DCD_BF16_VERBOSE === '1') console.log(`${name}: bf16 min cosine to PyTorch fp32 ${cos.toFixed(6)}, to dcd fp32 ${minCosine(bf, f32, rows).toFixed(6)}`);
      // bf16 really ran: 8-bit significands leave errors far above fp32's
      expect(maxAbsDiff(bf, f32)).toBeGreaterThan(1e-5 * Math.max(...want.map(Math.abs)));
      x.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('conv2d and matMul gradients in bf16 agree with fp32 within bf16 rounding', () => {
    const rnd = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + s) * 0.5);
    const x = tf.tensor4d(rnd(2 * 9 * 9 * 8, 1), [2, 9, 9, 8]);
    const w = tf.tensor4d(rnd(3 * 3 * 8 * 16, 2), [3, 3, 8, 16]);
    const a = tf.tensor2d(rnd(33 * 40, 3), [33, 40]);
    const b = tf.tensor2d(rnd(40 * 17, 4), [40, 17]);
    const run = () =>
      tf.tidy(() => {
        const g = tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, 1, 'same').square().sum());
        const h = tf.grads((aa: tf.Tensor, bb: tf.Tensor) => tf.matMul(aa as tf.Tensor2D, bb as tf.Tensor2D).square().sum());
        return [...g([x, w]), ...h([a, b]), tf.conv2d(x, w, 2, 'valid'), tf.matMul(a, b)].map((t) => t.dataSync() as Float32Array);
      });
    setComputePrecision('fp32');
    const ref = run();
    setComputePrecision('bf16');
    const got = run();
    setComputePrecision('fp32');
    for (let t = 0; t < ref.length; t++) {
      const scale = Math.max(...ref[t]!.map(Math.abs));
      const err = maxAbsDiff(got[t]!, ref[t]!);
      // two bf16 roundings per product (2⁻⁸ each) in a sum over ≤ 72·162 terms: a few % of the scale at worst
      expect(err, `output ${t}`).toBeLessThan(0.05 * scale);
      expect(err, `output ${t} ran in bf16`).toBeGreaterThan(1e-6 * scale);
      expect(minCosine(got[t]!, ref[t]!, 1)).toBeGreaterThan(0.999);
    }
    tf.dispose([x, w, a, b]);
  });
});
