/**
 * Benchmark of the retrieval area at the paper's scale, on synthetic vectors: time and
 * peak RSS of exact k-NN (1,000 queries × N × 384, k = 50, the kernel alone), of
 * Algorithm 1 (1,031 seeds over 160 classes against an N × 384 pool, k = 46) and of the
 * leakage filter (a test union of T × 2048 against a P × 2048 pool), each beside a
 * PyTorch brute-force run of the same distance/top-k work (bench/retrieval_torch.py,
 * /usr/bin/python3, 2 threads) as the reference ratio.
 *
 *     npx tsc -p tsconfig.json && node dist/bench/retrieval.js [--preset small|paper]
 *       [--knn-pools 100000] [--select-pools 100000,1000000] [--filter-test 70000]
 *       [--filter-pools 2000,100000] [--budget 2048] [--no-torch] [--backend auto|native|wasm]
 *       [--skip knn,select,filter] [--workdir DIR] [--out FILE.md] [--precision fp32,bf16]
 *
 * `--precision`: the screening precisions of k-NN and the filter on the native backend, one row
 * each (the answers are the float64 ones in both: src/retrieval/certified.ts).
 *
 * `--rounds N`: repeats each k-NN measurement and each in-memory Algorithm 1 pair N times.
 * `--alg1-pools 1000000 --alg1-configs 1031:160:46:0,1000:1000:4:1`: Algorithm 1 whole
 * (candidate search, de-val and debug-train sweeps) on the same data in memory on both sides
 * (raw float32 files written once, read before the clock starts), dcd and PyTorch
 * (retrieval_torch.py alg1: per-class squared distances and topk, then the greedy sweeps)
 * alternating round by round; a config is seeds:classes:k_train:k_val. Both write their picks,
 * and the table says how many are the same (dcd's are the float64 answer on native, PyTorch's
 * its float32 one).
 *
 * Each measurement runs in its own child process, so peak RSS is that of the step alone
 * (read from getrusage); the 1-minute load average at its start is printed beside it
 * (the machine is shared). The dcd side reads pools from Arrow files written in batches
 * of 16,384 rows (streamed under the memory budget); the k-NN step and the PyTorch side
 * have their data in memory. The filter's full scale (70k × 1M × 2048 ≈ 1.5e14
 * multiply-adds) is measured on smaller pools and extrapolated linearly (each pool row
 * meets all of T; beyond the held block size the pool is streamed once per test block,
 * which adds reading, not arithmetic).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../src/backends/chain.js';
import { atomicWriteFile } from '../src/core/fsutil.js';
import { makeColumn } from '../src/core/arrow.js';
import { Table } from 'apache-arrow';
import { EmbeddingStore } from '../src/retrieval/store.js';
import { selectAlgorithm1 } from '../src/retrieval/select.js';
import { leakageFilter, type Threshold } from '../src/retrieval/filter.js';
import { mulberry32 } from '../src/core/rng.js';
import { openArrowSink } from '../src/retrieval/output.js';
import { knn } from '../src/retrieval/knn.js';
import { parsePrecision } from '../src/backends/precision.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}
const flag = (name: string) => process.argv.includes(`--${name}`);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const META = { 'dcd.backbone': 'synthetic' };
const BATCH = 16384;

/** Writes n random rows (uniform [0,1)) with labels i→rnd % classes, in batches. */
async function writeSynthetic(file: string, n: number, dim: number, classes: number, seed: number, labelOf?: (i: number) => number): Promise<void> {
  if (existsSync(file)) return;
  const rnd = mulberry32(seed);
  let sink: Awaited<ReturnType<typeof openArrowSink>> | null = null;
  for (let s = 0; s < n; s += BATCH) {
    const r = Math.min(BATCH, n - s);
    const data = new Float32Array(r * dim);
    for (let t = 0; t < data.length; t++) data[t] = rnd();
    const t = new Table({
      id: makeColumn({ kind: 'utf8', values: Array.from({ length: r }, (_, i) => `r${s + i}`) }),
      embedding: makeColumn({ kind: 'embedding', values: data, dim }),
      label: makeColumn({ kind: 'int32', values: Int32Array.from({ length: r }, (_, i) => (labelOf ? labelOf(s + i) : Math.floor(rnd() * classes))) }),
    });
    sink ??= await openArrowSink(file, t.schema, META);
    for (const b of t.batches) sink.write(b);
  }
  await sink!.close();
}

