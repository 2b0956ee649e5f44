/**
 * The webgpu backend (src/backends/webgpu.ts): how the chain chooses it (a hardware adapter
 * automatically, a software one only by name), the start-up line naming the adapter, the error
 * for a buffer over the adapter's limits, the error for a synchronous read, and no leaked tensors
 * through a forward/backward pass, DCD_DAWN_FLAGS, and the plain-loop matmul a software adapter
 * runs (src/backends/webgpu-kernels.ts) against the cpu backend. Runs on a real adapter where Dawn finds one; on CI that is
 * SwiftShader, the software Vulkan device scripts/setup.sh installs (chromium + libvulkan1).
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { initBackend, backendSummary } from '../src/backends/chain.js';
import { checkBufferFits, dawnFlagsFromEnv, describeAdapter, loadWebgpuBackend, SOFTWARE_VULKAN_ICDS, summariseAdapter, webgpuAdapter } from '../src/backends/webgpu.js';
import { ConfigError } from '../src/core/errors.js';
import { spawnAsync } from './spawn-async.js';

const ROOT = path.resolve(__dirname, '..');
const SWIFTSHADER = SOFTWARE_VULKAN_ICDS.find((p) => existsSync(p));
const LIMITS = { maxStorageBufferBindingSize: 2 ** 27, maxBufferSize: 2 ** 30 };

describe('adapter description and limits', () => {
  it('tells software adapters from hardware ones and names them in one phrase', () => {
    const ss = summariseAdapter({ vendor: 'google', architecture: 'swiftshader', device: 'swiftshader-device-subzero-', description: 'SwiftShader driver 5.0.0', isFallbackAdapter: true }, LIMITS);
    expect(ss.software).toBe(true);
    expect(describeAdapter(ss)).toBe('SwiftShader driver 5.0.0 (google swiftshader, software)');
    // Mesa's llvmpipe reports no fallback flag: known by name
    expect(summariseAdapter({ vendor: 'mesa', architecture: '', device: 'llvmpipe (LLVM 15.0.6, 256 bits)', description: '' }, LIMITS).software).toBe(true);
    const nv = summariseAdapter({ vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H100 80GB HBM3', isFallbackAdapter: false }, LIMITS);
    expect(nv.software).toBe(false);
    expect(describeAdapter(nv)).toBe('NVIDIA H100 80GB HBM3 (nvidia hopper)');
  });

  it('a buffer over the limit is a ConfigError naming the limit, the sizes and --batch-size', () => {
    const a = { ...LIMITS, description: 'Test GPU' };
    expect(() => checkBufferFits(2 ** 27, true, a)).not.toThrow();
    expect(() => checkBufferFits(2 ** 27 + 4, true, a)).toThrow(ConfigError);
    expect(() => checkBufferFits(2 ** 27 + 4, true, a, 'conv1 output')).toThrow(
      /conv1 output needs a buffer of 134217732 bytes \(128\.0 MiB\), over the adapter's maxStorageBufferBindingSize of 134217728 bytes \(128\.0 MiB\) on Test GPU: lower --batch-size/,
    );
    // a buffer not bound as storage (a staging copy) is held to maxBufferSize
    expect(() => checkBufferFits(2 ** 29, false, a)).not.toThrow();
    expect(() => checkBufferFits(2 ** 30 + 4, false, a)).toThrow(/maxBufferSize of 1073741824 bytes/);
  });
});

describe('DCD_DAWN_FLAGS', () => {
  it('splits flags on semicolons, so that a flag keeps its own comma-separated list', () => {
    expect(dawnFlagsFromEnv(undefined)).toEqual([]);
    expect(dawnFlagsFromEnv('')).toEqual([]);
    expect(dawnFlagsFromEnv('enable-dawn-features=disable_robustness,skip_validation; backend=vulkan;')).toEqual([
      'enable-dawn-features=disable_robustness,skip_validation',
      'backend=vulkan',
    ]);
  });
});

/** Runs `code` (an ES module body with `m` = the built chain module) in a fresh Node process. */
async function inFreshNode(code: string, env: Record<string, string | undefined>) {
  const script = `const m = await import(${JSON.stringify(path.join(ROOT, 'dist/src/backends/chain.js'))});\n${code}\nprocess.exit(0);`;
  const r = await spawnAsync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, env: { ...process.env, DCD_BACKEND: undefined, ...env }, timeout: 110_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

describe.runIf(SWIFTSHADER != null && existsSync(path.join(ROOT, 'dist/src/backends/chain.js')))('choosing webgpu (software device: SwiftShader)', () => {
  it('auto skips a software adapter and says why; --backend webgpu takes it and names it', async () => {
    const auto = await inFreshNode("await m.initBackend(undefined, { quiet: true }); console.log('LINE', m.backendSummary());", { VK_ICD_FILENAMES: SWIFTSHADER });
    expect(auto.code, auto.out).toBe(0);
    expect(auto.out).toMatch(/LINE backend (native|wasm) \(skipped .*webgpu: only a software adapter, SwiftShader driver [\d.]+ \(google swiftshader, software\); it is used only with --backend webgpu/);
    // by name, with no VK_ICD_FILENAMES: dcd finds the SwiftShader ICD itself
    const named = await inFreshNode("await m.initBackend('webgpu', { quiet: true }); console.log('LINE', m.backendSummary());", { VK_ICD_FILENAMES: undefined });
    expect(named.code, named.out).toBe(0);
    expect(named.out).toMatch(/LINE backend webgpu on SwiftShader driver [\d.]+ \(google swiftshader, software\)/);
    expect(named.out).not.toMatch(/vkCreateInstance/); // no Dawn warnings on the way
  });
});

// CI installs the software device: there, webgpu must come up (a missing libvulkan1 fails here, not silently).
const WEBGPU = SWIFTSHADER != null || (await loadWebgpuBackend({ allowSoftware: true })).ok;
describe.runIf(WEBGPU)('on the webgpu backend', () => {
  afterAll(async () => {
    await initBackend(process.env.DCD_TEST_BACKEND ?? 'wasm', { quiet: true });
  });

  it('comes up and names its adapter', async () => {
    expect(await initBackend('webgpu', { quiet: true })).toBe('webgpu');
    expect(tf.getBackend()).toBe('webgpu');
    expect(backendSummary()).toMatch(/^backend webgpu on \S/);
  });

  it('a conv/BN/ReLU/pool forward and backward matches cpu and leaks no tensor', async () => {
    const x0 = Array.from({ length: 2 * 8 * 8 * 3 }, (_, i) => Math.sin(i * 0.37));
    const w0 = Array.from({ length: 3 * 3 * 3 * 4 }, (_, i) => Math.cos(i * 0.11));
    const run = async () => {
      const before = tf.memory().numTensors;
      const x = tf.tensor4d(x0, [2, 8, 8, 3]);
      const wInit = tf.tensor4d(w0, [3, 3, 3, 4]);
      const w = tf.variable(wInit);
      wInit.dispose();
      const { value, grads } = tf.variableGrads(() => {
        const y = tf.relu(tf.batchNorm(tf.conv2d(x, w as tf.Tensor4D, 1, 'same'), tf.fill([4], 0.1), tf.fill([4], 1.2), tf.fill([4], 0.2), tf.fill([4], 0.9)));
        return tf.sum(tf.square(tf.maxPool(y, 2, 2, 'valid')));
      }, [w]);
      const out = { loss: (await value.data())[0]!, grad: Array.from(await grads[w.name]!.data()) };
      tf.dispose([x, w, value, ...Object.values(grads)]);
      expect(tf.memory().numTensors).toBe(before);
      return out;
    };
    await initBackend('webgpu', { quiet: true });
    const gpu = await run();
    await initBackend('cpu', { quiet: true });
    const cpu = await run();
    await initBackend('webgpu', { quiet: true });
    expect(gpu.loss).toBeCloseTo(cpu.loss, 2);
    gpu.grad.forEach((g, i) => expect(g).toBeCloseTo(cpu.grad[i]!, 2));
  });

  it('a tensor over the adapter limits fails with the limit and --batch-size, and the device stays usable', async () => {
    await initBackend('webgpu', { quiet: true });
    const before = tf.memory().numTensors;
    const big = tf.zeros([1]); // a small tensor first: the backend keeps working after the error
    // 2^30 + 2^20 float32 values: 4 GiB + 4 MiB, over every adapter's maxBufferSize up to 4 GiB
    expect(() => tf.tidy(() => tf.fill([2 ** 30 + 2 ** 20], 1).add(1))).toThrow(/over the adapter's max(Storage)?Buffer(BindingSize)?(Size)? of \d+ bytes .*lower --batch-size/);
    const after = big.add(2);
    expect(Array.from(await after.data())).toEqual([2]);
    tf.dispose([big, after]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a synchronous read says to read asynchronously', async () => {
    await initBackend('webgpu', { quiet: true });
    const t = tf.tidy(() => tf.ones([4, 4]).matMul(tf.ones([4, 4])));
    expect(() => t.dataSync()).toThrow(/synchronous read \(dataSync\/arraySync\).*await tensor\.data\(\)/);
    expect(Array.from(await t.data())).toEqual(new Array(16).fill(4));
    t.dispose();
  });
  it('BatchMatMul on a software adapter is the plain-loop kernel and matches cpu (transposes, broadcast batch, long sums)', async () => {
    await initBackend('webgpu', { quiet: true });
    const kernel = tf.getKernel(tf.BatchMatMul, 'webgpu') as tf.KernelConfig & { dcd?: boolean };
    expect(kernel.dcd === true).toBe(webgpuAdapter()!.software); // tfjs's tiled kernel stays on a GPU
    const fill = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * k + 0.3));
    const cases: { a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
      { a: [37, 27], b: [27, 8], ta: false, tb: false },
      { a: [27, 37], b: [27, 8], ta: true, tb: false }, // a weight gradient: xᵀ · dy
      { a: [37, 8], b: [27, 8], ta: false, tb: true }, // an input gradient: dy · wᵀ
      { a: [27, 37], b: [8, 27], ta: true, tb: true },
      { a: [3, 5, 7], b: [1, 7, 4], ta: false, tb: false }, // b broadcast over the batch
      { a: [1, 7, 5], b: [3, 7, 4], ta: true, tb: false }, // a broadcast over the batch
      { a: [2, 3, 5, 7], b: [2, 3, 7, 4], ta: false, tb: false }, // two batch dimensions
      { a: [2000, 3], b: [2000, 5], ta: true, tb: false }, // a long inner sum (batch rows)
    ];
    const products = async () => {
      const out: Float32Array[] = [];
      for (const c of cases) {
        const y = tf.tidy(() => tf.matMul(tf.tensor(fill(c.a.reduce((p, q) => p * q), 0.37), c.a), tf.tensor(fill(c.b.reduce((p, q) => p * q), 0.11), c.b), c.ta, c.tb));
        out.push((await y.data()) as Float32Array);
        y.dispose();
      }
      return out;
    };
    const before = tf.memory().numTensors;
    const gpu = await products();
    expect(tf.memory().numTensors).toBe(before);
    // int32 operands go to tfjs's kernel
    const ints = tf.tidy(() => tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32'), tf.tensor2d([5, 6, 7, 8], [2, 2], 'int32')));
    expect(Array.from(await ints.data())).toEqual([19, 22, 43, 50]);
    ints.dispose();
    await initBackend('cpu', { quiet: true });
    const cpu = await products();
    await initBackend('webgpu', { quiet: true });
    cases.forEach((c, i) => {
      expect(gpu[i]!.length, JSON.stringify(c)).toBe(cpu[i]!.length);
      const scale = Math.max(1, ...cpu[i]!.map(Math.abs));
      gpu[i]!.forEach((v, j) => expect(Math.abs(v - cpu[i]![j]!), `${JSON.stringify(c)} [${j}]`).toBeLessThanOrEqual(1e-5 * scale));
    });
  });
});
