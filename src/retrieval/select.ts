import { ConfigError, DataError } from '../core/errors.js';
import { log } from '../core/log.js';
import { greedySweep, candidatesPerSeed, seedBudgets, type Picks } from './algorithm1.js';
import { distanceBlock, gatherRows, holdRows, releaseBlock, RunningTopK, type HeldRows } from './knn.js';
import { budgetBytes, checkCompatible, chunkRowsFor, EmbeddingStore } from './store.js';
import { alg1Kernels, searchNative } from './select-native.js';
import { searchGpu } from './select-gpu.js';
import { gpuRetrieval } from '../backends/host.js';

/** Seed images: ids, labels and embeddings [n, dim]. */
export interface SeedSet {
  ids: readonly string[];
  labels: Int32Array;
  data: Float32Array;
  dim: number;
  /** File they came from, for messages. */
  file?: string;
}

/** Per-class counts of one selection. */
export interface ClassSummary {
  label: number;
  /** Seed images of the class. */
  seeds: number;
  /** Pool images that were candidates for the class. */
  candidates: number;
  /** Pool images selected for the class. */
  selected: number;
  /** True when some seed got fewer than k picks because no candidate was left. */
  exhausted: boolean;
}

/** One selection: a row per selected pool image. */
export interface Selection {
  /** Pool image id. */
  ids: string[];
  /** Assigned class (the seed's class). */
  labels: Int32Array;
  /** The seed image the pick went to. */
  seedIds: string[];
  /**
   * Squared L2 distance seed–pick: the float64 distance rounded to float32 on the native and
   * webgpu backends, the float32 kernel's on the others.
   */
  distances: Float32Array;
  /** 1 = that seed's closest pick. */
  ranks: Int32Array;
  /** k per seed of this run (under a per-seed k, {@link SelectOptions.kPerSeed}: the largest). */
  k: number;
  summary: ClassSummary[];
}

/** Options of {@link selectAlgorithm1}. */
export interface SelectOptions {
  /** Debug-train picks per seed (k_train). */
  k: number;
  /**
   * Debug-train picks of each seed image, in the seed set's order, in place of `k` (e.g. the
   * budget of `select.per_slice`); each an integer ≥ 0. De-val keeps `kVal` per seed.
   */
  kPerSeed?: ArrayLike<number>;
  /** De-val picks per seed, selected first (k_val); 0 = no de-val run. Default 0. */
  kVal?: number;
  /** "Complete pool": candidates of any weak label, labelled with the seed's class. */
  anyLabel?: boolean;
  /** Pool ids that are never candidates (e.g. an earlier selection). */
  exclude?: ReadonlySet<string>;
  /** If given, only these pool ids are candidates (e.g. the ids kept by the leakage filter). */
  only?: ReadonlySet<string>;
  /** Allowed class labels; seeds outside it are an error. Default: the seeds' labels. */
  classes?: readonly number[];
  /** Memory budget for the streamed pool chunks, MiB. */
  memoryBudgetMiB?: number;
}

/** Result of {@link selectAlgorithm1}. */
export interface SelectResult {
  /** De-val set V (null when kVal = 0). */
  deval: Selection | null;
  /** Debug-train set D, selected from the pool minus V. */
  train: Selection;
}

interface ClassState {
  label: number;
  seedIdx: number[]; // indices into the seed set
  held: HeldRows;
  candidates: number;
}

/**
 * What Algorithm 1's candidate search keeps: per seed its nearest candidates (enough for
 * an exact sweep, see {@link candidatesPerSeed}), as global pool rows. Searches over
 * disjoint shards of the pool merge ({@link mergeCandidates}) into exactly the search of
 * the whole pool, so the search can run as a job array.
 */
export interface CandidateSet {
  /** Per seed: candidate pool rows, sorted by (distance, row). */
  indices: Int32Array[];
  /** Their distances: float64 on the native and webgpu backends (exact), float32 values elsewhere. */
  distances: Float64Array[];
  /** Pool id of every row that appears in `indices`. */
  ids: Map<number, string>;
  /** Per class: pool images that were candidates. */
  candidates: Map<number, number>;
}

