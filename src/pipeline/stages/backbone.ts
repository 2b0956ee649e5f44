/**
 * Backbone stage: a demo backbone trained (or drawn) through the model registry.
 */
import path from 'node:path';
import type { BackboneConfig, Config } from '../../core/config.js';
import { trainDemoModel, type DemoBackboneSpec } from '../../models/registry.js';
import { saveCheckpoint } from '../../models/load.js';
import type { StageOutputs, StageSpec } from '../runner.js';
import { broadDrawSource } from './common.js';

/** A demo backbone trained on a broad draw (never the debug sets); see src/backbones-demo. */
export function demoBackbone(cfg: Config, b: BackboneConfig, _data: StageSpec): StageSpec {
  const spec = { kind: 'broad_cnn', ...(b.pretrain ?? {}) } as DemoBackboneSpec;
  const broad = broadDrawSource(cfg);
  return {
    stage: 'backbone',
    label: b.label ?? b.name,
    version: 1,
    config: { name: b.name, pretrain: spec, ...broad.key },
    deps: {},
    async run(ctx): Promise<StageOutputs> {
      if (spec.kind === 'self') return { files: {}, extra: { self: true } };
      const bar = ctx.progress(spec.steps ?? 400, 'step');
      const m = await trainDemoModel(spec, broad.synthetic as Parameters<typeof trainDemoModel>[1], broad.objects(), () => bar.tick(1));
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
