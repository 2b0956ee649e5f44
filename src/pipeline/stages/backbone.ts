/**
 * Backbone stage: a demo backbone trained (or drawn) by src/train/demo-backbones.ts.
 */
import path from 'node:path';
import type { Config, DemoBackboneConfig } from '../../core/config.js';
import { trainDemoBackbone, type DemoBackboneSpec } from '../../train/demo-backbones.js';
import { saveCheckpoint } from '../../models/load.js';
import type { ImageModel } from '../../core/types.js';
import type { StageContext, StageOutputs, StageSpec } from '../runner.js';
import { broadDrawSource } from './common.js';

/** A demo backbone trained on a broad draw (never the debug sets); see src/train/demo-backbones.ts. */
export function demoBackbone(cfg: Config, b: DemoBackboneConfig, _data: StageSpec): StageSpec {
  const spec: DemoBackboneSpec = { kind: 'broad_cnn', ...b.pretrain };
  const broad = broadDrawSource(cfg);
  return {
    stage: 'backbone',
    label: b.label ?? b.name,
    version: 1,
    config: { name: b.name, pretrain: spec, ...broad.key },
    deps: {},
    async run(ctx): Promise<StageOutputs> {
      if (spec.kind === 'self') return { files: {}, extra: { self: true } };
      return writeDemoBackbone(ctx, b.name, spec.steps ?? 400, (onStep) => trainDemoBackbone(spec, broad.synthetic, broad.objects(), onStep));
    },
  };
}

/**
 * Builds a demo backbone with a progress bar over its `steps` training steps (undefined: no bar)
 * and writes it into the stage folder as backbone.safetensors.
 */
export async function writeDemoBackbone(
  ctx: StageContext,
  name: string,
  steps: number | undefined,
  build: (onStep: () => void) => Promise<ImageModel>,
): Promise<StageOutputs> {
  const bar = steps === undefined ? undefined : ctx.progress(steps, 'step');
  const m = await build(() => bar?.tick(1));
  bar?.stop();
  try {
    await saveCheckpoint(m, path.join(ctx.dir, 'backbone.safetensors'), 'safetensors', { 'dcd.backbone': name });
    return { files: { weights: 'backbone.safetensors' }, extra: { model: m.name, numClasses: m.numClasses } };
  } finally {
    m.dispose();
  }
}
