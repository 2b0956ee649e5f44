/**
 * Cleaner picks: score each pick's weak label by the weak labels of its k nearest pool
 * neighbours in the backbone's space, drop the picks that look mislabelled, and refill from
 * Algorithm 1's next candidates so that every seed keeps its budget.
 *
 * Two rules (docs/slices-and-cleaning.md restates them with their sources):
 * - `agreement` — the k-NN label-quality score of cleanlab's Datalab: the share of a pick's k
 *   nearest pool images whose weak label equals the pick's label; a pick is dropped when the
 *   share is below `minAgreement`.
 * - `confident` — confident learning (Northcutt, Jiang & Chuang, "Confident Learning:
 *   Estimating Uncertainty in Dataset Labels", JAIR 2021) with the k-NN vote as the
 *   out-of-sample class probability p̂(j | x) (share of neighbours labelled j). Per class j a
 *   threshold t_j is the mean of p̂(j | x) over pool images weakly labelled j (a seeded sample
 *   of them). A pick x labelled y is dropped when, among the classes j with p̂(j | x) ≥ t_j,
 *   the most probable is not y (y wins ties): x belongs to an off-diagonal cell of the
 *   confident joint.
 *
 * Refilling: the dropped images join Algorithm 1's exclusion set and the selection is run
 * again; Algorithm 1 then takes, for each seed, the next nearest free candidates, so the
 * budget per seed (and so per class) is what it was unless the class's pool runs out. New picks
 * are scored in turn, until a round drops nothing or `maxRounds` is reached.
 */
import { ConfigError, DataError } from '../core/errors.js';
import { log } from '../core/log.js';
import { mulberry32, streamSeed } from '../core/rng.js';
import { knnAsync, gatherRows, type KnnOptions } from './knn.js';
import { selectAlgorithm1, type SeedSet, type SelectOptions, type SelectResult, type Selection } from './select.js';
import type { EmbeddingStore } from './store.js';

/** How picks are judged; see the module comment. */
export type CleanRule = 'agreement' | 'confident';

/** Options of the k-NN label check. */
export interface CleanOptions {
  /** Pool neighbours per pick (default 10). */
  k?: number;
  /** Default `agreement`. */
  rule?: CleanRule;
  /** `agreement`: keep a pick when at least this share of its neighbours shares its label (default 0.3). */
  minAgreement?: number;
  /** `confident`: pool images per class sampled to estimate t_j (default 200). */
  thresholdSample?: number;
  /** RNG seed of that sample (default 0). */
  seed?: number;
  /** Selection rounds at most (default 10). */
  maxRounds?: number;
  /** Also clean the de-val picks (default true). */
  deval?: boolean;
  knn?: KnnOptions;
}

/** Defaults of {@link CleanOptions}, also what the docs state. */
export { CLEAN_DEFAULTS } from '../core/slices-schema.js';
import { CLEAN_DEFAULTS } from '../core/slices-schema.js';

/**
 * Weak labels of each query's k nearest pool rows, the query itself excluded.
 * @param queries row-major float32 [nq, dim]
 * @param pool row-major float32 [np, dim]; poolLabels Int32 [np]
 * @param self pool row of each query (-1 = not in the pool): that row is not its own neighbour
 * @returns Int32 [nq, k] neighbour labels, nearest first
 */
