/**
 * Filter stage: the test-leakage filter over the pool.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ArtifactError } from '../../core/errors.js';
import { atomicWriteJson } from '../../core/fsutil.js';
import type { Config } from '../../core/config.js';
import { EmbeddingStore } from '../../retrieval/store.js';
import { classThresholds, leakageFilter } from '../../retrieval/filter.js';
import type { StageContext, StageOutputs, StageSpec } from '../runner.js';
import { readImageSet, subsetImageSet, writeImageSet } from '../imagesets.js';
import { setRowShards, subsetEmbeddingRows, withFile, type PartOutputs } from '../shards.js';
import { readSet } from './common.js';

/** The test-leakage filter: W' = pool images at least τ_y from every test image. */
export function filterStage(cfg: Config, data: StageSpec, embeds: Record<string, StageSpec>, suffix = ''): StageSpec {
  const f = cfg.filter;
  const spec: StageSpec = {
    stage: 'filter',
    label: (f.enabled ? 'leakage' : 'disabled') + suffix,
    version: 1,
    config: f.enabled ? { enabled: true, scope: f.scope, normalize: f.normalize, backbone: f.backbone } : { enabled: false },
    deps: { data, ...Object.fromEntries(Object.entries(embeds).map(([k, v]) => [`embed_${k}`, v])) },
    async run(ctx) {
      const pool = await readSet(ctx.inputs.data!, 'pool');
      let keptIds: Set<string>;
      let summary: unknown = null;
      if (!f.enabled) keptIds = new Set(pool.rows.map((r) => r.id));
      else {
        const open = (set: string, requireLabel = true) => EmbeddingStore.open([ctx.inputs[`embed_${set}`]!.file('embeddings')], { role: set, requireLabel, normalize: f.normalize });
        // compute.precision screens distances in bf16; decisions are the float64 ones either way (not in the key)
        const precision = cfg.compute.precision;
        const tau = await classThresholds(await open('train'), await open('test'), { precision });
        keptIds = new Set();
        const r = await leakageFilter(await open('pool'), [await open('test'), await open('mfreq'), await open('complement')], tau, {
          scope: f.scope,
          precision,
          onChunk: (ch, keep) => ch.ids.forEach((id, i) => keep[i] && keptIds.add(id)),
        });
        summary = { kept: r.kept, removed: r.removed.length, per_class: r.summary };
        await atomicWriteJson(path.join(ctx.dir, 'removed.json'), r.removed);
        ctx.log(`kept ${r.kept} of ${pool.rows.length} pool images`);
      }
      const idx = pool.rows.flatMap((r, i) => (keptIds.has(r.id) ? [i] : []));
      const files = await writeImageSet(ctx.dir, subsetImageSet(pool, idx, 'pool_filtered'));
      await atomicWriteJson(path.join(ctx.dir, 'summary.json'), summary);
      return { files: { ...files, summary: 'summary.json' }, counts: { pool: pool.rows.length, kept: idx.length } };
    },
  };
  // Row shards (when enabled): each pool image is kept or removed by its own distance to the
  // test sets, against thresholds τ_y from train/test that every part computes alike; a part
  // sees its pool rows and their features.
  if (f.enabled && 'embed_pool' in spec.deps)
    spec.shards = setRowShards({
      set: 'pool',
      run: spec.run,
      async narrow(ctx, inputDir, ids) {
        const emb = ctx.inputs.embed_pool!;
        const file = path.join(inputDir, 'pool-embeddings.arrow');
        await subsetEmbeddingRows(emb.file('embeddings'), (_, id) => ids.has(id), file);
        return { embed_pool: withFile(emb, 'embeddings', file) };
      },
      merge: mergeFilter,
    });
  return spec;
}

/** Filter parts → pool_filtered (the kept rows in pool order), removed.json in pool order, summed per-class summary. */
async function mergeFilter(ctx: StageContext, parts: readonly PartOutputs[]): Promise<StageOutputs> {
  const pool = await readImageSet(ctx.inputs.data!.file('pool'));
  const at = new Map(pool.rows.map((r, i) => [r.id, i]));
  const kept = new Set<string>();
  const removed: { id: string }[] = [];
  type Summary = { kept: number; removed: number; per_class: { label: number; tau: number; pool: number; kept: number; removed: number; duplicates: number }[] };
  const perClass = new Map<number, Summary['per_class'][number]>();
  for (const [i, { dir: d, outputs }] of parts.entries()) {
    if (!outputs.pool_filtered) continue; // a part with no rows
    for (const r of (await readImageSet(path.join(d, outputs.pool_filtered))).rows) kept.add(r.id);
    removed.push(...(JSON.parse(readFileSync(path.join(d, 'removed.json'), 'utf8')) as { id: string }[]));
    const sm = JSON.parse(readFileSync(path.join(d, outputs.summary!), 'utf8')) as Summary;
    for (const c of sm.per_class) {
      const acc = perClass.get(c.label);
      if (!acc) perClass.set(c.label, { ...c });
      else {
        if (acc.tau !== c.tau) throw new ArtifactError(`filter part ${i}: τ of class ${c.label} is ${c.tau}, another part has ${acc.tau}; delete the parts folder and rerun`);
        for (const k of ['pool', 'kept', 'removed', 'duplicates'] as const) acc[k] += c[k];
      }
    }
  }
  removed.sort((a, b) => at.get(a.id)! - at.get(b.id)!);
  const idx = pool.rows.flatMap((r, i) => (kept.has(r.id) ? [i] : []));
  const files = await writeImageSet(ctx.dir, subsetImageSet(pool, idx, 'pool_filtered'));
  await atomicWriteJson(path.join(ctx.dir, 'removed.json'), removed);
  const summary = { kept: kept.size, removed: removed.length, per_class: [...perClass.values()].sort((a, b) => a.label - b.label) };
  await atomicWriteJson(path.join(ctx.dir, 'summary.json'), summary);
  ctx.log(`kept ${kept.size} of ${pool.rows.length} pool images (${parts.length} parts)`);
  return { files: { ...files, summary: 'summary.json' }, counts: { pool: pool.rows.length, kept: idx.length } };
}

