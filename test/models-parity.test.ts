/**
 * Parity with PyTorch: checkpoints and reference features written by
 * scripts/parity/make_fixtures.py (torch 1.13, torchvision's ResNet, DINO's ViT), read by
 * dcd's own readers, on the cpu, wasm, (when built) native and (when Dawn finds an adapter, e.g.
 * SwiftShader from scripts/setup.sh) webgpu backends. Reads are asynchronous, as webgpu needs.
 * DCD_PARITY_FULL=1 also generates and checks full-size ResNet-50 / robust / ViT-S/16 (224 and 288) / ViT-S/8.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initBackend } from '../src/backends/chain.js';
import { registerNativeBackend } from '../src/backends/native.js';
import { loadWebgpuBackend } from '../src/backends/webgpu.js';
import { readSafetensors } from '../src/models/safetensors.js';
import { loadCheckpoint } from '../src/models/load.js';
import { ResNet, type ResNetConfig } from '../src/models/resnet.js';
import { ViT, type ViTConfig } from '../src/models/vit.js';
import type { ImageModel } from '../src/core/types.js';
import type { KeyFamily } from '../src/models/registry.js';

const FIX = path.resolve('test/fixtures/parity');
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** Cosine ≥ 0.9999 per row and max |err| ≤ 1e-3 · max |ref|. */
function expectParity(got: Float32Array, ref: Float32Array, rows: number, what: string): { cos: number; rel: number } {
  expect(got.length, what).toBe(ref.length);
  const d = ref.length / rows;
  let maxRef = 0;
  let maxErr = 0;
  let minCos = 1;
  for (let r = 0; r < rows; r++) {
    let dot = 0, na = 0, nb = 0;
    for (let i = r * d; i < (r + 1) * d; i++) {
      dot += got[i]! * ref[i]!;
      na += got[i]! ** 2;
      nb += ref[i]! ** 2;
      maxRef = Math.max(maxRef, Math.abs(ref[i]!));
      maxErr = Math.max(maxErr, Math.abs(got[i]! - ref[i]!));
    }
    minCos = Math.min(minCos, dot / Math.sqrt(na * nb));
  }
  expect(minCos, `${what}: cosine`).toBeGreaterThanOrEqual(0.9999);
  expect(maxErr, `${what}: max abs err (max |ref| ${maxRef})`).toBeLessThanOrEqual(1e-3 * maxRef);
  if (process.env.DCD_PARITY_FULL === '1') console.log(`${what}: min cosine ${minCos.toFixed(7)}, max abs err / max |ref| ${(maxErr / maxRef).toExponential(2)}`);
  return { cos: minCos, rel: maxErr / maxRef };
}

/** NCHW reference input → NHWC tensor. */
function nhwc(t: { shape: number[]; data: Float32Array | Int32Array | BigInt64Array }): tf.Tensor4D {
  return tf.tidy(() => tf.transpose(tf.tensor4d(t.data as Float32Array, t.shape as [number, number, number, number]), [0, 2, 3, 1]));
}

async function refOf(dir: string, name: string) {
  return (await readSafetensors(path.join(dir, `${name}.ref.safetensors`))).tensors;
}

async function checkResNet(dir: string, refName: string, file: string, cfg: ResNetConfig, family: KeyFamily, classes: number) {
  const ref = await refOf(dir, refName);
  const before = tf.memory().numTensors;
  const m: ImageModel = new ResNet('fixture', cfg, { numClasses: classes, seed: 1 });
  const r = await loadCheckpoint(m, path.join(dir, file), { family });
  expect(r.tensors).toBe(m.params().size + m.buffers().size);
  const x = nhwc(ref.get('input')!);
  const f = m.forwardFeatures(x);
  const l = m.forwardHead(f);
  const rows = x.shape[0];
  const pf = expectParity((await f.data()) as Float32Array, ref.get('features')!.data as Float32Array, rows, `${file} features`);
  expectParity((await l.data()) as Float32Array, ref.get('logits')!.data as Float32Array, rows, `${file} logits`);
  tf.dispose([x, f, l]);
  m.dispose();
  expect(tf.memory().numTensors).toBe(before);
  return pf;
}

async function checkViT(dir: string, refName: string, file: string, cfg: ViTConfig, sizes: [number, number][]) {
  const ref = await refOf(dir, refName);
  const before = tf.memory().numTensors;
  const m = new ViT('fixture', cfg, { numClasses: 0, seed: 1 });
  await loadCheckpoint(m, path.join(dir, file), { family: 'dino' });
  for (const [h, w] of sizes) {
    const x = nhwc(ref.get(`input_${h}x${w}`)!);
    const f = m.forwardFeatures(x);
    expect(f.shape).toEqual([x.shape[0], cfg.dim]);
    expectParity((await f.data()) as Float32Array, ref.get(`features_${h}x${w}`)!.data as Float32Array, x.shape[0], `${file} @${h}x${w}`);
    tf.dispose([x, f]);
  }
  m.dispose();
  expect(tf.memory().numTensors).toBe(before);
}