export async function neighbourLabels(queries: Float32Array, dim: number, pool: Float32Array, poolLabels: Int32Array, k: number, self?: Int32Array, opts: KnnOptions = {}): Promise<Int32Array> {
  const np = pool.length / dim;
  const nq = queries.length / dim;
  if (poolLabels.length !== np) throw new DataError(`label check: ${poolLabels.length} pool labels for ${np} pool rows`);
  if (!Number.isInteger(k) || k < 1) throw new ConfigError(`select.clean_k (--clean-k): expected an integer ≥ 1, received ${k}`);
  if (k > np - 1) throw new ConfigError(`select.clean_k (--clean-k): ${k} neighbours asked, but the pool has ${np} image(s) (at most ${np - 1} neighbours besides an image itself); lower clean_k`);
  if (self && self.length !== nq) throw new DataError(`label check: ${self.length} self rows for ${nq} queries`);
  const out = new Int32Array(nq * k);
  if (nq === 0) return out;
  // queries in chunks: the search holds them on the device beside a [chunk rows, queries] block
  const chunk = 1024;
  for (let q0 = 0; q0 < nq; q0 += chunk) {
    const q1 = Math.min(nq, q0 + chunk);
    const r = await knnAsync(queries.subarray(q0 * dim, q1 * dim), dim, pool, k + 1, opts);
    for (let q = q0; q < q1; q++) {
      const row = r.indices.subarray((q - q0) * (k + 1), (q - q0 + 1) * (k + 1));
    // drop the query's own row; if duplicates pushed it out of the k + 1, drop the farthest
      let skip = row.indexOf(self?.[q] ?? -1);
      if (skip < 0) skip = k;
      let w = 0;
      for (let t = 0; t <= k; t++) if (t !== skip) out[q * k + w++] = poolLabels[row[t]!]!;
    }
  }
  return out;
}

/** Share of `labels` (one k-row of neighbour labels) equal to each class of interest. */
function voteShare(nb: Int32Array, q: number, k: number, y: number): number {
  let c = 0;
  for (let t = 0; t < k; t++) if (nb[q * k + t] === y) c++;
  return c / k;
}

/** Per-class thresholds t_j of confident learning: the mean k-NN self-vote of pool images labelled j. */
export function classThresholdsFromVotes(nb: Int32Array, labels: Int32Array, k: number): Map<number, number> {
  const sum = new Map<number, number>();
  const cnt = new Map<number, number>();
  labels.forEach((y, q) => {
    sum.set(y, (sum.get(y) ?? 0) + voteShare(nb, q, k, y));
    cnt.set(y, (cnt.get(y) ?? 0) + 1);
  });
  return new Map([...sum].map(([y, s]) => [y, s / cnt.get(y)!]));
}

/** Verdict on each pick. */
export interface LabelScores {
  /** Share of neighbours sharing the pick's label, [n]. */
  agreement: Float64Array;
  /** 1 = likely mislabelled. */
  flagged: Uint8Array;
  /** `confident`: the class the confident joint puts the pick in (-1 = none passes its threshold). */
  suggested?: Int32Array;
}

/**
 * The verdict from a neighbour graph.
 * @param nb Int32 [n, k] neighbour labels (from {@link neighbourLabels})
 * @param labels label of each pick, Int32 [n]
 * @param thresholds `confident`: t_j per class (a class absent here never passes)
 */
export function scoreLabels(nb: Int32Array, labels: Int32Array, k: number, rule: CleanRule, opts: { minAgreement?: number; thresholds?: ReadonlyMap<number, number> } = {}): LabelScores {
  const n = labels.length;
  if (nb.length !== n * k) throw new DataError(`label check: ${nb.length} neighbour labels for ${n} picks × k=${k}`);
  const agreement = Float64Array.from(labels, (y, q) => voteShare(nb, q, k, y));
  const flagged = new Uint8Array(n);
  if (rule === 'agreement') {
    const m = opts.minAgreement ?? CLEAN_DEFAULTS.minAgreement;
    if (!(m >= 0 && m <= 1)) throw new ConfigError(`select.clean_min_agreement (--clean-min-agreement): expected a number in [0, 1], received ${m}`);
    agreement.forEach((a, q) => (flagged[q] = a < m ? 1 : 0));
    return { agreement, flagged };
  }
  if (rule !== 'confident') throw new ConfigError(`select.clean_rule (--clean-rule): expected "agreement" or "confident", received ${JSON.stringify(rule)}`);
  const t = opts.thresholds;
  if (!t) throw new ConfigError('label check: rule "confident" needs per-class thresholds');
  const suggested = new Int32Array(n).fill(-1);
  for (let q = 0; q < n; q++) {
    const y = labels[q]!;
    let best = -1;
    let bestP = -1;
    const classes = new Set<number>();
    for (let s = 0; s < k; s++) classes.add(nb[q * k + s]!);
    classes.add(y);
    for (const j of [...classes].sort((a, b) => a - b)) {
      const p = voteShare(nb, q, k, j);
      const tj = t.get(j);
      if (tj === undefined || p < tj) continue;
      if (p > bestP || (p === bestP && j === y)) (best = j), (bestP = p);
    }
    suggested[q] = best;
    flagged[q] = best >= 0 && best !== y ? 1 : 0;
  }
  return { agreement, flagged, suggested };
}

