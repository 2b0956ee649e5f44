import { createHash } from 'node:crypto';
import { ConfigError, DataError } from '../core/errors.js';
import { distanceBlock, exactSqDist, gatherRows, holdRows, releaseBlock, screeningPrecision, type HeldRows } from './knn.js';
import { certifiedKernels, nearestHeld, screenRows, type ScreenRows } from './certified.js';
import { GpuCols, rowMean, screen, screenBound, screenOperand, type Candidates, type ScreenOperand } from './gpu-screen.js';
import { gpuRetrieval } from '../backends/host.js';
import type { Bf16Addon, Precision } from '../backends/precision.js';
import { budgetBytes, checkCompatible, chunkRowsFor, EmbeddingStore, type EmbeddingChunk } from './store.js';

/** A held group is split into sub-blocks of at most this many rows (bounds the [r, n] distance block). */
const HELD_BLOCK = 8192;

/** Streamed chunks are at most this large. */
const STREAM_CHUNK_BYTES = 32 * 2 ** 20;

/** Which side of the nearest-neighbour join sits on the device; the other side is streamed past it. */
export type HoldSide = 'auto' | 'test' | 'pool';

/** τ_y of one class and the train/test pair that attains it. */
export interface Threshold {
  label: number;
  /** min over Train_y × Test_y of the squared distance (exact, float64). */
  tau: number;
  trainId: string;
  testId: string;
}

/** A contiguous run of rows with global indices [start, start + rows), copied out of the stream. */
interface RowBlock {
  start: number;
  rows: number;
  /** Row-major float32 [rows, dim]. */
  data: Float32Array;
  labels: Int32Array | null;
}

/** Held rows on the GPU (webgpu): screening columns centred on their mean, the fp32 rows for the float64 re-check, and (once needed) the rows as a screening operand. */
interface GpuHeld {
  cols: GpuCols;
  data: Float32Array;
  operand?: ScreenOperand;
}

/**
 * A held sub-block: on the device for tfjs distance blocks (`held`), in screening form for the
 * certified kernels (`screen`), or on the GPU for the GPU screen (`gpu`).
 */
interface HeldSub {
  held: HeldRows | null;
  screen: ScreenRows | null;
  gpu: GpuHeld | null;
  /** Global index of each row. */
  index: Int32Array;
}

/**
 * One block of held rows on the device, split by key (class, or 0 for everything) and
 * into sub-blocks of ≤ {@link HELD_BLOCK} rows. `index[t]` is the global index of
 * sub-block row t (ascending within a key).
 */
