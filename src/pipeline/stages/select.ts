/**
 * Select stage: Algorithm 1 with one backbone. Under `select.per_slice` it reads the world's
 * slices stage and gives each seed image its share of its slice's budget (docs/slices-and-cleaning.md).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, DataError } from '../../core/errors.js';
import { log } from '../../core/log.js';
import { atomicWriteJson } from '../../core/fsutil.js';
import { buildTable, writeArrowFile } from '../../core/arrow.js';
import type { BackboneConfig, Config } from '../../core/config.js';
import { EmbeddingStore } from '../../retrieval/store.js';
import { mergeCandidates, searchCandidates, selectAlgorithm1, sweepCandidates, type CandidateSet, type SeedSet, type SelectOptions, type SelectResult, type Selection } from '../../retrieval/select.js';
import type { StageContext, StageOutputs, StageSpec } from '../runner.js';
import { subsetEmbeddingRows } from '../shards.js';
import { subsetImageSet, writeImageSet, type ImageSet } from '../imagesets.js';
import { readSet } from './common.js';
import { sliceBudgetOf, type SlicesState } from './slices.js';
import { classCounts, sizeSelection, type SelectionSizing } from '../sizing.js';
import { cleanSelect, type CleanSelectResult } from '../../retrieval/clean.js';
import { writeTableWithCsv } from '../../retrieval/output.js';

/** Writes a selection as an image set (the picked pool rows with their new labels) and its picks table. */
async function writeSelection(ctx: StageContext, pool: ImageSet, sel: Selection, name: string): Promise<Record<string, string>> {
  const at = new Map(pool.rows.map((r, i) => [r.id, i]));
  const idx = sel.ids.map((id) => {
    const i = at.get(id);
    if (i === undefined) throw new DataError(`selection ${name}: pool id ${id} is not in the filtered pool`);
    return i;
  });
  const set = subsetImageSet(pool, idx, name);
  set.rows = set.rows.map((r, j) => ({ ...r, label: sel.labels[j]! }));
  const files = await writeImageSet(ctx.dir, set);
  await writePicks(path.join(ctx.dir, `${name}-picks.arrow`), sel);
  return { ...files, [`${name}_picks`]: `${name}-picks.arrow` };
}

/**
 * Debug-train picks per slice against the budget `per_slice`; a warning for each slice that got
 * fewer (its seeds' classes ran out of pool images: Algorithm 1 warns per class too).
 */
function perSliceCounts(state: SlicesState, train: Selection, perSlice: number): { per_slice: number; slices: { slice: number; seeds: number; selected: number }[] } {
  const sliceOf = new Map<string, number>();
  state.slices.forEach((x, c) => x.members.forEach((i) => sliceOf.set(state.seedIds[i]!, c)));
  const selected = new Array<number>(state.slices.length).fill(0);
  for (const id of train.seedIds) selected[sliceOf.get(id)!]! += 1;
  const short = selected.flatMap((n, c) => (n < perSlice ? [`slice ${c + 1} ${n}`] : []));
  if (short.length)
    log.warn(`select.per_slice ${perSlice}: ${short.length} slice(s) got fewer debug-train picks (${short.join(', ')}): their classes ran out of pool images; lower select.per_slice or add pool images of those classes`);
  return { per_slice: perSlice, slices: selected.map((n, c) => ({ slice: c + 1, seeds: state.slices[c]!.members.length, selected: n })) };
}

/** A selection's picks table: id, label added under, seed image, distance, rank. */
async function writePicks(file: string, sel: Selection): Promise<void> {
  await writeArrowFile(
    file,
    buildTable({
      id: { kind: 'utf8', values: sel.ids },
      label: { kind: 'int32', values: sel.labels },
      seed_id: { kind: 'utf8', values: sel.seedIds },
      distance: { kind: 'float32', values: sel.distances },
      rank: { kind: 'int32', values: sel.ranks },
    }),
  );
}

/**
 * Algorithm 1 with one backbone: de-val V, then debug-train D from W' \ V.
 * @param slices the world's slices stage, when `select.per_slice` budgets the picks per slice
 */