/** A pool held in memory for the label check. */
export interface LabelledPool {
  ids: readonly string[];
  labels: Int32Array;
  data: Float32Array;
  dim: number;
}

/**
 * A label checker over one pool: scores (image, label) pairs, each once.
 * `confident` estimates t_j on first use from up to `thresholdSample` pool images per class.
 */
export class KnnLabelCheck {
  private readonly rowOf: Map<string, number>;
  private readonly k: number;
  private readonly rule: CleanRule;
  private thresholds: Map<number, number> | null = null;
  private readonly cache = new Map<string, { agreement: number; flagged: boolean }>();

  constructor(
    private readonly pool: LabelledPool,
    private readonly opts: CleanOptions = {},
  ) {
    this.k = opts.k ?? CLEAN_DEFAULTS.k;
    this.rule = opts.rule ?? CLEAN_DEFAULTS.rule;
    if (pool.labels.length !== pool.ids.length || pool.data.length !== pool.ids.length * pool.dim)
      throw new DataError(`label check: pool has ${pool.ids.length} ids, ${pool.labels.length} labels and ${pool.data.length} values of width ${pool.dim}`);
    if (!Number.isInteger(this.k) || this.k < 1 || this.k > pool.ids.length - 1)
      throw new ConfigError(`select.clean_k (--clean-k): expected an integer in [1, ${pool.ids.length - 1}] (the pool has ${pool.ids.length} images), received ${this.k}`);
    this.rowOf = new Map(pool.ids.map((id, r) => [id, r]));
  }

  private async ensureThresholds(): Promise<Map<number, number>> {
    if (this.thresholds) return this.thresholds;
    const per = this.opts.thresholdSample ?? CLEAN_DEFAULTS.thresholdSample;
    if (!Number.isInteger(per) || per < 1) throw new ConfigError(`select.clean_threshold_sample: expected an integer ≥ 1, received ${per}`);
    const byClass = new Map<number, number[]>();
    this.pool.labels.forEach((y, r) => {
      if (!byClass.has(y)) byClass.set(y, []);
      byClass.get(y)!.push(r);
    });
    const rows: number[] = [];
    for (const y of [...byClass.keys()].sort((a, b) => a - b)) {
      const all = byClass.get(y)!;
      const rnd = mulberry32(streamSeed(this.opts.seed ?? CLEAN_DEFAULTS.seed, `clean-threshold-${y}`));
      // partial Fisher–Yates: the first `per` of a seeded shuffle
      for (let t = 0; t < Math.min(per, all.length); t++) {
        const s = t + Math.floor(rnd() * (all.length - t));
        [all[t], all[s]] = [all[s]!, all[t]!];
        rows.push(all[t]!);
      }
    }
    rows.sort((a, b) => a - b);
    const { data, dim, labels } = this.pool;
    const nb = await neighbourLabels(gatherRows(data, rows, dim), dim, data, labels, this.k, Int32Array.from(rows), this.opts.knn);
    this.thresholds = classThresholdsFromVotes(nb, Int32Array.from(rows, (r) => labels[r]!), this.k);
    return this.thresholds;
  }

  /** Per-class thresholds t_j (`confident` only; computed on first use). */
  classThresholds(): Promise<ReadonlyMap<number, number>> {
    return this.ensureThresholds();
  }

