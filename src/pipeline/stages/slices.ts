/**
 * Slices stage: the debug-seed failures of one world clustered in one backbone's space and every
 * debug-heldout image assigned to its nearest slice (src/analysis/slices-files.ts). Per-slice
 * accuracy of each method is read by the report from the evaluations' predictions; under
 * `select.per_slice` the select stages of the world read the slices for their per-seed budget
 * (so this stage runs before them and does not read a selection).
 *
 * Map stage: the 2-D map of seed, heldout, one backbone's picks and a pool sample
 * (src/analysis/projection.ts), after that backbone's select stage.
 *
 * Neither is sharded: their row work is the embedding of the sets, which the embed stages shard;
 * what is left (k-means over the seed set, one nearest-centroid pass over heldout, a PCA of a few
 * thousand rows) takes seconds in one process.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { atomicWriteJson } from '../../core/fsutil.js';
import { ConfigError, DataError } from '../../core/errors.js';
import type { BackboneConfig, Config } from '../../core/config.js';
import { slicesFiles } from '../../analysis/slices-files.js';
import { perSliceBudget } from '../../analysis/slices-config.js';
import { projectSets, type MapInput } from '../../analysis/projection.js';
import { readPicks } from '../../eval/gallery.js';
import { EmbeddingStore } from '../../retrieval/store.js';
import type { StageContext, StageSpec } from '../runner.js';
import { subsetEmbeddingRows } from '../shards.js';
import { classesOf, readSet } from './common.js';
import { imageOf } from './gallery.js';

/** The backbone `slices.backbone` names (label or name), else the first. */
export function slicesBackbone(cfg: Config): BackboneConfig {
  const want = cfg.slices.backbone;
  const b = want === undefined ? cfg.backbones[0] : cfg.backbones.find((x) => (x.label ?? x.name) === want) ?? cfg.backbones.find((x) => x.name === want);
  if (!b) throw new ConfigError(`config.slices.backbone: ${JSON.stringify(want)} is none of the backbones' labels or names`);
  return b;
}

/** What the report reads of a slices stage (slices-state.json). */
export interface SlicesState {
  backbone: string;
  slices: Awaited<ReturnType<typeof slicesFiles>>['slices']['slices'];
  criterion: Awaited<ReturnType<typeof slicesFiles>>['slices']['criterion'];
  normalize: boolean;
  seed: number;
  seedIds: string[];
  seedLabels: number[];
  heldoutIds: string[];
  heldoutSlice: number[];
  classNames: string[];
  /** Central seed images' paths (absolute, or relative to the stage folder), by seed index. */
  images: Record<string, string>;
}

/** Slices of the seed failures in backbone `b`'s space, heldout assigned. */
export function slicesStage(cfg: Config, b: BackboneConfig, data: StageSpec, failures: StageSpec, embMfreq: StageSpec, embCompl: StageSpec, suffix = ''): StageSpec {
  const o = cfg.slices;
  return {
    stage: 'slices',
    label: `${b.label ?? b.name}${suffix}`,
    // 2: the map is its own stage (mapStage), so that select can read the slices (select.per_slice)
    version: 2,
    config: { backbone: b.label ?? b.name, k: o.k, k_range: o.k_range, seed: o.seed, central: o.central, normalize: o.normalize, restarts: o.restarts },
    deps: { data, failures, embMfreq, embCompl },
    async run(ctx: StageContext) {
      const f = ctx.inputs.failures!;
      const seedSet = await readSet(f, 'seed');
      const heldSet = await readSet(f, 'heldout');
      // the seed images' rows of the mfreq features, the heldout images' of the complement's
      const seedIds = new Set(seedSet.rows.map((r) => r.id));
      const heldIds = new Set(heldSet.rows.map((r) => r.id));
      const seedEmb = path.join(ctx.dir, 'seed-emb.arrow');
      const heldEmb = path.join(ctx.dir, 'heldout-emb.arrow');
      await subsetEmbeddingRows(ctx.inputs.embMfreq!.file('embeddings'), (_, id) => seedIds.has(id), seedEmb);
      await subsetEmbeddingRows(ctx.inputs.embCompl!.file('embeddings'), (_, id) => heldIds.has(id), heldEmb);
      const r = await slicesFiles({
        seed: [seedEmb],
        heldout: [heldEmb],
        manifest: [f.file('seed'), f.file('heldout')],
        options: { k: o.k, range: o.k_range, seed: o.seed, central: o.central, normalize: o.normalize, restarts: o.restarts },
        out: path.join(ctx.dir, 'slices.arrow'),
      });
      // central images, as files the report can thumbnail
      await mkdir(path.join(ctx.dir, 'img'), { recursive: true });
      const rowOf = new Map(seedSet.rows.map((x, i) => [x.id, i]));
      const images: Record<string, string> = {};
      for (const s of r.slices.slices) for (const i of s.central) images[i] = await imageOf(ctx, seedSet, rowOf.get(r.seedIds[i]!)!, 'seed');
      const state: SlicesState = {
        backbone: b.label ?? b.name,
        slices: r.slices.slices,
        criterion: r.slices.criterion,
        normalize: r.slices.normalize,
        seed: r.slices.seed,
        seedIds: r.seedIds,
        seedLabels: seedLabelsOf(r.seedIds, seedSet.rows),
        heldoutIds: r.heldoutIds,
        heldoutSlice: Array.from(r.heldoutSlice),
        classNames: classesOf(ctx.inputs.data!).names,
        images,
      };
      await atomicWriteJson(path.join(ctx.dir, 'slices-state.json'), state);
      return {
        files: { slices: 'slices.arrow', slices_csv: 'slices.csv', json: 'slices.json', state: 'slices-state.json', seed_emb: 'seed-emb.arrow', heldout_emb: 'heldout-emb.arrow' },
        counts: { slices: r.slices.slices.length, seed: r.seedIds.length, heldout: r.heldoutIds.length },
      };
    },
  };
}