/** Seeds grouped by class, checked against the options; the per-seed caps of the search. */
function seedClasses(seeds: SeedSet, pool: { dim: number; hasLabel: boolean; files: readonly string[] }, opts: SelectOptions) {
  const k = opts.k;
  const kVal = opts.kVal ?? 0;
  if (!Number.isInteger(k) || k < 1) throw new ConfigError(`--k: expected an integer ≥ 1, received ${k}`);
  if (!Number.isInteger(kVal) || kVal < 0) throw new ConfigError(`--k-val: expected an integer ≥ 0, received ${kVal}`);
  const seedFile = seeds.file ?? '<seeds>';
  if (seeds.dim !== pool.dim)
    throw new DataError(`${pool.files[0]} (pool): column embedding has width ${pool.dim}, but ${seedFile} (seed) has ${seeds.dim}; embed both with the same backbone`);
  if (!opts.anyLabel && !pool.hasLabel)
    throw new DataError(`${pool.files.join(', ')} (pool): no label column (weak labels); add it, or use --any-label`);
  const allowed = opts.classes ? new Set(opts.classes) : null;
  const byClass = new Map<number, number[]>();
  seeds.labels.forEach((y, i) => {
    if (y < 0 || (allowed && !allowed.has(y)))
      throw new DataError(
        `${seedFile} (seed): column label has ${y} for id ${seeds.ids[i]}, outside the class list${allowed ? ` (${[...allowed].slice(0, 10).join(', ')}${allowed.size > 10 ? ', …' : ''})` : ' (labels must be ≥ 0)'}`,
      );
    if (!byClass.has(y)) byClass.set(y, []);
    byClass.get(y)!.push(i);
  });
  const labels = [...byClass.keys()].sort((a, b) => a - b);
  // debug-train k per seed: one for all, or the per-seed budget
  let kOf: Int32Array;
  try {
    kOf = seedBudgets(opts.kPerSeed ?? k, seeds.ids.length);
  } catch (e) {
    throw new ConfigError(`kPerSeed (select.per_slice): ${(e as Error).message.replace(/^Algorithm 1: /, '')}`);
  }
  // Global query index = seed index; caps per seed: the picks of its class's two runs, the bound
  // of candidatesPerSeed (float64: k·|S_y| may pass 2³¹).
  const caps = new Float64Array(seeds.ids.length);
  for (const [, idx] of byClass) {
    const trainPicks = idx.reduce((a, i) => a + kOf[i]!, 0);
    for (const i of idx) caps[i] = Math.min(candidatesPerSeed(kVal, idx.length) + candidatesPerSeed(trainPicks, 1), Number.MAX_SAFE_INTEGER);
  }
  return { k, kVal, kOf, byClass, labels, caps };
}

/** Most candidates one search holds over all seeds (int32 heap rows and typed-array lengths). */
const MAX_HELD = 2 ** 31 - 1;
/** Above this many held candidates (≈ 200 MB), a pass over the labels tightens the caps first. */
const COUNT_PASS_AT = 2 ** 24;

/**
 * The per-seed caps of a search over `pool`, clamped to what it can give: a seed never keeps
 * more candidates than its class has rows, so a k past the class size (Algorithm 1 then picks
 * every image of the class and stops, the class pool being exhausted) costs memory for the rows
 * there are, not for k·|S_y|. The first bound is the pool's estimated row count (no read);
 * when the caps still add up to more than {@link COUNT_PASS_AT}, one pass over the label column
 * counts the rows of each class.
 */
async function boundCaps(caps: Float64Array, byClass: Map<number, number[]>, pool: EmbeddingStore, opts: SelectOptions): Promise<Int32Array> {
  const sum = (c: Float64Array) => c.reduce((a, b) => a + b, 0);
  const rows = pool.estimatedRows();
  let bounded = caps.map((c) => Math.min(c, rows));
  if (sum(bounded) > COUNT_PASS_AT) {
    const counts = await pool.rowCounts();
    bounded = new Float64Array(caps.length);
    for (const [y, idx] of byClass) {
      const n = opts.anyLabel ? counts.rows : (counts.byLabel.get(y) ?? 0);
      for (const i of idx) bounded[i] = Math.min(caps[i]!, n);
    }
  }
  const total = sum(bounded);
  if (total > MAX_HELD)
    throw new ConfigError(
      `--k ${opts.k}${opts.kVal ? ` and --k-val ${opts.kVal}` : ''}: the search would hold ${total} candidates (seeds × min(k·|S_y|, class rows)), more than the ${MAX_HELD} one search can; lower k, or run the selection per class`,
    );
  return Int32Array.from(bounded);
}

