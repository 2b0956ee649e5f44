import * as tf from '@tensorflow/tfjs';
import { DataError } from '../core/errors.js';
import { certifiedRetrievalBackend } from '../backends/host.js';
import { nativeAddon, registerNativeBackend, type NativeAddon } from '../backends/native.js';
import type { EmbeddingStore } from './store.js';

/**
 * Algorithm 1's candidate search on the native backend (native/src/select.cc): the pool is
 * streamed in chunks and each chunk goes to the addon whole, which buckets its rows by class,
 * screens every (seed, row) pair of a class with fp32 dot products and computes the float64
 * distance of each pair that can still enter the seed's running top-cap (a rigorous bound on
 * the screening error decides). So each seed keeps exactly its `cap` nearest rows of its class by
 * the float64 distance {@link exactSqDist} computes (ties: lower pool row), whatever the grouping,
 * chunking or thread count; the JS side only builds masks and keeps the ids of held rows.
 */

/** The addon's Algorithm 1 kernels when the active tfjs backend is `native` (or webgpu, see backends/host.ts) and they are built. */
export function alg1Kernels(): Pick<NativeAddon, 'alg1Chunk' | 'alg1Sort'> | null {
  if (!certifiedRetrievalBackend() || !registerNativeBackend().ok) return null;
  const a = nativeAddon() as Partial<NativeAddon>;
  return typeof a.alg1Chunk === 'function' && typeof a.alg1Sort === 'function' ? (a as NativeAddon) : null;
}

/** What the search needs from select.ts: seeds by class (ascending labels), per-seed caps, filters. */
export interface NativeSearchInput {
  seeds: { data: Float32Array; dim: number; n: number };
  /** Class label → its seeds' indices; `labels` lists the classes in ascending order. */
  byClass: Map<number, number[]>;
  labels: readonly number[];
  caps: Int32Array;
  anyLabel: boolean;
  exclude?: ReadonlySet<string>;
  only?: ReadonlySet<string>;
  chunkRows: number;
  /** Global pool row of the store's row r. */
  rowOf: (r: number) => number;
}

/** Per seed: candidate rows and float64 distances, sorted by (distance, row); ids of those rows; per-class candidate counts. */
export interface NativeSearchResult {
  indices: Int32Array[];
  distances: Float64Array[];
  ids: Map<number, string>;
  candidates: Map<number, number>;
  /** Pool rows that passed exclude/only. */
  eligible: number;
  /** float64 distances computed. */
  exact: number;
}

/** Runs the search over `pool` with the addon's kernels `kern`. */
export async function searchNative(kern: Pick<NativeAddon, 'alg1Chunk' | 'alg1Sort'>, pool: EmbeddingStore, x: NativeSearchInput): Promise<NativeSearchResult> {
  const ns = x.seeds.n;
  // Slots: one per class with seeds, or one of all seeds when any weak label is a candidate.
  let slotOfLabel: Int32Array;
  let slotStart: Int32Array;
  let slotSeeds: Int32Array;
  if (x.anyLabel) {
    slotOfLabel = new Int32Array(0);
    slotStart = Int32Array.of(0, ns);
    slotSeeds = Int32Array.from({ length: ns }, (_, i) => i);
  } else {
    slotOfLabel = new Int32Array((x.labels.length ? Math.max(...x.labels) : -1) + 1).fill(-1);
    slotStart = new Int32Array(x.labels.length + 1);
    const list: number[] = [];
    x.labels.forEach((y, s) => {
      slotOfLabel[y] = s;
      list.push(...x.byClass.get(y)!);
      slotStart[s + 1] = list.length;
    });
    slotSeeds = Int32Array.from(list);
  }
  // float64 offsets: all seeds' heaps together may pass 2³¹ entries (each one stays below)
  const heapBase = new Float64Array(ns + 1);
  for (let q = 0; q < ns; q++) heapBase[q + 1] = heapBase[q]! + x.caps[q]!;
  const heapD = new Float64Array(heapBase[ns]!);
  const heapJ = new Int32Array(heapBase[ns]!);
  const heapSize = new Int32Array(ns);
  const counts = new Float64Array(slotStart.length - 1);
  const idOf = new Map<number, string>();
  let eligible = 0;
  let exact = 0;
  // transient: each chunk is used only until the next is read (ids of kept rows are copied out as strings)
  for await (const ch of pool.chunks(x.chunkRows, { transient: true })) {
    let mask: Uint8Array | null = null;
    if (x.exclude || x.only) {
      mask = new Uint8Array(ch.rows);
      for (let a = 0; a < ch.rows; a++) {
        const id = ch.ids[a]!;
        mask[a] = x.exclude?.has(id) || (x.only && !x.only.has(id)) ? 0 : 1;
        eligible += mask[a]!;
      }
    } else eligible += ch.rows;
    const rowIds = new Int32Array(ch.rows);
    for (let a = 0; a < ch.rows; a++) {
      const g = x.rowOf(ch.start + a);
      if (g > 0x7fffffff) throw new DataError(`${pool.files.join(', ')} (pool): row ${g} is past the 2³¹ rows Algorithm 1's search can index; split the pool`);
      rowIds[a] = g;
    }
    const kept = new Uint8Array(ch.rows);
    exact += kern.alg1Chunk(x.seeds.data, x.seeds.dim, slotOfLabel, slotStart, slotSeeds, ch.data, x.anyLabel ? null : ch.labels, mask, rowIds, heapBase, heapD, heapJ, heapSize, counts, kept);
    for (let a = 0; a < ch.rows; a++) if (kept[a]) idOf.set(rowIds[a]!, ch.ids[a]!);
  }
  kern.alg1Sort(heapBase, heapD, heapJ, heapSize);
  const indices: Int32Array[] = [];
  const distances: Float64Array[] = [];
  const ids = new Map<number, string>();
  for (let q = 0; q < ns; q++) {
    const b = heapBase[q]!;
    indices.push(heapJ.slice(b, b + heapSize[q]!));
    distances.push(heapD.slice(b, b + heapSize[q]!));
    for (const j of indices[q]!) ids.set(j, idOf.get(j)!);
  }
  const candidates = new Map<number, number>(x.labels.map((y, s) => [y, counts[x.anyLabel ? 0 : s]!]));
  return { indices, distances, ids, candidates, eligible, exact };
}