export function selectStage(cfg: Config, b: BackboneConfig, failures: StageSpec, embMfreq: StageSpec, embPool: StageSpec, filter: StageSpec, suffix = '', slices?: StageSpec): StageSpec {
  const s = cfg.select;
  const clean = s.clean === 'knn';
  const perSlice = slices ? s.per_slice : undefined;
  if (slices && perSlice === undefined) throw new ConfigError('select stage: a slices stage was given but select.per_slice is not set');
  const spec: StageSpec = {
    stage: 'select',
    label: (b.label ?? b.name) + suffix,
    // 2: on the native backend, Algorithm 1 on float64 distances (select-native.ts)
    version: 2,
    // the clean and per_slice keys only when set, so that a run without them keeps its cached selections
    config: {
      k_val: s.k_val,
      k_train: s.k_train,
      candidates: s.candidates,
      normalize: s.normalize,
      pool_share: s.pool_share,
      ...(clean ? { clean: s.clean, clean_k: s.clean_k, clean_rule: s.clean_rule, clean_min_agreement: s.clean_min_agreement, clean_max_rounds: s.clean_max_rounds } : {}),
      ...(perSlice !== undefined ? { per_slice: perSlice } : {}),
    },
    deps: { failures, embMfreq, embPool, filter, ...(slices ? { slices } : {}) },
    async run(ctx) {
      const x = await inputs(ctx);
      const pool = await EmbeddingStore.open([x.poolFile], { role: 'pool', requireLabel: clean || s.candidates === 'weak_label', normalize: s.normalize });
      if (!clean) return finish(ctx, x, await selectAlgorithm1(x.seeds, pool, x.opts));
      // every pool image votes with its weak label, including those the leakage filter keeps from being picked
      const all = await pool.readAll();
      const r = await cleanSelect(x.seeds, pool, { ids: all.ids, labels: all.labels!, data: all.data, dim: all.dim }, x.opts, {
        k: s.clean_k,
        rule: s.clean_rule,
        minAgreement: s.clean_min_agreement,
        maxRounds: s.clean_max_rounds,
      });
      return finish(ctx, x, r);
    },
    // Row shards (not under select.clean, which reruns Algorithm 1 after each round of its label
    // check over the whole pool, in memory: a stage of one process). Part i searches the pool rows j with j mod n = i (global row j, so ties
    // break as in one search); the merge keeps each seed's nearest of the union and sweeps.
    shards: clean ? undefined : {
      async part(ctx, dir, index, count) {
        const x = await inputs(ctx);
        const file = path.join(dir, 'pool-part.arrow');
        await subsetEmbeddingRows(x.poolFile, (j) => j % count === index, file);
        const pool = await EmbeddingStore.open([file], { role: `pool part ${index}/${count}`, requireLabel: s.candidates === 'weak_label', normalize: s.normalize });
        const cs = await searchCandidates(x.seeds, pool, x.opts, (r) => r * count + index);
        await atomicWriteJson(path.join(dir, 'candidates.json'), {
          indices: cs.indices.map((a) => Array.from(a)),
          distances: cs.distances.map((a) => Array.from(a)),
          ids: [...cs.ids],
          candidates: [...cs.candidates],
        });
        return { candidates: 'candidates.json' };
      },
      async merge(ctx, parts) {
        const x = await inputs(ctx);
        const sets: CandidateSet[] = parts.map(({ dir: d }) => {
          const j = JSON.parse(readFileSync(path.join(d, 'candidates.json'), 'utf8')) as { indices: number[][]; distances: number[][]; ids: [number, string][]; candidates: [number, number][] };
          return { indices: j.indices.map((a) => Int32Array.from(a)), distances: j.distances.map((a) => Float64Array.from(a)), ids: new Map(j.ids), candidates: new Map(j.candidates) };
        });
        return finish(ctx, x, sweepCandidates(x.seeds, mergeCandidates(x.seeds, sets, x.opts), x.opts));
      },
    },
  };
  return spec;

  /** The seed images' features, the pool file, the filtered pool and Algorithm 1's options. */
  async function inputs(ctx: StageContext) {
    const seedRows = await readSet(ctx.inputs.failures!, 'seed');
    const subset = JSON.parse(readFileSync(ctx.inputs.failures!.file('subset'), 'utf8')) as number[];
    const mf = await EmbeddingStore.open([ctx.inputs.embMfreq!.file('embeddings')], { role: 'mfreq', requireLabel: true, normalize: s.normalize });
    const all = await mf.readAll();
    const pos = new Map(all.ids.map((id, i) => [id, i]));
    const keep = seedRows.rows.filter((r) => pos.has(r.id));
    const data = new Float32Array(keep.length * all.dim);
    keep.forEach((r, j) => data.set(all.data.subarray(pos.get(r.id)! * all.dim, (pos.get(r.id)! + 1) * all.dim), j * all.dim));
    const filtered = await readSet(ctx.inputs.filter!, 'pool_filtered');
    const seeds: SeedSet = { ids: keep.map((x) => x.id), labels: Int32Array.from(keep, (x) => x.label), data, dim: all.dim, file: ctx.inputs.embMfreq!.file('embeddings') };
    // k_train from the measured failures (select.pool_share) and the warnings, before any method trains
    const sizing = sizeSelection(s, classCounts(subset, filtered.rows.map((x) => x.weak_label ?? -1), keep.map((x) => x.label)));
    if (sizing.poolShare !== undefined) ctx.log(`k_train ${sizing.kTrain}: pool_share ${sizing.poolShare} of the subset pool (${(100 * sizing.share).toFixed(1)}% asked for)`);
    // one backbone's stage says it: every backbone's select sees the same counts (under per_slice
    // k_train is not used: the per-slice shortfall is warned about after the selection)
    if (cfg.backbones.indexOf(b) === 0 && perSlice === undefined) for (const w of sizing.warnings) log.warn(`select: ${w}`);
    const opts: SelectOptions = { k: sizing.kTrain, kVal: s.k_val, anyLabel: s.candidates === 'any_label', only: new Set(filtered.rows.map((x) => x.id)), classes: subset };
    let state: SlicesState | undefined;
    if (perSlice !== undefined) {
      // k_train per seed image from its slice's budget (k_val stays k_val per seed)
      const file = ctx.inputs.slices!.file('state');
      state = JSON.parse(readFileSync(file, 'utf8')) as SlicesState;
      opts.kPerSeed = sliceBudgetOf(state, seeds.ids, perSlice, file);
      ctx.log(`select.per_slice ${perSlice}: ${state.slices.length} slices of ${state.slices.map((x) => x.members.length).join(', ')} seed images`);
    }
    return { seeds, opts, filtered, sizing, state, poolFile: ctx.inputs.embPool!.file('embeddings') };
  }

  async function finish(ctx: StageContext, x: { filtered: ImageSet; sizing: SelectionSizing; state?: SlicesState }, r: SelectResult | CleanSelectResult): Promise<StageOutputs> {
    const files = await writeSelection(ctx, x.filtered, r.train, 'debug_train');
    if (r.deval) Object.assign(files, await writeSelection(ctx, x.filtered, r.deval, 'deval'));
    const budget = x.state ? perSliceCounts(x.state, r.train, perSlice!) : undefined;
    await atomicWriteJson(path.join(ctx.dir, 'summary.json'), { train: r.train.summary, deval: r.deval?.summary ?? null, sizing: x.sizing, ...(budget ? { per_slice: budget } : {}) });
    const counts: Record<string, number> = { debug_train: r.train.ids.length, deval: r.deval?.ids.length ?? 0 };
    if ('dropped' in r) {
      // what cleaning changed: the uncleaned debug-train picks (the report's noise before) and the dropped picks
      await writePicks(path.join(ctx.dir, 'debug_train_before-picks.arrow'), r.before.train);
      const d = r.dropped;
      await writeTableWithCsv(
        path.join(ctx.dir, 'dropped.arrow'),
        {
          id: { kind: 'utf8', values: d.map((x) => x.id) },
          label: { kind: 'int32', values: Int32Array.from(d, (x) => x.label) },
          seed_id: { kind: 'utf8', values: d.map((x) => x.seedId) },
          set: { kind: 'utf8', values: d.map((x) => x.set) },
          agreement: { kind: 'float32', values: Float32Array.from(d, (x) => x.agreement) },
          round: { kind: 'int32', values: Int32Array.from(d, (x) => x.round) },
        },
        {},
      );
      await atomicWriteJson(path.join(ctx.dir, 'clean.json'), {
        options: { k: s.clean_k, rule: s.clean_rule, min_agreement: s.clean_min_agreement, max_rounds: s.clean_max_rounds },
        rounds: r.rounds,
        dropped: { train: d.filter((x) => x.set === 'train').length, deval: d.filter((x) => x.set === 'deval').length },
        still_flagged: r.stillFlagged,
        picks: { train: r.train.ids.length, deval: r.deval?.ids.length ?? 0, train_before: r.before.train.ids.length, deval_before: r.before.deval?.ids.length ?? 0 },
      });
      Object.assign(files, { debug_train_before_picks: 'debug_train_before-picks.arrow', dropped: 'dropped.arrow', dropped_csv: 'dropped.csv', clean: 'clean.json' });
      Object.assign(counts, { dropped: d.length, clean_rounds: r.rounds, still_flagged: r.stillFlagged });
    }
    return { files: { ...files, added: files.debug_train!, summary: 'summary.json' }, counts };
  }
}