  /** Scores picks (pool ids, each with the label it is added under). */
  async score(ids: readonly string[], labels: ArrayLike<number>): Promise<{ agreement: number; flagged: boolean }[]> {
    const todo: number[] = [];
    const key = (i: number) => `${labels[i]}\u0000${ids[i]}`;
    ids.forEach((id, i) => {
      if (!this.rowOf.has(id)) throw new DataError(`label check: pick ${id} is not in the pool the check was given; pass the pool the selection came from`);
      if (!this.cache.has(key(i))) todo.push(i);
    });
    const uniq = [...new Map(todo.map((i) => [key(i), i])).values()];
    if (uniq.length) {
      const { data, dim } = this.pool;
      const rows = uniq.map((i) => this.rowOf.get(ids[i]!)!);
      const nb = await neighbourLabels(gatherRows(data, rows, dim), dim, data, this.pool.labels, this.k, Int32Array.from(rows), this.opts.knn);
      const lab = Int32Array.from(uniq, (i) => labels[i]!);
      const s = scoreLabels(nb, lab, this.k, this.rule, { minAgreement: this.opts.minAgreement, thresholds: this.rule === 'confident' ? await this.ensureThresholds() : undefined });
      uniq.forEach((i, t) => this.cache.set(key(i), { agreement: s.agreement[t]!, flagged: s.flagged[t] === 1 }));
    }
    return ids.map((_, i) => this.cache.get(key(i))!);
  }
}

/** A pick that cleaning dropped. */
export interface DroppedPick {
  id: string;
  label: number;
  seedId: string;
  /** `deval` or `train`. */
  set: 'deval' | 'train';
  agreement: number;
  /** Selection round (0 = the plain Algorithm 1 picks) in which it was picked and dropped. */
  round: number;
}

/** Result of {@link cleanSelect}. */
export interface CleanSelectResult extends SelectResult {
  /** Algorithm 1 without cleaning (round 0). */
  before: SelectResult;
  dropped: DroppedPick[];
  rounds: number;
  /** Picks of the final selection still flagged (only when `maxRounds` ran out). */
  stillFlagged: number;
}

/**
 * Algorithm 1 with the k-NN label check: select, drop flagged picks, exclude them and select
 * again, until no pick is flagged (see the module comment).
 * @param labelled the pool in memory, in the same space as `pool` (ids, weak labels, features)
 */
export async function cleanSelect(seeds: SeedSet, pool: EmbeddingStore, labelled: LabelledPool, opts: SelectOptions, clean: CleanOptions = {}): Promise<CleanSelectResult> {
  const check = new KnnLabelCheck(labelled, clean);
  const maxRounds = clean.maxRounds ?? CLEAN_DEFAULTS.maxRounds;
  if (!Number.isInteger(maxRounds) || maxRounds < 1) throw new ConfigError(`select.clean_max_rounds (--clean-max-rounds): expected an integer ≥ 1, received ${maxRounds}`);
  const withDeval = clean.deval ?? true;
  const exclude = new Set(opts.exclude ?? []);
  const dropped: DroppedPick[] = [];
  let before: SelectResult | null = null;
  let cur: SelectResult;
  let round = 0;
  let stillFlagged = 0;
  for (;;) {
    cur = await selectAlgorithm1(seeds, pool, { ...opts, exclude });
    before ??= cur;
    const sets: [DroppedPick['set'], Selection][] = [['train', cur.train]];
    if (withDeval && cur.deval) sets.unshift(['deval', cur.deval]);
    let n = 0;
    for (const [name, sel] of sets) {
      const s = await check.score(sel.ids, sel.labels);
      s.forEach((v, i) => {
        if (!v.flagged) return;
        n++;
        if (round + 1 < maxRounds) {
          dropped.push({ id: sel.ids[i]!, label: sel.labels[i]!, seedId: sel.seedIds[i]!, set: name, agreement: v.agreement, round });
          exclude.add(sel.ids[i]!);
        }
      });
    }
    round++;
    if (n === 0) break;
    if (round >= maxRounds) {
      stillFlagged = n;
      log.warn(`select.clean: ${n} pick(s) still flagged after ${maxRounds} round(s); they are kept (raise clean_max_rounds to keep cleaning)`);
      break;
    }
  }
  return { ...cur, before: before!, dropped, rounds: round, stillFlagged };
}

/**
 * Share of picks whose true class differs from the label they are added under, over the
 * picks whose true class is known (`truthOf` undefined = unknown); null when none is known.
 */
export function noiseRate(ids: readonly string[], labels: ArrayLike<number>, truthOf: (id: string) => number | undefined): { known: number; wrong: number; rate: number | null } {
  let known = 0;
  let wrong = 0;
  ids.forEach((id, i) => {
    const t = truthOf(id);
    if (t === undefined) return;
    known++;
    if (t !== labels[i]) wrong++;
  });
  return { known, wrong, rate: known ? wrong / known : null };
}