const BOTTLENECK: ResNetConfig = { block: 'bottleneck', layers: [1, 1, 1, 1], widths: [4, 8, 16, 32] };
const BASIC: ResNetConfig = { block: 'basic', layers: [1, 1, 1, 1], widths: [4, 8, 16, 32] };
const ROBUST: ResNetConfig = { ...BOTTLENECK, inputNormalize: { mean: MEAN, std: STD } };
const VIT: ViTConfig = { patch: 8, dim: 32, depth: 2, heads: 2, mlpRatio: 4, imgSize: 32 };

// native too where its addon is built (scripts/setup.sh installs oneDNN): its folded conv+BN,
// one-kernel LayerNorm and GELU are checked against PyTorch here.
// webgpu where Dawn finds an adapter (a software one too: CI runs SwiftShader, see test/webgpu-backend.test.ts).
const BACKENDS = ['cpu', 'wasm', ...(registerNativeBackend().ok ? ['native'] : []), ...((await loadWebgpuBackend({ allowSoftware: true })).ok ? ['webgpu'] : [])];
for (const backend of BACKENDS) {
  describe(`parity with PyTorch on ${backend}`, () => {
    beforeAll(async () => {
      await initBackend(backend, { quiet: true });
    });
    it('torchvision Bottleneck ResNet, zip checkpoint (torch ≥ 1.6)', async () => {
      await checkResNet(FIX, 'resnet_bottleneck_tiny', 'resnet_bottleneck_tiny.pth', BOTTLENECK, 'torchvision', 10);
    });
    it('torchvision Bottleneck ResNet, legacy checkpoint (torch < 1.6)', async () => {
      await checkResNet(FIX, 'resnet_bottleneck_tiny', 'resnet_bottleneck_tiny_legacy.pth', BOTTLENECK, 'torchvision', 10);
    });
    it('torchvision BasicBlock ResNet', async () => {
      await checkResNet(FIX, 'resnet_basic_tiny', 'resnet_basic_tiny.pth', BASIC, 'torchvision', 10);
    });
    it('MadryLab robust ResNet (legacy, model/attacker/normalizer keys, normalises inside)', async () => {
      await checkResNet(FIX, 'resnet_robust_tiny', 'resnet_robust_tiny_madry_legacy.pt', ROBUST, 'madrylab', 10);
    });
    it('DINO ViT, plain state dict, at the default size and at interpolated sizes (48², 32×48)', async () => {
      await checkViT(FIX, 'vit_fixture', 'vit_fixture.pth', VIT, [[32, 32], [48, 48], [32, 48]]);
    });
    it('DINO ViT, full checkpoint (teacher/student, module./backbone. prefixes, DINOHead)', async () => {
      await checkViT(FIX, 'vit_fixture', 'vit_fixture_full.pth', VIT, [[48, 48]]);
    });
  });
}

describe.runIf(process.env.DCD_PARITY_FULL === '1')('full-size parity (DCD_PARITY_FULL=1)', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'dcd-parity-'));
    execFileSync('/usr/bin/python3', ['scripts/parity/make_fixtures.py', dir], { stdio: 'inherit', env: { ...process.env, DCD_PARITY_FULL: '1' } });
    expect(existsSync(path.join(dir, 'full_resnet50.pth'))).toBe(true);
  }, 600_000);
  for (const backend of (process.env.DCD_PARITY_BACKENDS ?? 'wasm').split(',')) {
    it(`${backend}: resnet50, resnet50_robust, dino_vits16 (224, 288), dino_vits8`, async () => {
      await initBackend(backend, { quiet: true });
      const R50: ResNetConfig = { block: 'bottleneck', layers: [3, 4, 6, 3], widths: [64, 128, 256, 512] };
      await checkResNet(dir, 'full_resnet50', 'full_resnet50.pth', R50, 'torchvision', 1000);
      await checkResNet(dir, 'full_resnet50_robust', 'full_resnet50_robust_madry_legacy.pt', { ...R50, inputNormalize: { mean: MEAN, std: STD } }, 'madrylab', 1000);
      await checkViT(dir, 'full_dino_vits16', 'full_dino_vits16.pth', { patch: 16, dim: 384, depth: 12, heads: 6, mlpRatio: 4, imgSize: 224 }, [[224, 224], [288, 288]]);
      await checkViT(dir, 'full_dino_vits8', 'full_dino_vits8.pth', { patch: 8, dim: 384, depth: 12, heads: 6, mlpRatio: 4, imgSize: 224 }, [[224, 224]]);
    }, 1_200_000);
  }
});
