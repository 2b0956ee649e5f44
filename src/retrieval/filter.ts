import { createHash } from 'node:crypto';
import { ConfigError, DataError } from '../core/errors.js';
import { distanceBlock, exactSqDist, gatherRows, holdRows, type HeldRows } from './knn.js';
import { budgetBytes, checkCompatible, chunkRowsFor, EmbeddingStore, type EmbeddingChunk } from './store.js';

/** Held rows are split into blocks of at most this many rows (bounds the distance block). */
const HELD_BLOCK = 8192;

/** τ_y of one class and the train/test pair that attains it. */
export interface Threshold {
  label: number;
  /** min over Train_y × Test_y of the squared distance (exact, float64). */
  tau: number;
  trainId: string;
  testId: string;
}

/** Where the nearest held row of each streamed row is. */
interface NearestResult {
  index: Int32Array;
  distance: Float64Array;
}

/**
 * Held rows split by key (class or everything) and into blocks, on the device.
 * `global[key][t]` maps a block-local row back to the held set's index.
 */
class HeldGroups {
  private readonly groups = new Map<number, { blocks: HeldRows[]; index: Int32Array[] }>();
  constructor(
    readonly data: Float32Array,
    readonly dim: number,
    keys: Int32Array | null,
  ) {
    const byKey = new Map<number, number[]>();
    const n = data.length / dim;
    for (let t = 0; t < n; t++) {
      const y = keys ? keys[t]! : 0;
      if (!byKey.has(y)) byKey.set(y, []);
      byKey.get(y)!.push(t);
    }
    try {
      for (const [y, rows] of byKey) {
        const g = { blocks: [] as HeldRows[], index: [] as Int32Array[] };
        this.groups.set(y, g);
        for (let s = 0; s < rows.length; s += HELD_BLOCK) {
          const part = rows.slice(s, s + HELD_BLOCK);
          g.index.push(Int32Array.from(part));
          // Without keys the rows are one contiguous range: no copy.
          g.blocks.push(holdRows(keys ? gatherRows(data, part, dim) : data.subarray(s * dim, (s + part.length) * dim), dim));
        }
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }
  has(key: number): boolean {
    return this.groups.has(key);
  }
  /**
   * Nearest held row (of group `key`) for each of `r` rows; exact float64 distance to
   * the float32 kernel's argmin (ties: lower held index).
   */
  nearest(rows: Float32Array, r: number, key: number): NearestResult {
    const index = new Int32Array(r).fill(-1);
    const best = new Float32Array(r).fill(Infinity);
    const g = this.groups.get(key);
    if (g)
      g.blocks.forEach((held, b) => {
        const block = distanceBlock(rows, r, held);
        const map = g.index[b]!;
        for (let a = 0; a < r; a++) {
          const off = a * held.n;
          let bd = best[a]!;
          let bi = -1;
          for (let c = 0; c < held.n; c++) {
            const d = block[off + c]!;
            if (d < bd) {
              bd = d;
              bi = c;
            }
          }
          if (bi >= 0) {
            best[a] = bd;
            index[a] = map[bi]!;
          }
        }
      });
    const distance = new Float64Array(r).fill(Infinity);
    for (let a = 0; a < r; a++) if (index[a]! >= 0) distance[a] = exactSqDist(rows, a, this.data, index[a]!, this.dim);
    return { index, distance };
  }
  /** Bytes the held data takes (JS copy + device copy). */
  get bytes(): number {
    return this.data.byteLength * 2;
  }
  dispose(): void {
    for (const g of this.groups.values()) for (const b of g.blocks) b.dispose();
    this.groups.clear();
  }
}

/** Streams `store` and, per row, finds the nearest held row in the row's group. */
async function streamNearest(
  store: EmbeddingStore,
  held: HeldGroups,
  keyOf: ((ch: EmbeddingChunk, a: number) => number) | null,
  budget: number,
  onChunk: (ch: EmbeddingChunk, res: NearestResult) => void | Promise<void>,
): Promise<void> {
  if (held.bytes > budget * 0.75)
    throw new ConfigError(
      `--memory-budget: the held ${'test/val'} embeddings need ${(held.bytes / 2 ** 20).toFixed(0)} MiB (JS + device copy), more than 3/4 of the ${(budget / 2 ** 20).toFixed(0)} MiB budget; raise --memory-budget`,
    );
  const rows = chunkRowsFor(budget - held.bytes, store.dim, HELD_BLOCK * 2);
  for await (const ch of store.chunks(rows)) {
    const index = new Int32Array(ch.rows).fill(-1);
    const distance = new Float64Array(ch.rows).fill(Infinity);
    const groups = new Map<number, number[]>();
    for (let a = 0; a < ch.rows; a++) {
      const y = keyOf ? keyOf(ch, a) : 0;
      if (!groups.has(y)) groups.set(y, []);
      groups.get(y)!.push(a);
    }
    for (const [y, rowsY] of groups) {
      const all = rowsY.length === ch.rows;
      const sub = all ? ch.data : gatherRows(ch.data, rowsY, ch.dim);
      const r = held.nearest(sub, rowsY.length, y);
      rowsY.forEach((a, t) => {
        index[a] = r.index[t]!;
        distance[a] = r.distance[t]!;
      });
    }
    await onChunk(ch, { index, distance });
  }
}

/**
 * Per-class thresholds τ_y = min over Train_y × Test_y of ‖f(x) − f(x')‖² (METHOD.md §1).
 * The test side (`test`, e.g. ImageNet val) is held in memory per class; `train` is
 * streamed. Every class present in either set must have rows in both.
 */
export async function classThresholds(train: EmbeddingStore, test: EmbeddingStore, opts: { memoryBudgetMiB?: number } = {}): Promise<Map<number, Threshold>> {
  checkCompatible(train, test);
  for (const s of [train, test]) if (!s.hasLabel) throw new DataError(`${s.files.join(', ')} (${s.role}): column label is missing; τ_y needs labelled train and test features`);
  const t = await test.readAll();
  const held = new HeldGroups(t.data, t.dim, t.labels);
  const best = new Map<number, Threshold>();
  const trainClasses = new Set<number>();
  try {
    await streamNearest(train, held, (ch, a) => ch.labels![a]!, budgetBytes(opts.memoryBudgetMiB), (ch, res) => {
      for (let a = 0; a < ch.rows; a++) {
        const y = ch.labels![a]!;
        trainClasses.add(y);
        if (res.index[a]! < 0) continue;
        const cur = best.get(y);
        if (!cur || res.distance[a]! < cur.tau) best.set(y, { label: y, tau: res.distance[a]!, trainId: ch.ids[a]!, testId: t.ids[res.index[a]!]! });
      }
    });
  } finally {
    held.dispose();
  }
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
 * The test-leakage filter (METHOD.md §1): keeps pool image w of weak class y iff
 * min over T of d(w, x') ≥ τ_y, where T is the union of `tests` (any class; scope
 * `class`: T_y only). Exact duplicates (distance 0) always go, even where τ_y = 0.
 * The pool is streamed; the test union is held in memory.
 */
export async function leakageFilter(pool: EmbeddingStore, tests: readonly EmbeddingStore[], tau: ReadonlyMap<number, Threshold>, opts: FilterOptions = {}): Promise<FilterResult> {
  const scope = opts.scope ?? 'all';
  if (scope !== 'all' && scope !== 'class') throw new ConfigError(`--scope: expected all or class, received "${scope}"`);
  if (!pool.hasLabel) throw new DataError(`${pool.files.join(', ')} (pool): column label (weak label) is missing; the filter needs each pool image's weak class`);
  if (tests.length === 0) throw new ConfigError('--test: give at least one test set');
  const ids: string[] = [];
  const fileOf: string[] = [];
  const parts: Float32Array[] = [];
  const labs: number[] = [];
  for (const t of tests) {
    checkCompatible(pool, t);
    if (scope === 'class' && !t.hasLabel) throw new DataError(`${t.files.join(', ')} (test): column label is missing; --scope class needs labelled test sets`);
    const a = await t.readAll();
    ids.push(...a.ids);
    for (let i = 0; i < a.ids.length; i++) fileOf.push(t.files.join(','));
    parts.push(a.data);
    if (a.labels) labs.push(...a.labels);
  }
  const tData = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((o, p) => (tData.set(p, o), o + p.length), 0);
  const held = new HeldGroups(tData, pool.dim, scope === 'class' ? Int32Array.from(labs) : null);
  // With scope `class`, exact duplicates of test images of *other* classes must still go:
  // find them by a hash of the feature bytes (d = 0 ⇔ identical vectors).
  const dupOf = new Map<string, number>();
  if (scope === 'class') for (let t = 0; t < ids.length; t++) dupOf.set(rowHash(tData, t, pool.dim), t);
  const removed: RemovedRow[] = [];
  const summary = new Map<number, FilterClassSummary>();
  let kept = 0;
  try {
    await streamNearest(pool, held, scope === 'class' ? (ch, a) => ch.labels![a]! : null, budgetBytes(opts.memoryBudgetMiB), async (ch, res) => {
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
        let d = res.distance[a]!;
        let j = res.index[a]!;
        if (d !== 0 && dupOf.size) {
          const t = dupOf.get(rowHash(ch.data, a, ch.dim));
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
          removed.push({ id: ch.ids[a]!, label: y, nearestTestId: ids[j]!, nearestTestFile: fileOf[j]!, distance: d, tau: th.tau, reason: dup ? 'duplicate' : 'leak' });
        }
      }
      await opts.onChunk?.(ch, keep);
    });
  } finally {
    held.dispose();
  }
  return { kept, removed, summary: [...summary.values()].sort((a, b) => a.label - b.label) };
}

function rowHash(data: Float32Array, row: number, dim: number): string {
  return createHash('sha1')
    .update(new Uint8Array(data.buffer, data.byteOffset + row * dim * 4, dim * 4))
    .digest('base64');
}
