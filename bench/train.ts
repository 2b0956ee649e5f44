/**
 * Training throughput: img/s of one optimiser step (forward + backward in BN train
 * mode + SGD Nesterov update, through src/train's `trainStep`) for the small demo
 * ResNet and ResNet-50, against PyTorch on this machine (/usr/bin/python3, 2 threads,
 * bench/train_torch.py) as a ratio.
 *
 *   node dist/bench/train.js [--backend auto|native|wasm] [--steps 2] [--full] [--no-torch]
 *
 * Default cases: the demo's small CNN (widths 16-32-64) at 16 px (its fine-tunes) and 32 px (its
 * SimCLR views), batch 64, on the native backend also with its 3×3 patches composed of pad, slices
 * and concat (the form before the one-kernel patches; same bits, see test/native.test.ts);
 * resnet_tiny 32 px and 64 px (batch 32), resnet50 64 px (batch 8, micro-batch 4: gradient accumulation). `--full` adds resnet50 224 px: batch 2 on wasm
 * (its heap; minutes per step), batch 32 on other backends.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { createModel } from '../src/models/registry.js';
import { Sgd } from '../src/train/optimizer.js';
import { trainStep } from '../src/train/supervised.js';
import { IM2COL_KERNEL } from '../src/backends/kernel-names.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : def;
};

interface Case {
  model: string;
  size: number;
  batch: number;
  micro?: number;
  /** native only: run the small CNN with its patches composed (pad + slices + concat) */
  composed?: boolean;
}

async function measure(c: Case, steps: number): Promise<number> {
  const kernel = c.composed ? tf.getKernel(IM2COL_KERNEL, tf.getBackend()) : undefined;
  if (kernel) tf.unregisterKernel(IM2COL_KERNEL, tf.getBackend());
  try {
    return await measureWith(c, steps);
  } finally {
    if (kernel) tf.registerKernel(kernel);
  }
}

async function measureWith(c: Case, steps: number): Promise<number> {
  const classes = c.model === 'resnet50' ? 1000 : c.model.startsWith('small_cnn') ? 6 : 10;
  const model = createModel(c.model, { numClasses: classes, seed: 0 });
  const sgd = new Sgd({ momentum: 0.9, nesterov: true, weightDecay: 1e-4 });
  const x = Float32Array.from({ length: c.batch * c.size * c.size * 3 }, (_, i) => Math.sin(i * 0.013));
  const labels = Int32Array.from({ length: c.batch }, (_, i) => (i * 7) % classes);
  const weights = new Float32Array(c.batch).fill(1);
  const batch = { x, labels, weights, imageShape: [c.size, c.size, 3] as const, lr: 0.01, ...(c.micro ? { microBatch: c.micro } : {}) };
  await trainStep(model, sgd, batch); // warm-up (kernel set-up, momentum slots)
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) await trainStep(model, sgd, batch);
  const secs = (performance.now() - t0) / 1000;
  sgd.dispose();
  model.dispose();
  return (c.batch * steps) / secs;
}

function torchRate(c: Case, steps: number): number | undefined {
  try {
    const script = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'train_torch.py');
    const out = execFileSync('/usr/bin/python3', [script, c.model.split(':')[0]!, String(c.size), String(c.batch), String(steps), '2'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return JSON.parse(out.trim().split('\n').pop()!).img_per_s as number;
  } catch (e) {
    process.stderr.write(`PyTorch reference failed for ${c.model} ${c.size}px: ${(e as Error).message.split('\n')[0]}\n`);
    return undefined;
  }
}

async function main(): Promise<void> {
  const backend = await initBackend(opt('backend', process.env.DCD_BACKEND ?? 'auto'));
  const steps = Number(opt('steps', '2'));
  const small = 'small_cnn:16-32-64';
  const cases: Case[] = [
    ...[16, 32].flatMap((size) => [
      { model: small, size, batch: 64 },
      ...(backend === 'native' ? [{ model: small, size, batch: 64, composed: true }] : []),
    ]),
    { model: 'resnet_tiny', size: 32, batch: 32 },
    { model: 'resnet_tiny', size: 64, batch: 32 },
    { model: 'resnet50', size: 64, batch: 8, micro: 4 },
  ];
  if (args.includes('--full')) cases.push({ model: 'resnet50', size: 224, batch: backend === 'wasm' ? 2 : 32 });
  const rows: string[] = [];
  for (const c of cases) {
    // the small CNN's steps take milliseconds: ten times as many of them
    const n = c.model.startsWith('small_cnn') ? steps * 10 : steps;
    const ours = await measure(c, c.model === 'resnet50' && c.size === 224 && backend === 'wasm' ? 1 : n);
    const torch = args.includes('--no-torch') ? undefined : torchRate(c, n);
    const line = `| ${c.model}${c.composed ? ' (patches composed)' : ''} | ${c.size} | ${c.batch}${c.micro ? ` (micro ${c.micro})` : ''} | ${ours.toFixed(2)} | ${torch?.toFixed(2) ?? 'n/a'} | ${torch ? (ours / torch).toFixed(3) : 'n/a'} |`;
    process.stdout.write(line + '\n');
    rows.push(line);
  }
  process.stdout.write(
    `\nTraining img/s, ${backend} vs PyTorch ${'(2 threads)'}; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${new Date().toISOString().slice(0, 10)}\n\n| model | px | batch | dcd (${backend}) img/s | PyTorch img/s | ratio |\n|---|---|---|---|---|---|\n${rows.join('\n')}\n`,
  );
  tf.disposeVariables();
}

void main();