class HeldBlock {
  private readonly groups = new Map<number, HeldSub[]>();
  /**
   * @param cert the certified kernels and their screening precision (native backend), else null: tfjs distance blocks
   * @param gpu true to hold the rows on the GPU for the GPU screen (webgpu backend)
   */
  constructor(block: RowBlock, dim: number, keyed: boolean, private readonly cert: { kern: Bf16Addon; precision: Precision } | null = null, gpu = false) {
    const byKey = new Map<number, number[]>();
    for (let t = 0; t < block.rows; t++) {
      const y = keyed ? block.labels![t]! : 0;
      let l = byKey.get(y);
      if (!l) byKey.set(y, (l = []));
      l.push(t);
    }
    try {
      for (const [y, rows] of byKey) {
        const subs: HeldSub[] = [];
        this.groups.set(y, subs);
        for (let s = 0; s < rows.length; s += HELD_BLOCK) {
          const part = rows.slice(s, s + HELD_BLOCK);
          // Unkeyed, the rows are one contiguous range: a view, no copy.
          const data = keyed ? gatherRows(block.data, part, dim) : block.data.subarray(s * dim, (s + part.length) * dim);
          const index = Int32Array.from(part, (t) => block.start + t);
          if (gpu) subs.push({ held: null, screen: null, gpu: { cols: new GpuCols(data, dim, rowMean(data, dim)), data }, index });
          else if (cert) subs.push({ held: null, screen: screenRows(cert.kern, data, dim, cert.precision), gpu: null, index });
          else subs.push({ held: holdRows(data, dim), screen: null, gpu: null, index });
        }
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }
  /**
   * Calls `fn` with the [r, n] distance block of rows `which` of `rows` ([*, dim]) against
   * each sub-block of group `key`, in index order.
   */
  scan(rows: Float32Array, which: readonly number[], key: number, fn: (block: Float32Array, held: HeldRows, index: Int32Array) => void): void {
    for (const g of this.groups.get(key) ?? []) {
      const block = distanceBlock(rows, which.length, g.held!, which);
      fn(block, g.held!, g.index);
      releaseBlock(block); // fn keeps no reference: the next block reuses its memory
    }
  }
  /**
   * Certified form of {@link scan}: per sub-block of group `key`, the float64-nearest pairs
   * between its rows and rows `which` of `rows` (see nearestHeld; `perHeld` picks the side that
   * gets an answer), in index order; screened by the certified kernels or on the GPU.
   */
  async nearest(rows: Float32Array, which: readonly number[], key: number, perHeld: boolean, fn: (index: Int32Array, distance: Float64Array, heldIndex: Int32Array) => void): Promise<void> {
    const w = Int32Array.from(which);
    for (const g of this.groups.get(key) ?? []) {
      const r = g.gpu ? await nearestGpu(g.gpu, rows, w, perHeld) : nearestHeld(this.cert!.kern, g.screen!, rows, w, perHeld);
      fn(r.index, r.distance, g.index);
    }
  }
  dispose(): void {
    for (const subs of this.groups.values()) for (const g of subs) g.held?.dispose(), g.gpu?.cols.dispose();
    this.groups.clear();
  }
}

/**
 * {@link nearestHeld}'s answer (./certified.ts) with the GPU screen (./gpu-screen.ts): every pair
 * whose fp32 screening distance lies within twice the bound of the row's smallest is re-ranked by
 * its float64 distance; ties go to the lower index. Same contract and results as nearestHeld.
 */
async function nearestGpu(held: GpuHeld, rows: Float32Array, which: Int32Array, perHeld: boolean): Promise<{ index: Int32Array; distance: Float64Array }> {
  const { cols: hc, data: hd } = held;
  const dim = hc.dim;
  const n = perHeld ? hc.n : which.length;
  const index = new Int32Array(n).fill(-1);
  const distance = new Float64Array(n).fill(Infinity);
  if (hc.n === 0 || which.length === 0) return { index, distance };
  const E = screenBound(dim);
  let c: Candidates;
  if (!perHeld) {
    const q = screenOperand(rows, dim, hc.mu, which);
    c = await screen(q, hc, { k: 1, e: Float64Array.from(q.norm, (x) => E(x, hc.maxNorm)) });
  } else {
    const q = (held.operand ??= screenOperand(hd, dim, hc.mu));
    const cols = new GpuCols(rows, dim, hc.mu, which);
    try {
      c = await screen(q, cols, { k: 1, e: Float64Array.from(q.norm, (x) => E(x, cols.maxNorm)) });
    } finally {
      cols.dispose();
    }
  }
  for (let i = 0; i < n; i++)
    for (let t = c.start[i]!; t < c.start[i + 1]!; t++) {
      const j = c.col[t]!;
      const d = perHeld ? exactSqDist(hd, i, rows, which[j]!, dim) : exactSqDist(rows, which[i]!, hd, j, dim);
      if (d < distance[i]! || (d === distance[i]! && j < index[i]!)) {
        distance[i] = d;
        index[i] = j;
      }
    }
  return { index, distance };
}

/** Per probe row (pool or train image): the nearest target row so far, by the float32 kernel, and the exact distance to it. */
class NearestState {
  best = new Float32Array(0);
  index = new Int32Array(0);
  exact = new Float64Array(0);
  ensure(n: number): void {
    if (n <= this.best.length) return;
    const cap = Math.max(n, 2 * this.best.length, 1024);
    const best = new Float32Array(cap).fill(Infinity);
    const index = new Int32Array(cap).fill(-1);
    const exact = new Float64Array(cap).fill(Infinity);
    best.set(this.best);
    index.set(this.index);
    exact.set(this.exact);
    this.best = best;
    this.index = index;
    this.exact = exact;
  }
  /** Offers target `t` at float64 distance `d` to probe `p` (certified path); ties go to the lower target index. */
  offerExact(p: number, d: number, t: number): void {
    const b = this.exact[p]!;
    if (d < b || (d === b && t < this.index[p]!)) {
      this.exact[p] = d;
      this.index[p] = t;
    }
  }
  /** Offers target `t` at kernel distance `d` to probe `p`; ties go to the lower target index. */
  offer(p: number, d: number, t: number): boolean {
    const b = this.best[p]!;
    if (d < b || (d === b && t < this.index[p]!)) {
      this.best[p] = d;
      this.index[p] = t;
      return true;
    }
    return false;
  }
}

/** The rows of several stores as one sequence with global indices, in chunks of ≤ maxRows. */
async function* concatChunks(stores: readonly EmbeddingStore[], maxRows: number, embeddings = true): AsyncGenerator<{ ch: EmbeddingChunk; start: number; store: number }> {
  let offset = 0;
  for (let s = 0; s < stores.length; s++) {
    let n = 0;
    for await (const ch of stores[s]!.chunks(maxRows, { embeddings })) {
      yield { ch, start: offset + ch.start, store: s };
      n = ch.start + ch.rows;
    }
    offset += n;
  }
}

/** Re-cuts a chunk stream into blocks of exactly `size` rows (the last may be shorter), copying data and labels. */
async function* reblock(chunks: AsyncIterable<{ ch: EmbeddingChunk; start: number }>, size: number, dim: number): AsyncGenerator<RowBlock> {
  let cur: RowBlock | null = null;
  let fill = 0;
  for await (const { ch, start } of chunks) {
    for (let a = 0; a < ch.rows; ) {
      if (!cur) {
        cur = { start: start + a, rows: 0, data: new Float32Array(size * dim), labels: ch.labels ? new Int32Array(size) : null };
        fill = 0;
      }
      const take = Math.min(size - fill, ch.rows - a);
      cur.data.set(ch.data.subarray(a * dim, (a + take) * dim), fill * dim);
      if (cur.labels && ch.labels) cur.labels.set(ch.labels.subarray(a, a + take), fill);
      fill += take;
      a += take;
      if (fill === size) {
        cur.rows = fill;
        yield cur;
        cur = null;
      }
    }
  }
  if (cur && fill > 0) yield { start: cur.start, rows: fill, data: cur.data.subarray(0, fill * dim), labels: cur.labels ? cur.labels.subarray(0, fill) : null };
}

function groupRows(rows: number, keyOf: ((a: number) => number) | null): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  for (let a = 0; a < rows; a++) {
    const y = keyOf ? keyOf(a) : 0;
    let l = groups.get(y);
    if (!l) groups.set(y, (l = []));
    l.push(a);
  }
  return groups;
}

/** Options of {@link nearestJoin}. */
interface JoinOptions {
  /** Compare only rows with the same label (both sides need labels). */
  keyed: boolean;
  budget: number;
  /** `probe`/`target`: which side is held; `auto`: the one with fewer rows. */
  hold: 'auto' | 'probe' | 'target';
  /** Rows per held block; default from the budget. */
  heldRows?: number;
  /** Whether the chunks given to `onFinal` need embeddings (they always have them when the target side is held). */
  finalEmbeddings: boolean;
  /** Screening precision of the certified kernels (native backend); on webgpu the GPU screens in fp32, elsewhere the tfjs float32 path runs. */
  precision?: Precision;
}

/**
 * For every probe row p (a pool or train image), its nearest target row (test union or
 * val), within p's label when `keyed`: on the native backend the float64-nearest (certified
 * kernels, screened in `o.precision`: ./certified.ts), on webgpu the same float64-nearest
 * (screened on the GPU: ./gpu-screen.ts), elsewhere the float32 kernel's argmin;
 * ties to the lower target index; with the exact float64 distance to it. Whichever side has fewer rows is held on
 * the device in blocks that fit the budget, and the other side is streamed past each
 * block, so the transposed copy is built for the small side only and a side larger than
 * the budget costs extra passes, never extra memory. `onFinal` gets every probe chunk, in
 * order, with the final `index` (global target index, −1 when there was none to compare)
 * and `distance` of its rows.
 */
async function nearestJoin(
  probe: EmbeddingStore,
  targets: readonly EmbeddingStore[],
  nTargets: number,
  o: JoinOptions,
  onFinal: (ch: EmbeddingChunk, index: Int32Array, distance: Float64Array) => void | Promise<void>,
): Promise<void> {
  const dim = probe.dim;
  // webgpu: the GPU screen (./gpu-screen.ts); native: the certified kernels; both re-rank in float64.
  const gpu = gpuRetrieval();
  const kern = gpu ? null : certifiedKernels();
  const cert = kern ? { kern, precision: screeningPrecision(o.precision) } : null;
  // A held row costs its JS copy, the device copy and the transient augmented transpose
  // (plus a gathered copy per class when keyed); the other half of the budget is for the
  // streamed chunks and their distance blocks.
  const perHeldRow = (o.keyed ? 4 : 3) * dim * 4;
  const heldRows = Math.max(1, Math.floor(o.heldRows ?? o.budget / 2 / perHeldRow));
  const holdProbe = o.hold === 'probe' || (o.hold === 'auto' && probe.estimatedRows() < nTargets);
  const state = new NearestState();
  const keyOf = (ch: EmbeddingChunk) => (o.keyed ? (a: number) => ch.labels![a]! : null);
  // Streamed chunks of ≤ 32 MiB: larger ones only add page faults (fresh zeroed arrays per chunk).
  const maxChunk = Math.max(64, Math.floor(STREAM_CHUNK_BYTES / (dim * 4)));
  const streamRows = (held: number) => Math.min(maxChunk, chunkRowsFor(Math.max(o.budget - held * perHeldRow, o.budget / 4), dim, Math.min(HELD_BLOCK, held)));
  const final = async (ch: EmbeddingChunk) => {
    state.ensure(ch.start + ch.rows);
    await onFinal(ch, state.index.subarray(ch.start, ch.start + ch.rows), state.exact.subarray(ch.start, ch.start + ch.rows));
  };

  if (!holdProbe) {
    // Hold target blocks; stream the probe side once per block, final on the last pass.
    const nBlocks = Math.max(1, Math.ceil(nTargets / heldRows));
    const rows = streamRows(Math.min(heldRows, nTargets));
    const blocks = reblock(concatChunks(targets, heldRows), heldRows, dim)[Symbol.asyncIterator]();
    const changed = () => new DataError(`${targets.map((t) => t.files.join(', ')).join('; ')}: row count changed while reading; the files changed during the run`);
    for (let b = 0; b < nBlocks; b++) {
      let held: HeldBlock | null = null;
      if (nTargets > 0) {
        const next = await blocks.next();
        if (next.done) throw changed();
        held = new HeldBlock(next.value, dim, o.keyed, cert, gpu);
      }
      try {
        for await (const ch of probe.chunks(rows)) {
          state.ensure(ch.start + ch.rows);
          if (held && (cert || gpu))
            for (const [y, rowsY] of groupRows(ch.rows, keyOf(ch)))
              await held.nearest(ch.data, rowsY, y, false, (idx, dist, index) => {
                for (let a = 0; a < rowsY.length; a++) if (idx[a]! >= 0) state.offerExact(ch.start + rowsY[a]!, dist[a]!, index[idx[a]!]!);
              });
          else if (held)
            for (const [y, rowsY] of groupRows(ch.rows, keyOf(ch))) {
              const r = rowsY.length;
              held.scan(ch.data, rowsY, y, (blk, h, index) => {
                const n = h.n;
                for (let a = 0; a < r; a++) {
                  const off = a * n;
                  let bd = Infinity;
                  let bc = -1;
                  for (let c = 0; c < n; c++) {
                    const d = blk[off + c]!;
                    if (d < bd) {
                      bd = d;
                      bc = c;
                    }
                  }
                  const p = ch.start + rowsY[a]!;
                  if (bc >= 0 && state.offer(p, bd, index[bc]!)) state.exact[p] = exactSqDist(ch.data, rowsY[a]!, h.data, bc, dim);
                }
              });
            }
          if (b === nBlocks - 1) await final(ch);
        }
      } finally {
        held?.dispose();
      }
    }
    if (nTargets > 0 && !(await blocks.next()).done) throw changed();
    return;
  }

  // Hold probe blocks; stream the targets once per block; then one final pass over the probe.
  const tRows = streamRows(heldRows);
  for await (const block of reblock(concatChunks([probe], heldRows), heldRows, dim)) {
    state.ensure(block.start + block.rows);
    const held = new HeldBlock(block, dim, o.keyed, cert, gpu);
    try {
      for await (const { ch, start } of concatChunks(targets, tRows)) {
        for (const [y, rowsY] of groupRows(ch.rows, keyOf(ch))) {
          if (cert || gpu) {
            await held.nearest(ch.data, rowsY, y, true, (idx, dist, index) => {
              for (let c = 0; c < index.length; c++) if (idx[c]! >= 0) state.offerExact(index[c]!, dist[c]!, start + rowsY[idx[c]!]!);
            });
            continue;
          }
          const r = rowsY.length;
          held.scan(ch.data, rowsY, y, (blk, h, index) => {
            // Column-wise minimum: the nearest streamed target of each held probe row.
            const n = h.n;
            const colBest = new Float32Array(n).fill(Infinity);
            const colArg = new Int32Array(n).fill(-1);
            for (let a = 0; a < r; a++) {
              const off = a * n;
              for (let c = 0; c < n; c++) {
                const d = blk[off + c]!;
                if (d < colBest[c]!) {
                  colBest[c] = d;
                  colArg[c] = a;
                }
              }
            }
            for (let c = 0; c < n; c++) {
              const a = colArg[c]!;
              if (a < 0) continue;
              const p = index[c]!;
              if (state.offer(p, colBest[c]!, start + rowsY[a]!)) state.exact[p] = exactSqDist(ch.data, rowsY[a]!, h.data, c, dim);
            }
          });
        }
      }
    } finally {
      held.dispose();
    }
  }
  for await (const ch of probe.chunks(Math.min(maxChunk, chunkRowsFor(o.budget / 2, dim, 1)), { embeddings: o.finalEmbeddings })) await final(ch);
}

/** Ids, files, labels, row count and (optionally) content hashes of the target side (test union or val), streamed. */
async function scanTargets(stores: readonly EmbeddingStore[], budget: number, hashes: boolean): Promise<{ n: number; ids: string[]; fileOf: string[]; labels: Int32Array | null; hash: Map<string, number> }> {
  const ids: string[] = [];
  const fileOf: string[] = [];
  const labels: number[] = [];
  const hash = new Map<string, number>();
  const names = stores.map((s) => s.files.join(','));
  const hasLabels = stores.every((s) => s.hasLabel);
  for await (const { ch, start, store } of concatChunks(stores, chunkRowsFor(budget / 2, stores[0]?.dim ?? 1, 1), hashes)) {
    for (let a = 0; a < ch.rows; a++) {
      ids.push(ch.ids[a]!);
      fileOf.push(names[store]!);
      if (hasLabels) labels.push(ch.labels![a]!);
      if (hashes) {
        const h = rowHash(ch.data, a, ch.dim);
        if (!hash.has(h)) hash.set(h, start + a);
      }
    }
  }
  return { n: ids.length, ids, fileOf, labels: hasLabels ? Int32Array.from(labels) : null, hash };
}

/**
 * Per-class thresholds τ_y = min over Train_y × Test_y of ‖f(x) − f(x')‖² (docs/method.md §1):
 * per train image, the exact distance to its nearest test image of its class (float32
 * kernel's argmin), minimised over the class's train images. Streams within the memory
 * budget (see {@link nearestJoin}). Every class present in either set must have rows in both.
 */
export async function classThresholds(
  train: EmbeddingStore,
  test: EmbeddingStore,
  opts: { memoryBudgetMiB?: number; hold?: 'auto' | 'train' | 'test'; heldRows?: number; precision?: Precision } = {},
): Promise<Map<number, Threshold>> {
  checkCompatible(train, test);
  for (const s of [train, test]) if (!s.hasLabel) throw new DataError(`${s.files.join(', ')} (${s.role}): column label is missing; τ_y needs labelled train and test features`);
  const budget = budgetBytes(opts.memoryBudgetMiB);
  const t = await scanTargets([test], budget, false);
  const best = new Map<number, Threshold>();
  const trainClasses = new Set<number>();
  const hold = opts.hold === 'train' ? 'probe' : opts.hold === 'test' ? 'target' : 'auto';
  await nearestJoin(train, [test], t.n, { keyed: true, budget, hold, heldRows: opts.heldRows, finalEmbeddings: false, precision: opts.precision }, (ch, index, distance) => {
    for (let a = 0; a < ch.rows; a++) {
      const y = ch.labels![a]!;
      trainClasses.add(y);
      if (index[a]! < 0) continue;
      const cur = best.get(y);
      if (!cur || distance[a]! < cur.tau) best.set(y, { label: y, tau: distance[a]!, trainId: ch.ids[a]!, testId: t.ids[index[a]!]! });
    }
  });
  const testClasses = new Set(t.labels!);
  for (const y of testClasses)
    if (!trainClasses.has(y))
      throw new DataError(`${train.files.join(', ')} (${train.role}): column label has no row of class ${y}, which ${test.files.join(', ')} has; τ_${y} needs train and test images of the class (empty class)`);
  for (const y of trainClasses)
    if (!testClasses.has(y))
      throw new DataError(`${test.files.join(', ')} (${test.role}): column label has no row of class ${y}, which ${train.files.join(', ')} has; τ_${y} needs train and test images of the class (empty class)`);
  return best;
}

/** Why a pool image was removed. */
export type RemovalReason = 'duplicate' | 'leak';

/** One removed pool image and its nearest test image. */
export interface RemovedRow {
  id: string;
  label: number;
  nearestTestId: string;
  nearestTestFile: string;
  /** Exact squared distance to that test image. */
  distance: number;
  tau: number;
  reason: RemovalReason;
}

/** Per-class counts of the filter. */
export interface FilterClassSummary {
  label: number;
  tau: number;
  pool: number;
  kept: number;
  removed: number;
  duplicates: number;
}

/** Options of {@link leakageFilter}. */
export interface FilterOptions {
  /** `all` (default): nearest over every test image; `class`: only test images of the pool image's weak label. */
  scope?: 'all' | 'class';
  memoryBudgetMiB?: number;
  /**
   * Which side is held on the device while the other streams past it: `auto` (default)
   * holds the side with fewer rows (the pool's row count is estimated from its file sizes).
   * The result does not depend on it.
   */
  hold?: HoldSide;
  /** Rows per held block (default: as many as half the memory budget allows). */
  heldRows?: number;
  /**
   * Screening precision on the native backend (default fp32): decisions and distances are the
   * float64 ones either way (see ./certified.ts).
   */
  precision?: Precision;
  /** Called for each streamed pool chunk with its keep mask (1 = keep), in order. */
  onChunk?: (ch: EmbeddingChunk, keep: Uint8Array) => void | Promise<void>;
}

/** Result of {@link leakageFilter}. */
export interface FilterResult {
  kept: number;
  removed: RemovedRow[];
  summary: FilterClassSummary[];
}

/**
 * The test-leakage filter (docs/method.md §1): keeps pool image w of weak class y iff
 * min over T of d(w, x') ≥ τ_y, where T is the union of `tests` (any class; scope
 * `class`: T_y only). Exact duplicates (identical feature vectors, found by content hash
 * so float32 rounding cannot hide them) always go, even where τ_y = 0 and whatever the
 * scope. Runs within the memory budget: the smaller side is held in blocks, the other
 * streamed (see {@link nearestJoin}).
 */
export async function leakageFilter(pool: EmbeddingStore, tests: readonly EmbeddingStore[], tau: ReadonlyMap<number, Threshold>, opts: FilterOptions = {}): Promise<FilterResult> {
  const scope = opts.scope ?? 'all';
  if (scope !== 'all' && scope !== 'class') throw new ConfigError(`--scope: expected all or class, received "${scope}"`);
  const holdOpt = opts.hold ?? 'auto';
  if (holdOpt !== 'auto' && holdOpt !== 'test' && holdOpt !== 'pool') throw new ConfigError(`hold: expected auto, test or pool, received "${holdOpt}"`);
  if (!pool.hasLabel) throw new DataError(`${pool.files.join(', ')} (pool): column label (weak label) is missing; the filter needs each pool image's weak class`);
  if (tests.length === 0) throw new ConfigError('--test: give at least one test set');
  for (const t of tests) {
    checkCompatible(pool, t);
    if (scope === 'class' && !t.hasLabel) throw new DataError(`${t.files.join(', ')} (test): column label is missing; --scope class needs labelled test sets`);
  }
  const budget = budgetBytes(opts.memoryBudgetMiB);
  const T = await scanTargets(tests, budget, true);
  const removed: RemovedRow[] = [];
  const summary = new Map<number, FilterClassSummary>();
  let kept = 0;
  const hold = holdOpt === 'pool' ? 'probe' : holdOpt === 'test' ? 'target' : 'auto';
  await nearestJoin(pool, tests, T.n, { keyed: scope === 'class', budget, hold, heldRows: opts.heldRows, finalEmbeddings: true, precision: opts.precision }, async (ch, index, distance) => {
    const keep = new Uint8Array(ch.rows);
    for (let a = 0; a < ch.rows; a++) {
      const y = ch.labels![a]!;
      const th = tau.get(y);
      if (!th)
        throw new DataError(
          `${ch.file} (pool): column label has ${y} for id ${ch.ids[a]}, a class without a threshold τ_y (not in the train/val class list); give train/val features of every pool class`,
        );
      let s = summary.get(y);
      if (!s) summary.set(y, (s = { label: y, tau: th.tau, pool: 0, kept: 0, removed: 0, duplicates: 0 }));
      s.pool++;
      let d = distance[a]!;
      let j = index[a]!;
      if (d !== 0) {
        const t = T.hash.get(rowHash(ch.data, a, ch.dim));
        if (t !== undefined) {
          d = 0;
          j = t;
        }
      }
      const dup = d === 0;
      if (!dup && d >= th.tau) {
        keep[a] = 1;
        s.kept++;
        kept++;
      } else {
        s.removed++;
        if (dup) s.duplicates++;
        removed.push({ id: ch.ids[a]!, label: y, nearestTestId: T.ids[j]!, nearestTestFile: T.fileOf[j]!, distance: d, tau: th.tau, reason: dup ? 'duplicate' : 'leak' });
      }
    }
    await opts.onChunk?.(ch, keep);
  });
  return { kept, removed, summary: [...summary.values()].sort((a, b) => a.label - b.label) };
}

function rowHash(data: Float32Array, row: number, dim: number): string {
  return createHash('sha1')
    .update(new Uint8Array(data.buffer, data.byteOffset + row * dim * 4, dim * 4))
    .digest('base64');
}