/**
 * Algorithm 1 over a streamed pool, per class: de-val V (kVal per seed) first, then
 * debug-train D (k per seed) from the pool minus V. One pass over the pool keeps, per
 * seed, its (kVal + k)·|S_y| nearest candidates (enough for both runs to be exact, see
 * {@link candidatesPerSeed}); the sweep then runs on those.
 *
 * Per class, candidates are the pool images whose weak label is the class; with
 * `anyLabel` they are all pool images. Classes are independent, as in the paper, so in
 * the `anyLabel` variant one image can be picked for two classes.
 */
export async function selectAlgorithm1(seeds: SeedSet, pool: EmbeddingStore, opts: SelectOptions): Promise<SelectResult> {
  return sweepCandidates(seeds, await searchCandidates(seeds, pool, opts), opts);
}

/**
 * The candidate search of {@link selectAlgorithm1}: one pass over `pool`.
 *
 * On the native backend each seed keeps its nearest candidates by the float64 distance
 * (./select-native.ts: screened in fp32, certified, so the picks are those of Algorithm 1 on
 * float64 distances); on webgpu the same candidates, screened on the GPU (./select-gpu.ts);
 * elsewhere by the backend's float32 matMul, class by class.
 * @param rowOf global pool row of the store's row `r` (default: `r`), increasing in `r`; a
 *   search over a shard of the pool passes the shard rows' positions in the whole pool, so
 *   that ties break as in a search of the whole pool
 */
export async function searchCandidates(seeds: SeedSet, pool: EmbeddingStore, opts: SelectOptions, rowOf?: (r: number) => number): Promise<CandidateSet> {
  const { byClass, labels, caps: wanted } = seedClasses(seeds, pool, opts);
  const caps = await boundCaps(wanted, byClass, pool, opts);
  const g = rowOf ?? ((r: number) => r);
  const gpu = gpuRetrieval();
  const kern = gpu ? null : alg1Kernels();
  if (gpu || kern) {
    const maxCols = opts.anyLabel ? seeds.ids.length : Math.max(1, ...labels.map((y) => byClass.get(y)!.length));
    const input = {
      seeds: { data: seeds.data, dim: seeds.dim, n: seeds.ids.length },
      byClass,
      labels,
      caps,
      anyLabel: opts.anyLabel ?? false,
      exclude: opts.exclude,
      only: opts.only,
      chunkRows: chunkRowsFor(budgetBytes(opts.memoryBudgetMiB), pool.dim, maxCols),
      rowOf: g,
    };
    const r = kern ? await searchNative(kern, pool, input) : await searchGpu(pool, input);
    if (r.eligible === 0) log.warn(`pool ${pool.files.join(', ')}: no candidate rows after --exclude/--only`);
    return { indices: r.indices, distances: r.distances, ids: r.ids, candidates: r.candidates };
  }
  const top = new RunningTopK(seeds.ids.length, caps);
  const states = new Map<number, ClassState>();
  const allSeeds = Int32Array.from({ length: seeds.ids.length }, (_, i) => i);
  let allHeld: HeldRows | null = null;
  const idOf = new Map<number, string>();
  try {
    for (const y of labels) {
      const idx = byClass.get(y)!;
      states.set(y, { label: y, seedIdx: idx, held: holdRows(gatherRows(seeds.data, idx, seeds.dim), seeds.dim), candidates: 0 });
    }
    if (opts.anyLabel) allHeld = holdRows(seeds.data, seeds.dim);
    const maxCols = opts.anyLabel ? seeds.ids.length : Math.max(1, ...labels.map((y) => byClass.get(y)!.length));
    const rows = chunkRowsFor(budgetBytes(opts.memoryBudgetMiB), pool.dim, maxCols);
    let eligibleTotal = 0;
    // transient: each chunk is used only until the next is read (distance blocks, ids copied out)
    for await (const ch of pool.chunks(rows, { transient: true })) {
      // Rows that may be candidates at all.
      const keep: number[] = [];
      for (let a = 0; a < ch.rows; a++) {
        const id = ch.ids[a]!;
        if (opts.exclude?.has(id)) continue;
        if (opts.only && !opts.only.has(id)) continue;
        keep.push(a);
      }
      eligibleTotal += keep.length;
      if (opts.anyLabel) {
        for (const st of states.values()) st.candidates += keep.length;
        const block = distanceBlock(gatherRows(ch.data, keep, ch.dim), keep.length, allHeld!);
        const kept = top.pushBlock(block, keep.length, keep.map((a) => g(ch.start + a)), allSeeds);
        releaseBlock(block);
        kept.forEach((f, r) => f && idOf.set(g(ch.start + keep[r]!), ch.ids[keep[r]!]!));
        continue;
      }
      const groups = new Map<number, number[]>();
      for (const a of keep) {
        const y = ch.labels![a]!;
        if (!states.has(y)) continue;
        if (!groups.has(y)) groups.set(y, []);
        groups.get(y)!.push(a);
      }
      for (const [y, rowsY] of groups) {
        const st = states.get(y)!;
        st.candidates += rowsY.length;
        const block = distanceBlock(ch.data, rowsY.length, st.held, rowsY);
        const kept = top.pushBlock(block, rowsY.length, rowsY.map((a) => g(ch.start + a)), st.seedIdx);
        releaseBlock(block);
        kept.forEach((f, r) => f && idOf.set(g(ch.start + rowsY[r]!), ch.ids[rowsY[r]!]!));
      }
    }
    if (eligibleTotal === 0) log.warn(`pool ${pool.files.join(', ')}: no candidate rows after --exclude/--only`);
  } finally {
    for (const st of states.values()) st.held.dispose();
    allHeld?.dispose();
  }
  const indices: Int32Array[] = [];
  const distances: Float64Array[] = [];
  for (let q = 0; q < seeds.ids.length; q++) {
    const e = top.sorted(q);
    indices.push(e.indices);
    distances.push(Float64Array.from(e.distances));
  }
  const ids = new Map<number, string>();
  for (const ix of indices) for (const j of ix) ids.set(j, idOf.get(j)!);
  return { indices, distances, ids, candidates: new Map([...states].map(([y, st]) => [y, st.candidates])) };
}

