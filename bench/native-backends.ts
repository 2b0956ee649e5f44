/**
 * Backend benchmark (issue 7): ResNet-50 forward, ViT-S/16 forward, ResNet-50 train step and
 * exact k-NN, on every requested tfjs backend and on PyTorch (bench/peers_torch.py) in one run.
 * Prints img/s (queries/s for k-NN, plus seconds) and each backend's ratio to each peer.
 *
 *   node dist/bench/native-backends.js                      # short default run (a few minutes)
 *   node dist/bench/native-backends.js --backends native,wasm,cpu --train-batch 32 --iters 3
 *   node dist/bench/native-backends.js --rows knn --knn-pool 100000 --no-peers
 *   node dist/bench/native-backends.js --backends native --rounds 2   # peers and dcd alternate first; best round each
 *   node dist/bench/native-backends.js --backends native --precision fp32,bf16   # native in fp32 and in bf16, side by side
 *   node dist/bench/native-backends.js --backends webgpu --train-backends webgpu --torch-device cuda --python python3   # on a GPU (scripts/gpu/run.sh)
 *
 * Defaults keep the run short: batch 8, training batch 8 on native only (wasm trains at
 * ~0.1 img/s; add it with --train-backends), k-NN 1k x 100k x 384, k = 50.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { backendSummary, initBackend } from '../src/backends/chain.js';
import { createModel } from '../src/models/registry.js';
import { knn } from '../src/retrieval/knn.js';
import { Sgd } from '../src/train/optimizer.js';
import { trainStep, type StepBatch } from '../src/train/supervised.js';
import { parsePrecision, setComputePrecision, type Precision } from '../src/backends/precision.js';

type Row = 'resnet50-fwd' | 'vit-fwd' | 'resnet50-train' | 'knn';
const ROWS: Row[] = ['resnet50-fwd', 'vit-fwd', 'resnet50-train', 'knn'];

interface Opts {
  backends: string[];
  trainBackends: string[];
  rows: Row[];
  batch: number;
  trainBatch: number;
  iters: number;
  knnQueries: number;
  knnPool: number;
  knnDim: number;
  knnK: number;
  peers: boolean;
  threads: number;
  rounds: number;
  /** Precisions the native backend runs in (each a separate row: `tfjs native`, `tfjs native bf16`). */
  precisions: Precision[];
  /** PyTorch's device for the peer (cpu, cuda) and the Python that has torch. */
  torchDevice: string;
  python: string;
}

