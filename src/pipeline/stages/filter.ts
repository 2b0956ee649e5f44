/**
 * Filter stage: the test-leakage filter over the pool.
 */
import path from 'node:path';
import { atomicWriteJson } from '../../core/fsutil.js';
import type { Config } from '../../core/config.js';
import { EmbeddingStore } from '../../retrieval/store.js';
import { classThresholds, leakageFilter } from '../../retrieval/filter.js';
import type { StageSpec } from '../runner.js';
import { subsetImageSet, writeImageSet } from '../imagesets.js';
import { readSet } from './common.js';

/** The test-leakage filter: W' = pool images at least τ_y from every test image. */
export function filterStage(cfg: Config, data: StageSpec, embeds: Record<string, StageSpec>, suffix = ''): StageSpec {
  const f = cfg.filter;
  return {
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
        const tau = await classThresholds(await open('train'), await open('test'));
        keptIds = new Set();
        const r = await leakageFilter(await open('pool'), [await open('test'), await open('mfreq'), await open('complement')], tau, {
          scope: f.scope,
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
}