/**
 * Raw data for the in-memory Algorithm 1 runs (both sides read the same bytes): `<base>.f32`
 * (n × dim float32, uniform [0,1)) and `<base>.i32` (labels: `labelOf(i)`, else uniform over classes).
 */
function writeRaw(base: string, n: number, dim: number, classes: number, seed: number, labelOf?: (i: number) => number): void {
  if (existsSync(`${base}.i32`)) return;
  const rnd = mulberry32(seed);
  const data = new Float32Array(n * dim);
  for (let t = 0; t < data.length; t++) data[t] = rnd();
  const labels = Int32Array.from({ length: n }, (_, i) => (labelOf ? labelOf(i) : Math.floor(rnd() * classes)));
  writeFileSync(`${base}.f32`, data);
  writeFileSync(`${base}.i32`, labels);
}

function readRaw(base: string, dim: number): { data: Float32Array; labels: Int32Array; n: number } {
  const b = readFileSync(`${base}.f32`);
  const l = readFileSync(`${base}.i32`);
  const labels = new Int32Array(l.buffer.slice(l.byteOffset, l.byteOffset + l.byteLength));
  // readFileSync gives a large file its own, aligned buffer: view it rather than copy 1.5 GB
  const data = b.byteOffset % 4 === 0 ? new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4) : new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  if (data.length !== labels.length * dim) throw new Error(`${base}: ${data.length} values for ${labels.length} labels × ${dim}`);
  // Touch every page before the clock starts: on this VM the first touch of a page read by
  // readFileSync still faults (≈ 3 s for 1.5 GB), which would be timed as the first pass.
  let s = 0;
  for (let i = 0; i < data.length; i += 1024) s += data[i]!;
  if (!(s >= 0)) throw new Error(`${base}: not finite`);
  return { data, labels, n: labels.length };
}

function maxRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

async function child(): Promise<void> {
  const what = arg('child', '');
  const backend = await initBackend(arg('backend', process.env.DCD_BACKEND ?? 'auto'), { quiet: true });
  const budget = Number(arg('budget', '2048'));
  const precision = parsePrecision(arg('precision', 'fp32'), '--precision');
  const label = precision === 'bf16' ? `${backend} bf16` : backend;
  const emit = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify({ backend: label, ...o }) + '\n');
  if (what === 'knn') {
    const nq = Number(arg('queries', '1000'));
    const n = Number(arg('pool', '100000'));
    const dim = Number(arg('dim', '384'));
    const rnd = mulberry32(7);
    const q = new Float32Array(nq * dim).map(() => rnd());
    const p = new Float32Array(n * dim).map(() => rnd());
    const t0 = performance.now();
    const r = knn(q, dim, p, Number(arg('k', '50')), { precision });
    const seconds = (performance.now() - t0) / 1000;
    emit({ seconds, maxRssMiB: maxRssMiB(), first: r.indices[0] });
  } else if (what === 'select') {
    const seedStore = await EmbeddingStore.open([arg('seed-file', '')], { role: 'seed', requireLabel: true });
    const pool = await EmbeddingStore.open([arg('pool-file', '')], { role: 'pool', requireLabel: true });
    const t0 = performance.now();
    const s = await seedStore.readAll();
    const r = await selectAlgorithm1({ ids: s.ids, labels: s.labels!, data: s.data, dim: s.dim }, pool, { k: Number(arg('k', '46')), kVal: Number(arg('k-val', '0')), memoryBudgetMiB: budget });
    const seconds = (performance.now() - t0) / 1000;
    emit({ seconds, maxRssMiB: maxRssMiB(), selected: r.train.ids.length });
  } else if (what === 'alg1') {
    const dim = Number(arg('dim', '384'));
    const p = readRaw(arg('pool-raw', ''), dim);
    const sd = readRaw(arg('seed-raw', ''), dim);
    const pool = EmbeddingStore.fromArrays('pool', { ids: Array.from({ length: p.n }, (_, j) => `p${j}`), labels: p.labels, data: p.data, dim });
    const seeds = { ids: Array.from({ length: sd.n }, (_, i) => `s${i}`), labels: sd.labels, data: sd.data, dim };
    const t0 = performance.now();
    const r = await selectAlgorithm1(seeds, pool, { k: Number(arg('k', '46')), kVal: Number(arg('k-val', '0')), memoryBudgetMiB: budget });
    const seconds = (performance.now() - t0) / 1000;
    const picks = (sel: typeof r.train | null, set: string) =>
      sel ? sel.ids.map((id, t) => `${set} ${sel.seedIds[t]!.slice(1)} ${id.slice(1)} ${sel.ranks[t]}`) : [];
    writeFileSync(arg('picks-out', ''), [...picks(r.deval, 'V'), ...picks(r.train, 'D')].join('\n') + '\n');
    emit({ seconds, maxRssMiB: maxRssMiB(), selected: r.train.ids.length + (r.deval?.ids.length ?? 0) });
  } else if (what === 'filter') {
    const pool = await EmbeddingStore.open([arg('pool-file', '')], { role: 'pool', requireLabel: true });
    const test = await EmbeddingStore.open([arg('test-file', '')], { role: 'test' });
    const tau = new Map<number, Threshold>();
    for (let y = 0; y < 160; y++) tau.set(y, { label: y, tau: 1, trainId: '', testId: '' });
    const t0 = performance.now();
    const r = await leakageFilter(pool, [test], tau, { memoryBudgetMiB: budget, precision });
    const seconds = (performance.now() - t0) / 1000;
    // The side leakageFilter's `auto` holds (the one with fewer rows).
    const held = pool.estimatedRows() < Number(arg('n-test', '0')) ? 'pool' : 'test';
    emit({ seconds, maxRssMiB: maxRssMiB(), kept: r.kept, held });
  }
}

