/**
 * The `backbone` stage of a `weights: ssl` backbone: self-supervised pretraining (DINO, or
 * SimCLR) of a small CNN on unlabelled images — the run's weak pool (`pretrain.data: pool`,
 * labels ignored), a broad synthetic draw (`pretrain.data: broad`, synthetic and Fashion-MNIST
 * data: the draw the supervised demo backbone learns from, labels ignored, fixed by
 * `pretrain.seed` so one pretraining serves every experiment seed, like a public checkpoint) or a
 * folder of images — never a debug or test set. Resumable: the
 * pretraining checkpoint lives in the stage folder, and a killed run continues from it.
 * Outputs the backbone (teacher for DINO) as `backbone.safetensors` in small_cnn's key
 * names, the loss record `loss.jsonl`, and a loss-curve plot `loss.png`; the manifest's
 * `extra.pretraining` is its row of the report's pretraining table.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { ConfigError, DataError } from '../../core/errors.js';
import type { Config, SslBackboneConfig } from '../../core/config.js';
import { atomicWriteFile } from '../../core/fsutil.js';
import { svgToPng } from '../../analysis/plot.js';
import { dinoOptions, dinoSchedule, pretrainDino, readLossRecord, type DinoOptions, type LossRecord, type UnlabelledImages } from '../../ssl/train.js';
import { readImageSet } from '../imagesets.js';
import type { StageOutputs, StageSpec } from '../runner.js';
import { saveCheckpoint } from '../../models/load.js';
import { generateBroad } from '../../data/synthetic.js';
import { broadDrawSource } from './common.js';
import type { PretrainingRow } from '../../eval/report.js';

/**
 * Splits `pretrain` of backbone `i` into the data source and the training options (library
 * defaults filled in). The config's checks ran before (src/pipeline/config-check.ts).
 */
export function sslPretrain(b: SslBackboneConfig, i: number): { data: string; broadSize: number; options: DinoOptions } {
  const { data = 'pool', broadSize = 3000, ...rest } = b.pretrain ?? {};
  return { data, broadSize, options: dinoOptions(rest, `config.backbones[${i}].pretrain`) };
}

/** Reads every image under `dir` (png, jpg, jpeg, webp; recursive), resized to `size`×`size` RGB. */
export async function readFolder(dir: string, size: number, where: string): Promise<UnlabelledImages> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError(`${where}: ${dir} is not a folder; give "pool" or a folder of images`);
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const f = path.join(d, e.name);
      if (e.isDirectory()) walk(f);
      else if (/\.(png|jpe?g|webp)$/i.test(e.name)) files.push(f);
    }
  };
  walk(dir);
  if (!files.length) throw new DataError(`${where}: ${dir} holds no .png/.jpg/.webp images`);
  const images = new Uint8Array(files.length * size * size * 3);
  for (let i = 0; i < files.length; i++) {
    try {
      const buf = await sharp(files[i]!).removeAlpha().resize(size, size, { fit: 'cover' }).toColourspace('srgb').raw().toBuffer();
      images.set(buf.subarray(0, size * size * 3), i * size * size * 3);
    } catch (e) {
      throw new DataError(`${files[i]}: cannot decode (${(e as Error).message}); remove it from ${dir}`);
    }
  }
  return { images, size, n: files.length };
}

/** An SVG line plot of the loss per step (with a 20-step running mean). */
export function lossSvg(recs: readonly LossRecord[], title: string): string {
  const W = 560, H = 300, L = 56, R = 16, T = 30, B = 40;
  if (!recs.length) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"/>`;
  const xs = recs.map((r) => r.step);
  const ys = recs.map((r) => r.loss);
  const x0 = Math.min(...xs), x1 = Math.max(x0 + 1, ...xs);
  const y0 = Math.min(...ys), y1 = Math.max(y0 + 1e-6, ...ys);
  const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const path1 = recs.map((r, i) => `${i ? 'L' : 'M'}${px(r.step).toFixed(1)},${py(r.loss).toFixed(1)}`).join('');
  const smooth = recs.map((_, i) => {
    const w = recs.slice(Math.max(0, i - 19), i + 1);
    return w.reduce((a, r) => a + r.loss, 0) / w.length;
  });
  const path2 = smooth.map((y, i) => `${i ? 'L' : 'M'}${px(recs[i]!.step).toFixed(1)},${py(y).toFixed(1)}`).join('');
  const ticks = [y0, (y0 + y1) / 2, y1].map((y) => `<text x="${L - 6}" y="${py(y) + 4}" font-size="11" text-anchor="end">${y.toFixed(2)}</text>`).join('');
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>` +
    `<text x="${W / 2}" y="18" font-size="13" text-anchor="middle">${title}</text>` +
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>` +
    ticks +
    `<text x="${L}" y="${H - B + 16}" font-size="11">${x0}</text><text x="${W - R}" y="${H - B + 16}" font-size="11" text-anchor="end">${x1}</text>` +
    `<text x="${(L + W - R) / 2}" y="${H - 6}" font-size="12" text-anchor="middle">step</text>` +
    `<path d="${path1}" fill="none" stroke="#9ecae1" stroke-width="1"/><path d="${path2}" fill="none" stroke="#08519c" stroke-width="2"/></svg>`
  );
}

