/**
 * Retention stage: class and context retention of each backbone's neighbours (paper Fig. 7).
 */
import path from 'node:path';
import { atomicWriteJson } from '../../core/fsutil.js';
import type { BackboneConfig, Config } from '../../core/config.js';
import type { StageOutputs, StageSpec } from '../runner.js';
import { readRetentionItems, retentionTable, retentionMarkdown, writeRetentionOutputs } from '../../analysis/retention.js';

/**
 * Class and context retention of each backbone's k nearest neighbours (paper Fig. 7) on one
 * image set of the run, from the run's cached embeddings. A set without a context column
 * gives an empty result with the reason, not an error.
 */
export function retentionStage(cfg: Config, data: StageSpec, embeds: { backbone: BackboneConfig; embed: StageSpec }[], suffix = ''): StageSpec {
  const r = cfg.report.retention;
  const deps: Record<string, StageSpec> = { data };
  embeds.forEach((e, i) => (deps[`emb${i}`] = e.embed));
  return {
    stage: 'retention',
    label: `${r.set}${suffix}`,
    version: 1,
    config: { set: r.set, ks: r.ks, rule: r.rule, backbones: embeds.map((e) => e.backbone.label ?? e.backbone.name) },
    deps,
    async run(ctx): Promise<StageOutputs> {
      const manifest = ctx.inputs.data!.file(r.set);
      const items = await readRetentionItems(manifest).catch((e: Error) => e);
      if (items instanceof Error) {
        ctx.log(`retention skipped: ${items.message}`);
        await atomicWriteJson(path.join(ctx.dir, 'retention.json'), { skipped: items.message });
        return { files: { json: 'retention.json' }, counts: { rows: 0 }, extra: { markdown: '' } };
      }
      const names = embeds.map((e) => e.backbone.name);
      const files = Object.fromEntries(embeds.map((e, i) => [e.backbone.name, [ctx.inputs[`emb${i}`]!.file('embeddings')]]));
      const points = await retentionTable({ manifest, backbones: names, embeddings: files, ks: r.ks }, { rule: r.rule });
      const label = new Map(embeds.map((e) => [e.backbone.name, e.backbone.label ?? e.backbone.name]));
      const rows = points.map((p) => ({ ...p, backbone: label.get(p.backbone) ?? p.backbone }));
      await writeRetentionOutputs(rows, ctx.dir, { manifest, rule: r.rule, normalize: false, ks: r.ks });
      return {
        files: { markdown: 'retention.md', csv: 'retention.csv', json: 'retention.json', svg: 'retention.svg', png: 'retention.png' },
        counts: { rows: rows.length, images: items.length },
        extra: { markdown: retentionMarkdown(rows, r.rule), set: r.set },
      };
    },
  };
}