interface Measured {
  seconds: number;
  maxRssMiB: number;
  backend?: string;
  held?: string;
  /** 1-minute load average when the step started. */
  load: number;
}

function runChild(args: string[]): Measured {
  // Cap the V8 heap near the budget: with a large cap V8 collects lazily and peak RSS
  // measures garbage, not what the step needs (1M select: 1504 MiB uncapped, 372 MiB capped).
  const budget = args[args.indexOf('--budget') + 1] ?? '2048';
  const load = loadavg()[0]!;
  const r = spawnSync(process.execPath, [`--max-old-space-size=${Math.max(512, Number(budget))}`, fileURLToPath(import.meta.url), ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`child ${args.join(' ')} failed: ${r.stderr}`);
  return { ...JSON.parse(r.stdout.trim().split('\n').pop()!), load };
}

function runTorch(args: string[]): Measured | null {
  if (flag('no-torch') || !existsSync('/usr/bin/python3')) return null;
  const load = loadavg()[0]!;
  const r = spawnSync('/usr/bin/python3', [path.join(ROOT, 'bench', 'retrieval_torch.py'), ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    process.stderr.write(`torch reference failed: ${r.stderr}\n`);
    return null;
  }
  return { ...JSON.parse(r.stdout.trim().split('\n').pop()!), load };
}

const ld = (m: Measured | null) => (m ? m.load.toFixed(1) : '–');

async function orchestrate(): Promise<void> {
  const preset = arg('preset', 'small');
  const paper = preset === 'paper';
  const knnPools = arg('knn-pools', '100000').split(',').map(Number);
  const selectPools = arg('select-pools', paper ? '100000,300000,1000000' : '20000,100000').split(',').map(Number);
  const filterTest = Number(arg('filter-test', paper ? '70000' : '10000'));
  const filterPools = arg('filter-pools', paper ? '2000,100000' : '500,2000').split(',').map(Number);
  const skip = new Set(arg('skip', '').split(',').filter(Boolean));
  const dim = Number(arg('dim', '384'));
  const fdim = Number(arg('filter-dim', '2048'));
  const seeds = Number(arg('seeds', '1031'));
  const classes = Number(arg('classes', '160'));
  const k = Number(arg('k', '46'));
  const budget = arg('budget', '2048');
  const backend = arg('backend', process.env.DCD_BACKEND ?? 'auto');
  const precisions = arg('precision', 'fp32').split(',').map((p) => parsePrecision(p, '--precision'));
  const work = arg('workdir', path.join(tmpdir(), 'dcd-bench-retrieval'));
  mkdirSync(work, { recursive: true });
  const lines: string[] = [];
  const say = (s: string) => {
    lines.push(s);
    process.stdout.write(s + '\n');
  };
  say(`## Retrieval benchmark (${new Date().toISOString().slice(0, 16)}Z, preset ${preset}, backend ${backend}, memory budget ${budget} MiB)`);
  say('');
  say('Load: the 1-minute load average when each step started (2 shared cores).');
  say('');
  if (!skip.has('knn')) {
    say(`### Exact k-NN kernel: 1,000 queries × pool N × ${dim}, k = 50 (data in memory)`);
    say('');
    say('| pool N | backend | dcd s | load | dcd peak RSS MiB | PyTorch s | load | dcd / PyTorch |');
    say('|---:|---|---:|---:|---:|---:|---:|---:|');
    for (const n of knnPools)
      for (let round = 1; round <= Number(arg('rounds', '1')); round++) {
      const t = runTorch(['knn', '--pool', String(n), '--dim', String(dim), '--queries', '1000', '--k', '50']);
      for (const prec of precisions) {
      const d = runChild(['--child', 'knn', '--pool', String(n), '--dim', String(dim), '--budget', budget, '--backend', backend, '--precision', prec]);
      say(`| ${n.toLocaleString('en')} | ${d.backend} | ${d.seconds.toFixed(2)} | ${ld(d)} | ${d.maxRssMiB.toFixed(0)} | ${t ? t.seconds.toFixed(2) : '–'} | ${ld(t)} | ${t ? (d.seconds / t.seconds).toFixed(2) : '–'} |`);
      }
    }
    say('');
  }
  if (!skip.has('select')) {
    say(`### Algorithm 1: ${seeds} seeds over ${classes} classes, pool N × ${dim}, k = ${k}`);
    say('');
    say('| pool N | backend | dcd s | load | dcd peak RSS MiB | PyTorch s | load | PyTorch peak RSS MiB | dcd / PyTorch |');
    say('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
    const seedFile = path.join(work, `seed-${seeds}-${classes}-${dim}.arrow`);
    await writeSynthetic(seedFile, seeds, dim, classes, 1, (i) => i % classes);
    for (const n of selectPools) {
      const poolFile = path.join(work, `pool-${n}-${classes}-${dim}.arrow`);
      await writeSynthetic(poolFile, n, dim, classes, 2);
      const d = runChild(['--child', 'select', '--seed-file', seedFile, '--pool-file', poolFile, '--k', String(k), '--budget', budget, '--backend', backend]);
      const t = runTorch(['select', '--pool', String(n), '--dim', String(dim), '--seeds', String(seeds), '--classes', String(classes), '--k', String(k)]);
      say(
        `| ${n.toLocaleString('en')} | ${d.backend} | ${d.seconds.toFixed(1)} | ${ld(d)} | ${d.maxRssMiB.toFixed(0)} | ${t ? t.seconds.toFixed(2) : '–'} | ${ld(t)} | ${t ? t.maxRssMiB.toFixed(0) : '–'} | ${t ? (d.seconds / t.seconds).toFixed(1) : '–'} |`,
      );
    }
    say('');
  }
  if (!skip.has('alg1')) {
    const rounds = Number(arg('rounds', '3'));
    for (const n of arg('alg1-pools', paper ? '1000000' : '100000').split(',').map(Number))
      for (const cfg of arg('alg1-configs', '1031:160:46:0,1000:1000:4:1').split(',')) {
        const [nSeeds, nClasses, kTrain, kVal] = cfg.split(':').map(Number) as [number, number, number, number];
        say(`### Algorithm 1 in memory, side by side: ${nSeeds.toLocaleString('en')} seeds over ${nClasses.toLocaleString('en')} classes, pool ${n.toLocaleString('en')} × ${dim}, k_train = ${kTrain}, k_val = ${kVal}`);
        say('');
        say('| round | backend | dcd s | load | dcd peak RSS MiB | PyTorch s | load | PyTorch peak RSS MiB | PyTorch / dcd | picks | same picks |');
        say('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
        const seedRaw = path.join(work, `raw-seed-${nSeeds}-${nClasses}-${dim}`);
        const poolRaw = path.join(work, `raw-pool-${n}-${nClasses}-${dim}`);
        writeRaw(seedRaw, nSeeds, dim, nClasses, 11, (i) => i % nClasses);
        writeRaw(poolRaw, n, dim, nClasses, 12);
        const common = ['--dim', String(dim), '--k', String(kTrain), '--k-val', String(kVal)];
        for (let round = 1; round <= rounds; round++) {
          const dPicks = path.join(work, 'alg1-picks-dcd.txt');
          const tPicks = path.join(work, 'alg1-picks-torch.txt');
          const d = runChild(['--child', 'alg1', '--seed-raw', seedRaw, '--pool-raw', poolRaw, '--picks-out', dPicks, '--budget', budget, '--backend', backend, ...common]);
          const t = runTorch(['alg1', '--pool-raw', poolRaw, '--seed-raw', seedRaw, '--classes', String(nClasses), '--picks-out', tPicks, ...common]);
          const dSet = readFileSync(dPicks, 'utf8').trim().split('\n');
          const tSet = t ? new Set(readFileSync(tPicks, 'utf8').trim().split('\n')) : null;
          const same = tSet ? dSet.filter((x) => tSet.has(x)).length : null;
          say(
            `| ${round} | ${d.backend} | ${d.seconds.toFixed(2)} | ${ld(d)} | ${d.maxRssMiB.toFixed(0)} | ${t ? t.seconds.toFixed(2) : '–'} | ${ld(t)} | ${t ? t.maxRssMiB.toFixed(0) : '–'} | ${t ? (t.seconds / d.seconds).toFixed(2) : '–'} | ${dSet.length.toLocaleString('en')} | ${same === null ? '–' : same.toLocaleString('en')} |`,
          );
        }
        say('');
      }
  }
  if (!skip.has('filter')) {
    say(`### Leakage filter: test union ${filterTest.toLocaleString('en')} × ${fdim} against a P × ${fdim} pool`);
    say('');
    say('| pool P | backend | held side | dcd s | load | dcd peak RSS MiB | PyTorch s | load | PyTorch peak RSS MiB | dcd / PyTorch | dcd extrapolated to 1M pool |');
    say('|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    const testFile = path.join(work, `test-${filterTest}-${fdim}.arrow`);
    await writeSynthetic(testFile, filterTest, fdim, classes, 3);
    for (const p of filterPools) {
      const poolFile = path.join(work, `fpool-${p}-${fdim}.arrow`);
      await writeSynthetic(poolFile, p, fdim, classes, 4);
      const t = runTorch(['filter', '--test', String(filterTest), '--pool', String(p), '--dim', String(fdim)]);
      for (const prec of precisions) {
      const d = runChild(['--child', 'filter', '--test-file', testFile, '--pool-file', poolFile, '--n-test', String(filterTest), '--budget', budget, '--backend', backend, '--precision', prec]);
      say(
        `| ${p.toLocaleString('en')} | ${d.backend} | ${d.held} | ${d.seconds.toFixed(1)} | ${ld(d)} | ${d.maxRssMiB.toFixed(0)} | ${t ? t.seconds.toFixed(2) : '–'} | ${ld(t)} | ${t ? t.maxRssMiB.toFixed(0) : '–'} | ${t ? (d.seconds / t.seconds).toFixed(2) : '–'} | ${((d.seconds * 1e6) / p / 3600).toFixed(2)} h |`,
      );
      }
    }
    say('');
  }
  const out = arg('out', '');
  if (out) await atomicWriteFile(out, lines.join('\n') + '\n');
}

if (process.argv.includes('--child')) await child();
else await orchestrate();
