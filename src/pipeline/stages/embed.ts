/**
 * Embed stage: features of one image set under one backbone.
 */
import path from 'node:path';
import { ConfigError } from '../../core/errors.js';
import { atomicWriteFile, sha256File } from '../../core/fsutil.js';
import { isDemoBackbone, pretrainOf, type BackboneConfig, type Config } from '../../core/config.js';
import { createModel, getModelSpec } from '../../models/registry.js';
import { loadAnyCheckpoint } from '../../models/load.js';
import { writeEmbeddings } from '../../infer/embedding-writer.js';
import { requirePrecision, setComputePrecision } from '../../backends/precision.js';
import type { StageSpec } from '../runner.js';
import { imageItems } from '../imagesets.js';
import { classesOf, modelNameOf, preFor, readSet, weightsOf } from './common.js';

/** Features of one image set under one backbone: `<set>.arrow` with id, embedding, label. */
export function embedStage(cfg: Config, b: BackboneConfig, set: string, data: StageSpec, backbone: StageSpec | undefined, original?: StageSpec, suffix = ''): StageSpec {
  const isSelf = isDemoBackbone(b) && b.pretrain?.kind === 'self';
  const deps: Record<string, StageSpec> = { data };
  if (backbone) deps.backbone = backbone;
  if (isSelf && original) deps.original = original;
  return {
    stage: 'embed',
    label: `${b.label ?? b.name}-${set}${suffix}`,
    version: 2,
    // compute.precision as it computes (src/pipeline/run.ts plannedConfig): in the key only when bf16 (fp32 stages keep their keys)
    config: { name: b.name, weights: b.weights, pretrain: pretrainOf(b) ?? null, set, ...(cfg.compute.precision === 'bf16' ? { precision: 'bf16' } : {}) },
    deps,
    externals: b.weights !== 'official' && b.weights !== 'random' && b.weights !== 'demo' && b.weights !== 'ssl' ? [b.weights] : [],
    shardAlign: cfg.compute.embed_batch_size,
    async run(ctx) {
      const d = ctx.inputs.data!;
      const images = await readSet(d, set);
      let modelName = b.name;
      let numClasses = 0;
      let weights: string | undefined;
      if (isSelf) {
        const o = ctx.inputs.original;
        if (!o) throw new ConfigError(`backbone ${b.name}: kind self needs the original model`);
        modelName = modelNameOf(o, cfg.train.model);
        numClasses = cfg.data.classes ?? classesOf(d).names.length;
        weights = weightsOf(o);
      } else if (b.weights === 'demo' || b.weights === 'ssl') {
        // a backbone the run trained (demo) or pretrained self-supervised (ssl): a small_cnn
        const r = ctx.inputs.backbone!;
        weights = r.file('weights');
        numClasses = Number(r.manifest.extra.numClasses ?? 0);
        const widths = pretrainOf(b)?.widths ?? [16, 32, 64];
        modelName = `small_cnn:${widths.join('-')}`;
      } else {
        // official weights are refused before the run (src/pipeline/config-check.ts): here a file, or random
        numClasses = getModelSpec(modelName).defaultNumClasses;
        if (b.weights !== 'random') weights = b.weights;
      }
      // the model is created after the precision is set, so its packed weights are in it
      requirePrecision(cfg.compute.precision, `embed stage ${b.label ?? b.name}-${set}`);
      setComputePrecision(cfg.compute.precision);
      const model = createModel(modelName, { numClasses, seed: 0 });
      try {
        if (weights) await loadAnyCheckpoint(model, weights);
        const pre = preFor(modelName, images);
        const bar = ctx.progress(images.rows.length, 'img');
        const rowOf = new Map(images.rows.map((r, i) => [r.id, i]));
        const { rows, skipped } = await writeEmbeddings(model, imageItems(images), pre, {
          batchSize: cfg.compute.embed_batch_size,
          concurrency: cfg.compute.concurrency,
          onBatch: (n) => bar.tick(n),
          out: path.join(ctx.dir, `${set}.arrow`),
          metadata: { 'dcd.backbone': b.name, 'dcd.weights_sha256': weights ? await sha256File(weights) : 'random:seed=0', 'dcd.preprocess': JSON.stringify(pre), 'dcd.set': set },
          labelOf: (id) => {
            const r = images.rows[rowOf.get(id)!]!;
            return set === 'pool' ? (r.weak_label ?? -1) : r.label;
          },
        });
        bar.stop();
        if (skipped.length) await atomicWriteFile(path.join(ctx.dir, 'skipped.tsv'), ['id\treason', ...skipped.map((s) => `${s.id}\t${s.reason}`)].join('\n') + '\n');
        return { files: { embeddings: `${set}.arrow` }, counts: { rows, skipped: skipped.length } };
      } finally {
        model.dispose();
        setComputePrecision('fp32');
      }
    },
  };
}