/**
 * The search of the whole pool from searches of disjoint shards of it (each with global
 * rows): per seed, the nearest `caps` of the union by (distance, row), as one search
 * keeps them; candidate counts add up.
 */
export function mergeCandidates(seeds: SeedSet, parts: readonly CandidateSet[], opts: SelectOptions): CandidateSet {
  const { caps } = seedClasses(seeds, { dim: seeds.dim, hasLabel: true, files: ['<merged>'] }, opts);
  const indices: Int32Array[] = [];
  const distances: Float64Array[] = [];
  const ids = new Map<number, string>();
  for (let q = 0; q < seeds.ids.length; q++) {
    const all: { d: number; j: number }[] = [];
    for (const p of parts) p.indices[q]!.forEach((j, t) => all.push({ d: p.distances[q]![t]!, j }));
    all.sort((a, b) => a.d - b.d || a.j - b.j);
    for (let t = 1; t < all.length; t++) if (all[t]!.j === all[t - 1]!.j && all[t]!.d === all[t - 1]!.d) throw new ConfigError(`merge of candidate searches: pool row ${all[t]!.j} is in two shards; shards must be disjoint`);
    const top = all.slice(0, caps[q]!);
    indices.push(Int32Array.from(top, (e) => e.j));
    distances.push(Float64Array.from(top, (e) => e.d));
    for (const e of top) {
      const id = parts.map((p) => p.ids.get(e.j)).find((x) => x !== undefined);
      ids.set(e.j, id!);
    }
  }
  const candidates = new Map<number, number>();
  for (const p of parts) for (const [y, n] of p.candidates) candidates.set(y, (candidates.get(y) ?? 0) + n);
  return { indices, distances, ids, candidates };
}

