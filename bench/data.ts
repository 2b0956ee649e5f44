/**
 * Decode + transform throughput of the image pipeline (src/data/images.ts).
 *
 *   node dist/bench/data.js [--n 200] [--dir /tmp/dcd-bench-jpegs] [--reps 2]
 *
 * Generates `n` 500×375 JPEGs (quality 90, smooth colour fields plus noise, like a photo's
 * spectrum) in `dir` unless they are there, then times `imageBatches` at 224 px for the
 * eval transform (resize 256, centre crop 224) and the train transform (random-resized-crop
 * 224 + flip), with 1 and 2 images decoded at a time and libvips limited to one thread per
 * image, so "workers" means cores used. Prints one JSON line per configuration (best of
 * `reps`): wall-clock img/s, and CPU ms per image summed over all threads (steadier than
 * img/s on a shared machine). bench/data_torch.py measures torchvision's PIL pipeline on the same files.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { mulberry32 } from '../src/core/rng.js';
import { imageBatches, type ImageItem } from '../src/data/images.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const N = Number(arg('n', '200'));
const DIR = arg('dir', path.join(tmpdir(), 'dcd-bench-jpegs'));
const REPS = Number(arg('reps', '2'));
const W = 500;
const H = 375;

async function generate(): Promise<string[]> {
  mkdirSync(DIR, { recursive: true });
  const files = Array.from({ length: N }, (_, i) => path.join(DIR, `img${String(i).padStart(5, '0')}.jpg`));
  const rand = mulberry32(1234);
  for (const f of files) {
    if (existsSync(f)) continue;
    const px = Buffer.alloc(W * H * 3);
    const [a, b, c, d] = [rand(), rand(), rand(), rand()];
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const o = (y * W + x) * 3;
        const n = (rand() - 0.5) * 40;
        px[o] = Math.max(0, Math.min(255, 128 + 100 * Math.sin(x * 0.02 * (a + 0.2) + y * 0.01 * b) + n));
        px[o + 1] = Math.max(0, Math.min(255, 128 + 100 * Math.cos(y * 0.03 * (c + 0.2)) + n));
        px[o + 2] = Math.max(0, Math.min(255, 128 + 100 * Math.sin((x + y) * 0.015 * (d + 0.2)) + n));
      }
    await sharp(px, { raw: { width: W, height: H, channels: 3 } }).jpeg({ quality: 90 }).toFile(f);
  }
  return files;
}

/** Images per second (wall clock) and CPU milliseconds per image (all threads of the process). */
async function time(items: ImageItem[], workers: number, train: boolean): Promise<{ rate: number; cpuMs: number }> {
  const t = { resize: 256, crop: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let n = 0;
  for await (const b of imageBatches(items, t, 32, { concurrency: workers, prefetch: 2, train: train ? { seed: 0 } : undefined })) {
    n += b.ids.length;
    if (b.skipped.length) throw new Error(`bench: skipped ${b.skipped.map((s) => s.reason).join('; ')}`);
  }
  const c = process.cpuUsage(c0);
  return { rate: n / ((performance.now() - t0) / 1000), cpuMs: (c.user + c.system) / 1000 / n };
}

async function main(): Promise<void> {
  const files = await generate();
  const items = readdirSync(DIR)
    .filter((f) => f.endsWith('.jpg'))
    .sort()
    .slice(0, N)
    .map((f) => ({ id: f, path: path.join(DIR, f) }));
  sharp.cache(false); // every repetition decodes from scratch
  sharp.concurrency(1);
  await time(items.slice(0, 16), 1, false); // warm-up
  const info = { n: items.length, size: `${W}x${H}`, crop: 224, cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, sharp: sharp.versions.sharp, vips: sharp.versions.vips };
  process.stdout.write(JSON.stringify({ bench: 'data', ...info, files: files.length, dir: DIR }) + '\n');
  for (const transform of ['eval', 'train'] as const)
    for (const workers of [1, 2]) {
      let best = 0;
      let cpu = Infinity;
      for (let r = 0; r < REPS; r++) {
        const m = await time(items, workers, transform === 'train');
        best = Math.max(best, m.rate);
        cpu = Math.min(cpu, m.cpuMs);
      }
      process.stdout.write(JSON.stringify({ bench: 'data', impl: 'dcd-sharp', transform, workers, img_per_s: Number(best.toFixed(1)), cpu_ms_per_img: Number(cpu.toFixed(2)) }) + '\n');
    }
}

main().catch((e) => {
  process.stderr.write(`bench/data: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
