/**
 * Backbone throughput: img/s of forwardFeatures at batch 8 (224 px) and peak RSS, per
 * backbone and backend, next to PyTorch's img/s for the same model on this machine
 * (/usr/bin/python3, 2 threads), as a ratio. Each measurement runs in its own process,
 * so peak RSS is that model's.
 *
 *   node dist/bench/models.js [--backbones a,b] [--backends native,wasm] [--batch 8] [--iters 2] [--no-torch]
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import { createModel } from '../src/models/registry.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : def;
};

interface Result {
  imgPerSec: number;
  peakRssMB: number;
  batch: number;
}

async function worker(): Promise<void> {
  const backbone = opt('backbone', 'resnet50');
  const backend = opt('backend', 'wasm');
  let batch = Number(opt('batch', '8'));
  const iters = Number(opt('iters', '2'));
  await initBackend(backend, { quiet: true });
  const m = createModel(backbone, { numClasses: 0 });
  const run = (b: number) => {
    const x = tf.randomNormal([b, 224, 224, 3]) as tf.Tensor4D;
    const f = m.forwardFeatures(x);
    f.dataSync();
    tf.dispose([x, f]);
  };
  // Warm-up; halve the batch if the wasm heap cannot hold it.
  for (;;) {
    try {
      run(batch);
      break;
    } catch (e) {
      if (batch === 1) throw e;
      batch = Math.max(1, batch >> 1);
    }
  }
  const t = performance.now();
  for (let i = 0; i < iters; i++) run(batch);
  const s = (performance.now() - t) / 1000;
  const r: Result = { imgPerSec: (batch * iters) / s, peakRssMB: process.resourceUsage().maxRSS / 1024, batch };
  process.stdout.write(JSON.stringify(r) + '\n');
  m.dispose();
}

function torchRate(backbone: string, batch: number, iters: number): number | undefined {
  try {
    const out = execFileSync('/usr/bin/python3', [fileURLToPath(new URL('../../bench/models_torch.py', import.meta.url)), backbone, String(batch), String(iters)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return (JSON.parse(out.trim().split('\n').pop()!) as { img_per_s: number }).img_per_s;
  } catch {
    return undefined;
  }
}

async function driver(): Promise<void> {
  const backbones = opt('backbones', 'resnet50,resnet50_robust,dino_vits16,dino_vits8').split(',');
  // every backend this machine has, fastest first (one that cannot start prints its reason)
  const backends = opt('backends', 'native,wasm').split(',');
  const batch = opt('batch', '8');
  const iters = opt('iters', '2');
  const withTorch = !args.includes('--no-torch');
  console.log(`# dcd bench models: batch ${batch}, ${iters} timed batches after 1 warm-up, 224 px, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${new Date().toISOString()}`);
  console.log('| backbone | backend | batch | img/s | peak RSS (MB) | PyTorch img/s (2 threads) | tfjs / PyTorch |');
  console.log('|---|---|---|---|---|---|---|');
  const torchCache = new Map<string, number | undefined>();
  for (const b of backbones) {
    const arch = b.startsWith('resnet50') ? 'resnet50' : b;
    if (withTorch && !torchCache.has(arch)) torchCache.set(arch, torchRate(arch, Number(batch), Number(iters)));
    const pt = torchCache.get(arch);
    for (const be of backends) {
      let r: Result | undefined;
      let why = '';
      try {
        const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--worker', '--backbone', b, '--backend', be, '--batch', batch, '--iters', iters], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        r = JSON.parse(out.trim().split('\n').pop()!) as Result;
      } catch (e) {
        why = String((e as { stderr?: string }).stderr ?? e).split('\n').find((l) => l.includes('error')) ?? 'failed';
      }
      if (!r) console.log(`| ${b} | ${be} | - | ${why} | | ${pt?.toFixed(2) ?? '-'} | |`);
      else
        console.log(
          `| ${b} | ${be} | ${r.batch} | ${r.imgPerSec.toFixed(2)} | ${r.peakRssMB.toFixed(0)} | ${pt?.toFixed(2) ?? '-'} | ${pt ? (r.imgPerSec / pt).toFixed(2) : '-'} |`,
        );
    }
  }
}

if (args.includes('--worker')) await worker();
else await driver();