function parseArgs(argv: string[]): Opts {
  const o: Opts = {
    backends: ['native', 'wasm'], trainBackends: ['native'], rows: ROWS, batch: 8, trainBatch: 8, iters: 2,
    knnQueries: 1000, knnPool: 100_000, knnDim: 384, knnK: 50, peers: true, threads: 2, rounds: 1, precisions: ['fp32'],
    torchDevice: 'cpu', python: process.env.DCD_PYTHON ?? '/usr/bin/python3',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    const num = () => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${a}: expected a positive integer, received "${v}"`);
      i++;
      return n;
    };
    switch (a) {
      case '--backends': o.backends = v.split(','); i++; break;
      case '--train-backends': o.trainBackends = v.split(','); i++; break;
      case '--rows': {
        const rows = v.split(',');
        for (const r of rows) if (!ROWS.includes(r as Row)) throw new Error(`--rows: unknown row "${r}"; expected ${ROWS.join(', ')}`);
        o.rows = rows as Row[];
        i++;
        break;
      }
      case '--batch': o.batch = num(); break;
      case '--train-batch': o.trainBatch = num(); break;
      case '--iters': o.iters = num(); break;
      case '--knn-queries': o.knnQueries = num(); break;
      case '--knn-pool': o.knnPool = num(); break;
      case '--knn-dim': o.knnDim = num(); break;
      case '--knn-k': o.knnK = num(); break;
      case '--threads': o.threads = num(); break;
      case '--rounds': o.rounds = num(); break;
      case '--no-peers': o.peers = false; break;
      case '--torch-device': o.torchDevice = v!; i++; break;
      case '--python': o.python = v!; i++; break;
      case '--precision': o.precisions = v!.split(',').map((p) => parsePrecision(p, '--precision')); i++; break;
      default: throw new Error(`unknown option ${a}; see the header of bench/native-backends.ts`);
    }
  }
  return o;
}

/** Best wall time of `iters` runs after one warm-up, in seconds. */
async function bestOf(iters: number, fn: () => Promise<void> | void): Promise<number> {
  await fn();
  let best = Infinity;
  for (let i = 0; i < iters; i++) {
    const t = performance.now();
    await fn();
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  return best;
}

function randn(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) / 16777216 - 0.5;
  }
  return out;
}

interface Result { row: Row; who: string; seconds: number; items: number }

async function runTfjs(backend: string, o: Opts, precision: Precision = 'fp32'): Promise<Result[]> {
  const out: Result[] = [];
  await initBackend(backend, { quiet: true });
  if (backend === 'webgpu') console.log(`  ${backendSummary()}`); // which adapter: a GPU, or a software device
  // models are created after this, so their packed weights are in this precision
  const p = setComputePrecision(precision);
  if (p.notice) throw new Error(p.notice);
  const who = `tfjs ${backend}${precision === 'bf16' ? ' bf16' : ''}`;
  const rec = (row: Row, seconds: number, items: number) => {
    out.push({ row, who, seconds, items });
    console.log(`  ${who.padEnd(17)} ${row.padEnd(15)} ${(items / seconds).toFixed(2).padStart(8)} /s  (${seconds.toFixed(2)} s / iter)`);
  };
  for (const [row, name] of [['resnet50-fwd', 'resnet50'], ['vit-fwd', 'dino_vits16']] as const) {
    if (!o.rows.includes(row)) continue;
    const m = createModel(name, { numClasses: 0 });
    const x = tf.tensor4d(randn(o.batch * 224 * 224 * 3, 1), [o.batch, 224, 224, 3]);
    rec(row, await bestOf(o.iters, async () => {
      const y = tf.tidy(() => m.forwardFeatures(x, false));
      await y.data();
      y.dispose();
    }), o.batch);
    x.dispose();
    m.dispose();
  }
  if (o.rows.includes('resnet50-train') && o.trainBackends.includes(backend)) {
    // dcd's own training step (src/train/trainer.ts): cross-entropy, backward, SGD with momentum 0.9
    const m = createModel('resnet50', { numClasses: 1000 });
    const B = o.trainBatch;
    const batch: StepBatch = {
      x: randn(B * 224 * 224 * 3, 2), labels: Int32Array.from({ length: B }, (_, i) => (i * 37) % 1000),
      weights: new Float32Array(B).fill(1), imageShape: [224, 224, 3], lr: 0.01,
    };
    const opt = new Sgd({ momentum: 0.9, nesterov: false, weightDecay: 0 });
    rec("resnet50-train", await bestOf(Math.max(1, o.iters - 1), async () => void (await trainStep(m, opt, batch))), B);
    opt.dispose();
    m.dispose();
  }
  if (o.rows.includes('knn')) {
    const q = randn(o.knnQueries * o.knnDim, 3), pool = randn(o.knnPool * o.knnDim, 4);
    rec('knn', await bestOf(Math.max(1, o.iters - 1), () => void knn(q, o.knnDim, pool, o.knnK, { precision })), o.knnQueries);
  }
  setComputePrecision('fp32');
  return out;
}

function runTorch(o: Opts): { who: string; results: Result[] } | { why: string } {
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'peers_torch.py');
  const args = [
    script, '--json', '--rows', o.rows.join(','), '--batch', String(o.batch), '--train-batch', String(o.trainBatch),
    '--iters', String(o.iters), '--knn-queries', String(o.knnQueries), '--knn-pool', String(o.knnPool),
    '--knn-dim', String(o.knnDim), '--knn-k', String(o.knnK), '--threads', String(o.threads), '--device', o.torchDevice,
  ];
  const r = spawnSync(o.python, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) return { why: `PyTorch peer failed: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}` };
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as { peer: string; results: Omit<Result, 'who'>[] };
  return { who: j.peer, results: j.results.map((x) => ({ ...x, who: j.peer })) };
}

interface Ort {
  InferenceSession: { create(path: string, o: object): Promise<{ run(feeds: object): Promise<Record<string, { data: unknown }>>; release(): Promise<void> }> };
  Tensor: new (type: 'float32', data: Float32Array, dims: number[]) => object;
}

/**
 * onnxruntime-node peer: the package from `DCD_ORT_NODE` (a path to its folder) or from
 * node_modules; models exported by bench/peers_export_onnx.py into bench/out/onnx.
 */
async function runOrt(o: Opts): Promise<{ who: string; results: Result[] } | { why: string }> {
  const req = createRequire(import.meta.url);
  let ort: Ort;
  try {
    ort = req(process.env.DCD_ORT_NODE ?? 'onnxruntime-node') as Ort;
  } catch (e) {
    return { why: `onnxruntime-node not installed (set DCD_ORT_NODE to its folder): ${(e as Error).message.split('\n')[0]}` };
  }
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const dir = join(root, 'bench', 'out', 'onnx');
  if (!existsSync(join(dir, 'vit_s16.onnx'))) {
    const r = spawnSync('/usr/bin/python3', [join(root, 'bench', 'peers_export_onnx.py'), dir], { encoding: 'utf8' });
    if (r.status !== 0) return { why: `ONNX export failed: ${(r.stderr ?? '').trim().split('\n').pop()}` };
  }
  const results: Result[] = [];
  const who = `onnxruntime-node (${o.threads} threads)`;
  for (const [row, file] of [['resnet50-fwd', 'resnet50.onnx'], ['vit-fwd', 'vit_s16.onnx']] as const) {
    if (!o.rows.includes(row)) continue;
    const s = await ort.InferenceSession.create(join(dir, file), {
      intraOpNumThreads: o.threads, interOpNumThreads: 1, executionProviders: ['cpu'], graphOptimizationLevel: 'all',
    });
    const x = new ort.Tensor('float32', randn(o.batch * 3 * 224 * 224, 1), [o.batch, 3, 224, 224]);
    const seconds = await bestOf(o.iters, async () => void (await s.run({ x })));
    results.push({ row, who, seconds, items: o.batch });
    await s.release();
  }
  return { who, results };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  process.env.DCD_NATIVE_THREADS ??= String(o.threads);
  console.log(`dcd backend benchmark  ${new Date().toISOString()}  batch ${o.batch}, train batch ${o.trainBatch}, ` +
    `k-NN ${o.knnQueries}x${o.knnPool}x${o.knnDim} k=${o.knnK}, best of ${o.iters}`);
  const results: Result[] = [];
  const peers = new Set<string>();
  const show = (x: Result) => console.log(`  ${x.row.padEnd(15)} ${(x.items / x.seconds).toFixed(2).padStart(8)} /s  (${x.seconds.toFixed(2)} s / iter)`);
  const runPeers = async () => {
    if (!o.peers) return;
    console.log(`peer: PyTorch (${o.python}, ${o.torchDevice}) ...`);
    const t = runTorch(o);
    if ('why' in t) console.log(`  skipped: ${t.why}`);
    else {
      peers.add(t.who);
      results.push(...t.results);
      t.results.forEach(show);
    }
    console.log('peer: onnxruntime-node ...');
    const r = await runOrt(o);
    if ('why' in r) console.log(`  skipped: ${r.why}`);
    else {
      peers.add(r.who);
      results.push(...r.results);
      r.results.forEach(show);
    }
  };
  const runOurs = async () => {
    for (const b of o.backends)
      for (const p of b === 'native' ? o.precisions : ['fp32' as const]) {
        console.log(`tfjs ${b}${p === 'bf16' ? ' bf16' : ''} ...`);
        try {
          results.push(...(await runTfjs(b, o, p)));
        } catch (e) {
          console.log(`  skipped: ${(e as Error).message.split('\n')[0]}`);
        }
      }
  };
  // The machine's speed drifts between minutes: with --rounds N the peers and dcd take turns
  // going first, and the summary keeps each one's best round.
  for (let round = 0; round < o.rounds; round++) {
    if (o.rounds > 1) console.log(`round ${round + 1} of ${o.rounds} (${round % 2 ? 'tfjs first' : 'peers first'}), ${new Date().toISOString()}`);
    if (round % 2) {
      await runOurs();
      await runPeers();
    } else {
      await runPeers();
      await runOurs();
    }
  }
  const best = new Map<string, Result>();
  for (const r of results) {
    const k = `${r.row}|${r.who}`;
    const b = best.get(k);
    if (!b || r.seconds / r.items < b.seconds / b.items) best.set(k, r);
  }
  const final = [...best.values()];
  console.log(`\nsummary (per second: images, or queries for knn; ratio = tfjs / peer, >1 is faster${o.rounds > 1 ? `; best of ${o.rounds} rounds` : ''})`);
  for (const row of o.rows) {
    const peerRows = final.filter((r) => r.row === row && peers.has(r.who));
    for (const r of final.filter((x) => x.row === row && !peers.has(x.who))) {
      const ratios = peerRows.map((p) => `${(p.seconds / r.seconds * (r.items / p.items)).toFixed(2)}x ${p.who.split(' ')[0]}`);
      console.log(`  ${row.padEnd(15)} ${r.who.padEnd(17)} ${(r.items / r.seconds).toFixed(2).padStart(8)} /s  ${r.seconds.toFixed(2).padStart(7)} s  ${ratios.join('  ')}`);
    }
    for (const p of peerRows) console.log(`  ${row.padEnd(15)} ${p.who.split(' ')[0].padEnd(17)} ${(p.items / p.seconds).toFixed(2).padStart(8)} /s  ${p.seconds.toFixed(2).padStart(7)} s`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
