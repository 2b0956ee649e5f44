/**
 * Gallery stage: the report's retrieval grid (src/eval/gallery.ts). In-memory images are
 * written as PNGs here.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { atomicWriteFile, atomicWriteJson } from '../../core/fsutil.js';
import { int32Column, readArrowFile, stringColumn } from '../../core/arrow.js';
import type { Config } from '../../core/config.js';
import { buildGallery, GALLERY_NEIGHBOURS, GALLERY_SEEDS, readPicks } from '../../eval/gallery.js';
import type { StageContext, StageOutputs, StageSpec } from '../runner.js';
import type { ImageSet } from '../imagesets.js';
import { classesOf, readSet } from './common.js';

/** The path to show for row `i` of `set`: its file, or a PNG written into the stage folder. */
export async function imageOf(ctx: StageContext, set: ImageSet, i: number, tag: string): Promise<string> {
  const r = set.rows[i]!;
  if (!set.pixels) return r.path;
  const [h, w, c] = set.pixels.shape;
  const px = set.pixels.data.subarray(i * h * w * c, (i + 1) * h * w * c);
  const rel = `img/${tag}-${i}.png`;
  await atomicWriteFile(path.join(ctx.dir, rel), await sharp(Buffer.from(px), { raw: { width: w, height: h, channels: c } }).png().toBuffer());
  return rel;
}

/** The report's retrieval grid over the first seed's selections, one column per backbone. */
export function galleryStage(cfg: Config, data: StageSpec, failures: StageSpec, filter: StageSpec, selects: { label: string; select: StageSpec }[], suffix = ''): StageSpec {
  const deps: Record<string, StageSpec> = { data, failures, filter };
  selects.forEach((x, i) => (deps[`sel${i}`] = x.select));
  return {
    stage: 'gallery',
    label: `retrievals${suffix}`,
    version: 4,
    config: { seeds: GALLERY_SEEDS, neighbours: GALLERY_NEIGHBOURS, backbones: selects.map((x) => x.label) },
    deps,
    async run(ctx): Promise<StageOutputs> {
      const seedSet = await readSet(ctx.inputs.failures!, 'seed');
      const pool = await readSet(ctx.inputs.filter!, 'pool_filtered');
      await mkdir(path.join(ctx.dir, 'img'), { recursive: true });
      const gallery = await buildGallery({
        seedRows: seedSet.rows,
        poolRows: pool.rows,
        classNames: classesOf(ctx.inputs.data!).names,
        backbones: await Promise.all(
          selects.map(async (x, b) => {
            const sel = ctx.inputs[`sel${b}`]!;
            const picks = await readPicks(sel.file('debug_train_picks'));
            // a select stage under select.clean also wrote its uncleaned picks and the dropped ones
            if (!sel.manifest.outputs.dropped) return { label: x.label, picks };
            const t = await readArrowFile(sel.file('dropped'));
            const dropped = { ids: stringColumn(t, 'id', sel.file('dropped')), labels: int32Column(t, 'label', sel.file('dropped')) };
            return { label: x.label, picks, before: await readPicks(sel.file('debug_train_before_picks')), dropped };
          }),
        ),
        anyLabel: cfg.select.candidates === 'any_label',
        seedImage: (i) => imageOf(ctx, seedSet, i, 'seed'),
        poolImage: (i) => imageOf(ctx, pool, i, 'pool'),
      });
      await atomicWriteJson(path.join(ctx.dir, 'gallery.json'), gallery);
      return { files: { gallery: 'gallery.json' }, counts: { seeds: gallery.seeds.length, wrong: gallery.wrong.reduce((a, w) => a + w.wrong, 0) } };
    },
  };
}
