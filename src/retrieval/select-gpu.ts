import { DataError } from '../core/errors.js';
import { exactSqDist } from './knn.js';
import { GpuCols, rowMean, screen, screenBound, screenOperand, type ScreenOperand } from './gpu-screen.js';
import type { NativeSearchInput, NativeSearchResult } from './select-native.js';
import type { EmbeddingStore } from './store.js';

/**
 * Algorithm 1's candidate search on the webgpu backend: the native search's answer
 * (./select-native.ts), screened on the GPU. Per chunk of the pool and class, the class's rows are
 * uploaded as screening columns (./gpu-screen.ts) and screened against the class's seeds; a pair
 * is read back when its fp32 screening distance can still reach the seed's cap-th float64
 * distance so far (within the screening bound, the rule of select.cc's SelectBound), and then
 * ranked by its float64 distance (`exactSqDist`). So each seed keeps exactly its `cap` nearest
 * rows of its class by the float64 distance, ties to the lower pool row: the native backend's
 * candidates, bit for bit.
 */
export async function searchGpu(pool: EmbeddingStore, x: NativeSearchInput): Promise<NativeSearchResult> {
  const { n: ns, dim, data: seeds } = x.seeds;
  // Slots: one per class with seeds, or one of all seeds when any weak label is a candidate.
  const slotSeeds: number[][] = x.anyLabel ? [Array.from({ length: ns }, (_, i) => i)] : x.labels.map((y) => x.byClass.get(y)!);
  const slotOf = new Map<number, number>(x.labels.map((y, s) => [y, s]));
  // Centred on the seeds' mean: distances do not change, the norms and the bound shrink.
  const mu = rowMean(seeds, dim);
  const operands: ScreenOperand[] = slotSeeds.map((idx) => screenOperand(seeds, dim, mu, idx));
  const E = screenBound(dim);
  // Per seed: its candidates (float64 distance, pool row), at most cap once trimmed, and the cap-th distance when full.
  const cd: number[][] = Array.from({ length: ns }, () => []);
  const cj: number[][] = Array.from({ length: ns }, () => []);
  const top = new Float64Array(ns).fill(Infinity);
  const counts = new Float64Array(slotSeeds.length);
  const idOf = new Map<number, string>();
  let eligible = 0;
  let exact = 0;
  // transient: each chunk is used only until the next is read (ids of kept rows are copied out as strings)
  for await (const ch of pool.chunks(x.chunkRows, { transient: true })) {
    const bySlot: number[][] = slotSeeds.map(() => []);
    const rowIds = new Int32Array(ch.rows).fill(-1); // −1: not a candidate (--exclude / --only)
    for (let a = 0; a < ch.rows; a++) {
      const id = ch.ids[a]!;
      if (x.exclude?.has(id) || (x.only && !x.only.has(id))) continue;
      eligible++;
      const g = x.rowOf(ch.start + a);
      if (g > 0x7fffffff) throw new DataError(`${pool.files.join(', ')} (pool): row ${g} is past the 2³¹ rows Algorithm 1's search can index; split the pool`);
      rowIds[a] = g;
      const s = x.anyLabel ? 0 : slotOf.get(ch.labels![a]!);
      if (s !== undefined) bySlot[s]!.push(a);
    }
    const touched = new Set<number>();
    for (let s = 0; s < slotSeeds.length; s++) {
      const rows = bySlot[s]!;
      counts[s]! += rows.length;
      if (rows.length === 0) continue;
      const q = operands[s]!;
      const cols = new GpuCols(ch.data, dim, mu, rows);
      try {
        const e = Float64Array.from(q.norm, (nx) => E(nx, cols.maxNorm));
        // A pair can enter the seed's top-cap only if d ≤ its cap-th distance so far: screening s ≤ that + e.
        const cap = Float64Array.from(slotSeeds[s]!, (seed, i) => (x.caps[seed]! > 0 ? top[seed]! + e[i]! : -Infinity));
        const c = await screen(q, cols, { k: 0, e, cap });
        slotSeeds[s]!.forEach((seed, i) => {
          const b = c.start[i]!;
          const end = c.start[i + 1]!;
          if (b === end) return;
          touched.add(seed);
          for (let t = b; t < end; t++) {
            const a = rows[c.col[t]!]!;
            cd[seed]!.push(exactSqDist(seeds, seed, ch.data, a, dim));
            cj[seed]!.push(rowIds[a]!);
          }
          exact += end - b;
        });
      } finally {
        cols.dispose();
      }
    }
    // Trim each touched seed to its cap nearest by (distance, row); keep the ids of this chunk's rows still held.
    const localOf = new Map<number, number>();
    for (let a = 0; a < ch.rows; a++) if (rowIds[a]! >= 0) localOf.set(rowIds[a]!, a);
    for (const q of touched) {
      const cap = x.caps[q]!;
      const order = cd[q]!.map((_, t) => t).sort((u, v) => cd[q]![u]! - cd[q]![v]! || cj[q]![u]! - cj[q]![v]!).slice(0, cap);
      cd[q] = order.map((t) => cd[q]![t]!);
      cj[q] = order.map((t) => cj[q]![t]!);
      if (cd[q]!.length === cap) top[q] = cd[q]![cap - 1]!;
      for (const j of cj[q]!) {
        const a = localOf.get(j);
        if (a !== undefined) idOf.set(j, ch.ids[a]!);
      }
    }
  }
  const indices = cj.map((j) => Int32Array.from(j));
  const distances = cd.map((d) => Float64Array.from(d));
  const ids = new Map<number, string>();
  for (const ix of indices) for (const j of ix) ids.set(j, idOf.get(j)!);
  const candidates = new Map<number, number>(x.labels.map((y, s) => [y, counts[x.anyLabel ? 0 : s]!]));
  return { indices, distances, ids, candidates, eligible, exact };
}