/** Algorithm 1's sweeps (de-val, then debug-train) on the candidates of a search. */
export function sweepCandidates(seeds: SeedSet, cs: CandidateSet, opts: SelectOptions): SelectResult {
  const { kVal, kOf, byClass, labels } = seedClasses(seeds, { dim: seeds.dim, hasLabel: true, files: ['<candidates>'] }, opts);
  const states = new Map<number, { label: number; seedIdx: number[]; candidates: number }>();
  for (const y of labels) states.set(y, { label: y, seedIdx: byClass.get(y)!, candidates: cs.candidates.get(y) ?? 0 });
  const idOf = cs.ids;
  const top = { sorted: (q: number) => ({ indices: cs.indices[q]!, distances: cs.distances[q]! }) };
  // Per class: entries from the retained candidates, then the sweeps.
  type Part = { y: number; st: { seedIdx: number[]; candidates: number }; picks: Picks; k: Int32Array };
  const devalParts: Part[] = [];
  const trainParts: Part[] = [];
  for (const y of labels) {
    const st = states.get(y)!;
    const ii: number[] = [];
    const jj: number[] = [];
    const dd: number[] = [];
    st.seedIdx.forEach((s, local) => {
      const e = top.sorted(s);
      for (let t = 0; t < e.indices.length; t++) {
        ii.push(local);
        jj.push(e.indices[t]!);
        dd.push(e.distances[t]!);
      }
    });
    let entries = { i: Int32Array.from(ii), j: Int32Array.from(jj), d: Float64Array.from(dd) };
    if (kVal > 0) {
      const v = greedySweep(entries, st.seedIdx.length, kVal);
      devalParts.push({ y, st, picks: v, k: new Int32Array(st.seedIdx.length).fill(kVal) });
      const taken = new Set(v.cand);
      const keep = [...entries.j.keys()].filter((t) => !taken.has(entries.j[t]!));
      entries = { i: Int32Array.from(keep, (t) => entries.i[t]!), j: Int32Array.from(keep, (t) => entries.j[t]!), d: Float64Array.from(keep, (t) => entries.d[t]!) };
    }
    const kLocal = Int32Array.from(st.seedIdx, (s) => kOf[s]!);
    trainParts.push({ y, st, picks: greedySweep(entries, st.seedIdx.length, kLocal), k: kLocal });
  }
  const build = (parts: Part[], kk: number, name: string, removed: (y: number) => number): Selection => {
    const sel: Selection = { ids: [], labels: new Int32Array(0), seedIds: [], distances: new Float32Array(0), ranks: new Int32Array(0), k: kk, summary: [] };
    const lab: number[] = [];
    const dist: number[] = [];
    const rank: number[] = [];
    for (const { y, st, picks, k: kSeed } of parts) {
      // Rows ordered by seed, then rank: easy to read, stable.
      const order = [...picks.seed.keys()].sort((a, b) => picks.seed[a]! - picks.seed[b]! || picks.rank[a]! - picks.rank[b]!);
      for (const t of order) {
        sel.ids.push(idOf.get(picks.cand[t]!)!);
        lab.push(y);
        sel.seedIds.push(seeds.ids[st.seedIdx[picks.seed[t]!]!]!);
        dist.push(picks.dist[t]!);
        rank.push(picks.rank[t]!);
      }
      const exhausted = picks.perSeed.some((c, i) => c < kSeed[i]!);
      sel.summary.push({ label: y, seeds: st.seedIdx.length, candidates: st.candidates - removed(y), selected: picks.seed.length, exhausted });
      const uniform = kSeed.every((x) => x === kk);
      if (exhausted)
        log.warn(
          `${name}: class ${y} ran out of pool images: ${picks.seed.length} selected for ${st.seedIdx.length} seed(s) × ${uniform ? `k=${kk}` : `per-seed k (${kSeed.reduce((a, b) => a + b, 0)} in all)`} from ${st.candidates - removed(y)} candidate(s)`,
        );
    }
    sel.labels = Int32Array.from(lab);
    sel.distances = Float32Array.from(dist);
    sel.ranks = Int32Array.from(rank);
    return sel;
  };
  const deval = kVal > 0 ? build(devalParts, kVal, 'de-val', () => 0) : null;
  const devalCount = new Map(devalParts.map((p) => [p.y, p.picks.seed.length]));
  const train = build(trainParts, opts.kPerSeed ? kOf.reduce((a, b) => Math.max(a, b), 0) : opts.k, 'debug-train', (y) => devalCount.get(y) ?? 0);
  if (opts.anyLabel) {
    const seen = new Map<string, number>();
    for (const id of train.ids) seen.set(id, (seen.get(id) ?? 0) + 1);
    const dup = [...seen.values()].filter((c) => c > 1).length;
    if (dup) log.warn(`--any-label: ${dup} pool image(s) were selected for more than one class (classes are selected independently)`);
  }
  return { deval, train };
}

/** Opens seed and pool files and checks that they can be compared. */
export async function openSeedAndPool(
  seedFiles: readonly string[],
  poolFiles: readonly string[],
  opts: { normalize?: boolean; anyLabel?: boolean } = {},
): Promise<{ seeds: SeedSet; pool: EmbeddingStore }> {
  const seedStore = await EmbeddingStore.open(seedFiles, { role: 'seed', requireLabel: true, normalize: opts.normalize });
  const pool = await EmbeddingStore.open(poolFiles, { role: 'pool', requireLabel: !opts.anyLabel, normalize: opts.normalize });
  checkCompatible(seedStore, pool);
  const s = await seedStore.readAll();
  return { seeds: { ids: s.ids, labels: s.labels!, data: s.data, dim: s.dim, file: seedFiles.join(', ') }, pool };
}
