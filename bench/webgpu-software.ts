/**
 * The webgpu backend on a software adapter (SwiftShader): CPU time of a small-CNN training step
 * (demo-flat's original model: small_cnn 8-16-32, 16×16 images, batch 64, dcd's `trainStep`) with
 * what dcd sets up on a software adapter (src/backends/webgpu.ts), against
 *   - tfjs's own tiled BatchMatMul instead of dcd's plain-loop kernel (same process, steps
 *     alternating, so both see the same load), and
 *   - Dawn's default toggles (a child process with DCD_DAWN_FLAGS naming the toggles off, which
 *     also leaves dcd's defaults out), run before and after this process's steps,
 * as ratios. CPU time (process.cpuUsage, SwiftShader's threads included) is the measure: on a
 * shared machine the wall time says mostly how much CPU the process was given.
 *
 *   node dist/bench/webgpu-software.js [--steps 3]
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { initBackend, backendSummary } from '../src/backends/chain.js';
import { createSmallCnn } from '../src/models/small-cnn.js';
import { Sgd } from '../src/train/optimizer.js';
import { trainStep, type StepBatch } from '../src/train/supervised.js';

const args = process.argv.slice(2);
const steps = Number(args[args.indexOf('--steps') + 1] ?? 3) || 3;
const DAWN_DEFAULTS = 'disable-dawn-features=disable_robustness,disable_workgroup_init';

/** CPU ms and wall ms of one step, per kernel variant, over `steps` alternating rounds. */
async function measure(variants: Record<string, tf.KernelConfig | undefined>): Promise<Record<string, { cpu: number; wall: number; loss: number }>> {
  const B = 64;
  const S = 16;
  const model = createSmallCnn({ numClasses: 6, widths: [8, 16, 32] });
  const sgd = new Sgd({ momentum: 0.9, nesterov: false, weightDecay: 1e-4 });
  const b: StepBatch = {
    x: Float32Array.from({ length: B * S * S * 3 }, (_, i) => 0.5 + 0.5 * Math.sin(i * 0.013)),
    labels: Int32Array.from({ length: B }, (_, i) => i % 6),
    weights: new Float32Array(B).fill(1),
    imageShape: [S, S, 3],
    lr: 0.01,
  };
  const use = (k: tf.KernelConfig | undefined) => {
    if (k == null) return;
    tf.unregisterKernel(tf.BatchMatMul, 'webgpu');
    tf.registerKernel(k);
  };
  const out: Record<string, { cpu: number; wall: number; loss: number }> = {};
  for (const k of Object.values(variants)) {
    use(k);
    await trainStep(model, sgd, b); // shaders compiled outside the timing
  }
  for (let r = 0; r < steps; r++)
    for (const [name, k] of Object.entries(variants)) {
      use(k);
      const t = performance.now();
      const c = process.cpuUsage();
      const { loss } = await trainStep(model, sgd, b);
      const cu = process.cpuUsage(c);
      const o = (out[name] ??= { cpu: 0, wall: 0, loss });
      o.cpu += (cu.user + cu.system) / 1000 / steps;
      o.wall += (performance.now() - t) / steps;
    }
  return out;
}

// tfjs's own kernel, taken before dcd's set-up replaces it
await import('@tensorflow/tfjs-backend-webgpu' as string);
const tfjsMatMul = tf.getKernel(tf.BatchMatMul, 'webgpu');
await initBackend('webgpu', { quiet: true });
if (process.env.DCD_BENCH_CHILD === '1') {
  console.log(JSON.stringify((await measure({ tfjsMatMul })).tfjsMatMul));
  process.exit(0);
}
console.log(`webgpu on a software adapter: small_cnn 8-16-32 train step, 16 px, batch 64; ${backendSummary()}; ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}`);
const child = () =>
  JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--steps', String(steps)], { env: { ...process.env, DCD_BENCH_CHILD: '1', DCD_DAWN_FLAGS: DAWN_DEFAULTS }, encoding: 'utf8' }).trim().split('\n').pop()!) as {
    cpu: number;
    wall: number;
  };
const before = child();
const here = await measure({ dcd: tf.getKernel(tf.BatchMatMul, 'webgpu'), tfjsMatMul });
const after = child();
const dawnDefaults = { cpu: (before.cpu + after.cpu) / 2, wall: (before.wall + after.wall) / 2 };
const row = (name: string, m: { cpu: number; wall: number }) => console.log(`| ${name} | ${m.cpu.toFixed(0)} | ${(64_000 / m.cpu).toFixed(1)} | ${m.wall.toFixed(0)} | ${(dawnDefaults.cpu / m.cpu).toFixed(2)} |`);
console.log('| set-up | CPU ms/step | img per CPU-s | wall ms/step | CPU ratio to Dawn defaults + tfjs matmul |\n|---|---:|---:|---:|---:|');
row("Dawn's default toggles, tfjs's matmul (child processes)", dawnDefaults);
row("dcd's toggles, tfjs's tiled matmul", here.tfjsMatMul!);
row("dcd's toggles and plain-loop matmul (what dcd runs)", here.dcd!);
console.log(`plain-loop matmul vs tfjs's, same process: ${(here.tfjsMatMul!.cpu / here.dcd!.cpu).toFixed(2)}× less CPU; load now ${os.loadavg()[0]!.toFixed(1)}`);
process.exit(0);
