/**
 * Backbone stage: a demo backbone trained (or drawn) through the model registry.
 */
import path from 'node:path';
import type { BackboneConfig, Config } from '../../core/config.js';
import { DEFAULT_FASHION_CLASSES, fashionObjects } from '../../data/fashion-shift.js';
import { trainDemoModel, type DemoBackboneSpec } from '../../models/registry.js';
import { saveCheckpoint } from '../../models/load.js';
import type { StageOutputs, StageSpec } from '../runner.js';
import { fashionParts } from './common.js';

/** A demo backbone trained on a broad draw (never the debug sets); see src/backbones-demo. */
export function demoBackbone(cfg: Config, b: BackboneConfig, _data: StageSpec): StageSpec {
  const spec = { kind: 'broad_cnn', ...(b.pretrain ?? {}) } as DemoBackboneSpec;
  const fp = cfg.data.kind === 'fashion-mnist' ? fashionParts(cfg) : undefined;
  const synthetic = fp ? { ...fp.synthetic, numClasses: (fp.classes ?? DEFAULT_FASHION_CLASSES).length } : (cfg.data.synthetic ?? {});
  return {
    stage: 'backbone',
    label: b.label ?? b.name,
    version: 1,
    config: { name: b.name, pretrain: spec, synthetic, kind: cfg.data.kind, fashion_dir: cfg.data.kind === 'fashion-mnist' ? cfg.data.fashion_dir : null },
    deps: {},
    async run(ctx): Promise<StageOutputs> {
      if (spec.kind === 'self') return { files: {}, extra: { self: true } };
      let objects;
      if (fp) objects = fashionObjects({ dir: cfg.data.fashion_dir, ...(fp.classes ? { classes: fp.classes } : {}) });
      const bar = ctx.progress(spec.steps ?? 400, 'step');
      const m = trainDemoModel(spec, synthetic as Parameters<typeof trainDemoModel>[1], objects, () => bar.tick(1));
      bar.stop();
      try {
        await saveCheckpoint(m, path.join(ctx.dir, 'backbone.safetensors'), 'safetensors', { 'dcd.backbone': b.name });
        return { files: { weights: 'backbone.safetensors' }, extra: { model: m.name, numClasses: m.numClasses } };
      } finally {
        m.dispose();
      }
    },
  };
}
