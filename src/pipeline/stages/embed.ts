/**
 * Embed stage: features of one image set under one backbone.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ArtifactError } from '../../core/errors.js';
import { buildTable } from '../../core/arrow.js';
import { EmbeddingStore, type EmbeddingChunk } from '../../retrieval/store.js';
import { openArrowSink, type ArrowSink } from '../../retrieval/output.js';
import { EMBEDDING_BATCH_ROWS, partOfRow, setRowShards, type PartOutputs } from '../shards.js';
import { atomicWriteFile, sha256File } from '../../core/fsutil.js';
import { isDemoBackbone, pretrainOf, type BackboneConfig, type Config } from '../../core/config.js';
import { createModel, getModelSpec } from '../../models/registry.js';
import { loadAnyCheckpoint } from '../../models/load.js';
import { writeEmbeddings } from '../../infer/embedding-writer.js';
import { requirePrecision, setComputePrecision } from '../../backends/precision.js';
import type { StageContext, StageOutputs, StageSpec } from '../runner.js';
import { imageItems, readImageSet } from '../imagesets.js';
import { classesOf, modelNameOf, preFor, readSet, weightsOf } from './common.js';

/** Features of one image set under one backbone: `<set>.arrow` with id, embedding, label. */
export function embedStage(cfg: Config, b: BackboneConfig, set: string, data: StageSpec, backbone: StageSpec | undefined, original?: StageSpec, suffix = ''): StageSpec {
  const isSelf = isDemoBackbone(b) && b.pretrain?.kind === 'self';
  const deps: Record<string, StageSpec> = { data };
  if (backbone) deps.backbone = backbone;
  if (isSelf && original) deps.original = original;
  const spec: StageSpec = {
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
        const o = ctx.inputs.original!; // the graph gives a self backbone the original model (src/pipeline/experiment.ts)
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
  // Row shards: each image's features depend on that image alone, so the merged file holds the
  // same rows, ids, labels and features as an unsharded run's.
  spec.shards = setRowShards({ set, shardAlign: spec.shardAlign, run: spec.run, merge: (ctx, parts) => mergeEmbed(spec, set, ctx, parts) });
  return spec;
}

/** Embed parts → the embedding file with the rows in the set's order (rows a part skipped stay out, listed in skipped.tsv). */
async function mergeEmbed(spec: StageSpec, set: string, ctx: StageContext, parts: readonly PartOutputs[]): Promise<StageOutputs> {
  const count = parts.length;
  const full = await readImageSet(ctx.inputs.data!.file(set));
  const partOf = partOfRow(spec, full.rows.length, count);
  const stores = await Promise.all(parts.map((p, i) => (p.outputs.embeddings ? EmbeddingStore.open([path.join(p.dir, p.outputs.embeddings)], { role: `${set} part ${i}/${count}` }) : undefined)));
  const first = stores.find((st) => st !== undefined);
  if (!first) throw new ArtifactError(`${spec.stage}/${spec.label}: no part has rows`);
  const dim = first.dim;
  const meta = Object.fromEntries(Object.entries(first.metadata).filter(([k]) => k.startsWith('dcd.') && k !== 'dcd.version' && k !== 'dcd.schema_version'));
  for (const [i, st] of stores.entries())
    if (st) for (const k of ['dcd.backbone', 'dcd.weights_sha256', 'dcd.preprocess'])
      if (st.metadata[k] !== meta[k]) throw new ArtifactError(`${spec.stage}/${spec.label}: part ${i} has ${k} ${st.metadata[k]}, part 0 ${meta[k]}; delete the parts folder and rerun`);
  const skipped: string[] = [];
  for (const p of parts) {
    const f = path.join(p.dir, 'skipped.tsv');
    if (existsSync(f)) skipped.push(...readFileSync(f, 'utf8').split('\n').slice(1).filter(Boolean));
  }
  const skippedIds = new Set(skipped.map((l) => l.split('\t')[0]!));
  const cursors = stores.map((st) => ({ it: st ? st.chunks(4096)[Symbol.asyncIterator]() : undefined, chunk: undefined as EmbeddingChunk | undefined, row: 0 }));
  const advance = async (c: (typeof cursors)[number]): Promise<void> => {
    if (!c.it) return;
    if (c.chunk && ++c.row < c.chunk.rows) return;
    const n = await c.it!.next();
    c.chunk = n.done ? undefined : n.value;
    c.row = 0;
    if (c.chunk && c.chunk.rows === 0) return advance(c);
  };
  for (const c of cursors) await advance(c);
  const file = path.join(ctx.dir, `${set}.arrow`);
  let sink: ArrowSink | undefined;
  let pend = { ids: [] as string[], feats: new Float32Array(EMBEDDING_BATCH_ROWS * dim), labels: [] as number[] };
  let rows = 0;
  const flush = async () => {
    if (!pend.ids.length && sink) return;
    const t = buildTable(
      { id: { kind: 'utf8', values: pend.ids }, embedding: { kind: 'embedding', values: pend.feats.slice(0, pend.ids.length * dim), dim }, label: { kind: 'int32', values: Int32Array.from(pend.labels) } },
      meta,
    );
    sink ??= await openArrowSink(file, t.schema, meta);
    for (const b of t.batches) sink.write(b);
    rows += pend.ids.length;
    pend = { ids: [], feats: pend.feats, labels: [] };
  };
  try {
    for (let j = 0; j < full.rows.length; j++) {
      const id = full.rows[j]!.id;
      const c = cursors[partOf(j)]!;
      const ch = c.chunk;
      if (!ch || ch.ids[c.row] !== id) {
        if (skippedIds.has(id)) continue;
        throw new ArtifactError(`${spec.stage}/${spec.label}: part ${partOf(j)}/${count} has ${ch ? `id ${ch.ids[c.row]}` : 'no more rows'} where the set has ${id}; delete the parts folder and rerun`);
      }
      pend.feats.set(ch.data.subarray(c.row * dim, (c.row + 1) * dim), pend.ids.length * dim);
      pend.ids.push(id);
      pend.labels.push(ch.labels ? ch.labels[c.row]! : -1);
      await advance(c);
      if (pend.ids.length >= EMBEDDING_BATCH_ROWS) await flush();
    }
    for (const [i, c] of cursors.entries()) if (c.chunk) throw new ArtifactError(`${spec.stage}/${spec.label}: part ${i}/${count} has rows the set does not (${c.chunk.ids[c.row]}); delete the parts folder and rerun`);
    await flush();
    await sink!.close();
  } catch (e) {
    await sink?.abort();
    throw e;
  }
  if (skipped.length) await atomicWriteFile(path.join(ctx.dir, 'skipped.tsv'), ['id\treason', ...skipped].join('\n') + '\n');
  return { files: { embeddings: `${set}.arrow` }, counts: { rows, skipped: skipped.length } };
}