/**
 * The pretraining stage of backbone `b` (index `i` in config.backbones).
 * @param data the run's data stage (for `pretrain.data: pool`; the stage then depends on the seed's draw)
 */
export function sslBackboneStage(cfg: Config, b: SslBackboneConfig, i: number, data: StageSpec): StageSpec {
  const { data: source, broadSize, options } = sslPretrain(b, i);
  const fromPool = source === 'pool';
  const fromBroad = source === 'broad';
  const broad = fromBroad ? broadDrawSource(cfg) : undefined;
  return {
    stage: 'backbone',
    label: b.label ?? b.name,
    version: 2, // 2: extra.pretraining (a row of data) in place of extra.markdown
    config: broad ? { name: b.name, weights: 'ssl', data: source, broadSize, ...broad.key, options } : { name: b.name, weights: 'ssl', data: source, options },
    // from the pool: one pretraining per experiment seed (each seed draws its own pool); from the
    // broad draw or a folder: one for all seeds (no dependency on the seed's data)
    deps: fromPool ? { data } : {},
    externals: fromPool || fromBroad ? [] : [source],
    async run(ctx): Promise<StageOutputs> {
      let images: UnlabelledImages;
      if (broad) {
        const draw = generateBroad(broad.synthetic, broadSize, options.seed, broad.objects());
        images = { images: draw.images, size: draw.size, n: draw.n };
      } else if (fromPool) {
        const pool = await readImageSet(ctx.inputs.data!.file('pool'));
        const [h, w, c] = pool.pixels!.shape; // "pool" is an in-memory pool (src/pipeline/config-check.ts)
        if (h !== w || c !== 3) throw new DataError(`pool: expected square RGB images for pretraining; the data stage wrote ${h}×${w}×${c}`);
        images = { images: pool.pixels!.data, size: h, n: pool.rows.length };
      } else images = await readFolder(source, options.crops.globalSize, `config.backbones[${i}].pretrain.data`);
      const t0 = performance.now();
      const bar = ctx.progress(dinoSchedule(options, images.n).total, 'step');
      let seen = 0; // a resumed run starts the bar at its checkpoint's step
      const r = await pretrainDino(images, options, ctx.dir, (rec) => {
        bar.tick(rec.step + 1 - seen);
        seen = rec.step + 1;
      });
      bar.stop();
      try {
        await saveCheckpoint(r.backbone, path.join(ctx.dir, 'backbone.safetensors'), 'safetensors', { 'dcd.backbone': b.name, 'dcd.pretrain': options.method, 'dcd.pretrain_data': source });
      } finally {
        r.backbone.dispose();
      }
      const recs = readLossRecord(r.lossFile);
      const title = `${b.label ?? b.name}: ${options.method} loss on ${fromPool ? 'the weak pool' : fromBroad ? 'a broad synthetic draw' : source} (${images.n} images)`;
      await atomicWriteFile(path.join(ctx.dir, 'loss.png'), await svgToPng(lossSvg(recs, title)));
      const at = (f: number) => recs[Math.min(recs.length - 1, Math.floor(f * (recs.length - 1)))];
      const mean = (a: number, z: number) => {
        const w = recs.slice(a, z);
        return w.length ? w.reduce((s, x) => s + x.loss, 0) / w.length : NaN;
      };
      const k = Math.max(1, Math.floor(recs.length / 10));
      const entropy = at(1)?.teacher_entropy;
      const pretraining: PretrainingRow = {
        backbone: b.label ?? b.name,
        method: options.method,
        data: fromPool ? 'pool' : source,
        images: images.n,
        steps: r.total,
        lossFirst: mean(0, k),
        lossLast: mean(recs.length - k, recs.length),
        ...(options.method === 'dino' ? { teacherEntropy: entropy ?? NaN } : {}),
        resumedFrom: r.resumedFrom,
      };
      ctx.log(`${options.method}: ${r.stepsRun} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s (resumed from ${r.resumedFrom})`);
      return {
        files: { weights: 'backbone.safetensors', loss: 'loss.jsonl', loss_png: 'loss.png' },
        counts: { steps: r.total, images: images.n },
        extra: { model: `small_cnn:${options.widths.join('-')}`, numClasses: 0, pretraining },
      };
    },
  };
}
