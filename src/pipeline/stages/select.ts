/**
 * Select stage: Algorithm 1 with one backbone.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DataError } from '../../core/errors.js';
import { atomicWriteJson } from '../../core/fsutil.js';
import { buildTable, writeArrowFile } from '../../core/arrow.js';
import type { BackboneConfig, Config } from '../../core/config.js';
import { EmbeddingStore } from '../../retrieval/store.js';
import { selectAlgorithm1, type Selection } from '../../retrieval/select.js';
import type { StageContext, StageSpec } from '../runner.js';
import { subsetImageSet, writeImageSet, type ImageSet } from '../imagesets.js';
import { readSet } from './common.js';

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
  await writeArrowFile(
    path.join(ctx.dir, `${name}-picks.arrow`),
    buildTable({
      id: { kind: 'utf8', values: sel.ids },
      label: { kind: 'int32', values: sel.labels },
      seed_id: { kind: 'utf8', values: sel.seedIds },
      distance: { kind: 'float32', values: sel.distances },
      rank: { kind: 'int32', values: sel.ranks },
    }),
  );
  return { ...files, [`${name}_picks`]: `${name}-picks.arrow` };
}

/** Algorithm 1 with one backbone: de-val V, then debug-train D from W' \ V. */
export function selectStage(cfg: Config, b: BackboneConfig, failures: StageSpec, embMfreq: StageSpec, embPool: StageSpec, filter: StageSpec, suffix = ''): StageSpec {
  const s = cfg.select;
  return {
    stage: 'select',
    label: (b.label ?? b.name) + suffix,
    version: 1,
    config: { k_val: s.k_val, k_train: s.k_train, candidates: s.candidates, normalize: s.normalize },
    deps: { failures, embMfreq, embPool, filter },
    async run(ctx) {
      const seedRows = await readSet(ctx.inputs.failures!, 'seed');
      const subset = JSON.parse(readFileSync(ctx.inputs.failures!.file('subset'), 'utf8')) as number[];
      const mf = await EmbeddingStore.open([ctx.inputs.embMfreq!.file('embeddings')], { role: 'mfreq', requireLabel: true, normalize: s.normalize });
      const all = await mf.readAll();
      const pos = new Map(all.ids.map((id, i) => [id, i]));
      const keep = seedRows.rows.filter((r) => pos.has(r.id));
      const data = new Float32Array(keep.length * all.dim);
      keep.forEach((r, j) => data.set(all.data.subarray(pos.get(r.id)! * all.dim, (pos.get(r.id)! + 1) * all.dim), j * all.dim));
      const pool = await EmbeddingStore.open([ctx.inputs.embPool!.file('embeddings')], { role: 'pool', requireLabel: s.candidates === 'weak_label', normalize: s.normalize });
      const filtered = await readSet(ctx.inputs.filter!, 'pool_filtered');
      const r = await selectAlgorithm1(
        { ids: keep.map((x) => x.id), labels: Int32Array.from(keep, (x) => x.label), data, dim: all.dim, file: ctx.inputs.embMfreq!.file('embeddings') },
        pool,
        { k: s.k_train, kVal: s.k_val, anyLabel: s.candidates === 'any_label', only: new Set(filtered.rows.map((x) => x.id)), classes: subset },
      );
      const files = await writeSelection(ctx, filtered, r.train, 'debug_train');
      if (r.deval) Object.assign(files, await writeSelection(ctx, filtered, r.deval, 'deval'));
      await atomicWriteJson(path.join(ctx.dir, 'summary.json'), { train: r.train.summary, deval: r.deval?.summary ?? null });
      return { files: { ...files, added: files.debug_train!, summary: 'summary.json' }, counts: { debug_train: r.train.ids.length, deval: r.deval?.ids.length ?? 0 } };
    },
  };
}