/** The map of the seed and heldout images of `slices`, the picks of `select` (same backbone) and a pool sample. */
export function mapStage(cfg: Config, b: BackboneConfig, slices: StageSpec, embPool: StageSpec, select: StageSpec, suffix = ''): StageSpec {
  const o = cfg.slices;
  return {
    stage: 'map',
    label: `${b.label ?? b.name}${suffix}`,
    version: 1,
    config: { backbone: b.label ?? b.name, map_sample: o.map_sample, seed: o.seed },
    deps: { slices, embPool, select },
    async run(ctx: StageContext) {
      // seed, heldout and picks in full, a seeded sample of the pool (no train features: the run embeds no train set)
      const read = async (file: string) => (await EmbeddingStore.open([file], { role: 'map' })).readAll();
      const sl = ctx.inputs.slices!;
      const [se, he, po] = [await read(sl.file('seed_emb')), await read(sl.file('heldout_emb')), await read(ctx.inputs.embPool!.file('embeddings'))];
      const picksFile = ctx.inputs.select!.file('debug_train_picks');
      const picks = await readPicks(picksFile);
      const poolRow = new Map(po.ids.map((id, i) => [id, i]));
      const pickData = new Float32Array(picks.ids.length * po.dim);
      picks.ids.forEach((id, j) => {
        const row = poolRow.get(id);
        if (row === undefined) throw new DataError(`${picksFile}: pick ${id} is not in the pool's embeddings (${ctx.inputs.embPool!.file('embeddings')}); rerun the select stage`);
        pickData.set(po.data.subarray(row * po.dim, (row + 1) * po.dim), j * po.dim);
      });
      const sets: MapInput[] = [
        { set: 'pool', ids: po.ids, data: po.data, ...(po.labels ? { labels: po.labels } : {}) },
        { set: 'heldout', ids: he.ids, data: he.data, ...(he.labels ? { labels: he.labels } : {}) },
        { set: 'pick', ids: picks.ids, data: pickData, labels: picks.labels, seedIds: picks.seeds },
        { set: 'seed', ids: se.ids, data: se.data, ...(se.labels ? { labels: se.labels } : {}) },
      ];
      const map = projectSets(sets, po.dim, { sample: o.map_sample, seed: o.seed });
      await atomicWriteJson(path.join(ctx.dir, 'map.json'), map);
      return { files: { map: 'map.json' }, counts: { points: map.points.length } };
    },
  };
}

/**
 * Debug-train picks per seed image under `select.per_slice`, in the order of `seedIds` (the
 * select stage's seed set): {@link perSliceBudget} over the slices of a slices stage's state.
 */
export function sliceBudgetOf(state: Pick<SlicesState, 'slices' | 'seedIds'>, seedIds: readonly string[], perSlice: number, file: string): Int32Array {
  const k = perSliceBudget(state.slices, state.seedIds.length, perSlice);
  const at = new Map(state.seedIds.map((id, i) => [id, i]));
  return Int32Array.from(seedIds, (id) => {
    const i = at.get(id);
    if (i === undefined) throw new DataError(`${file}: seed image ${id} is in no slice (the slices were made of another seed set); rerun the slices stage`);
    return k[i]!;
  });
}

function seedLabelsOf(ids: readonly string[], rows: readonly { id: string; label: number }[]): number[] {
  const at = new Map(rows.map((x) => [x.id, x.label]));
  return ids.map((id) => at.get(id) ?? -1);
}
