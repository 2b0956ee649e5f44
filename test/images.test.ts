import { describe, expect, it, beforeAll } from 'vitest';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import {
  centreCropOffset,
  imageBatches,
  loadImage,
  pyRound,
  randomResizedCropBox,
  resizeShorter,
  transformRaw,
  type ImageBatch,
  type ImageItem,
} from '../src/data/images.js';
import { mulberry32 } from '../src/core/rng.js';
import { resizeBilinearU8 } from '../src/data/resample.js';
import { ConfigError, DataError } from '../src/core/errors.js';

const ID = { mean: [0, 0, 0], std: [1, 1, 1] } as const;
let dir: string;

/** w×h RGB where pixel (x, y) = (x*4 % 256, y*4 % 256, (x+y) % 256). */
function gradient(w: number, h: number): Buffer {
  const b = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      b[o] = (x * 4) % 256;
      b[o + 1] = (y * 4) % 256;
      b[o + 2] = (x + y) % 256;
    }
  return b;
}

function solid(w: number, h: number, rgb: [number, number, number]) {
  return sharp({ create: { width: w, height: h, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } });
}

const px = (a: Float32Array, w: number, x: number, y: number) => [a[(y * w + x) * 3]!, a[(y * w + x) * 3 + 1]!, a[(y * w + x) * 3 + 2]!].map((v) => Math.round(v * 255));

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'dcd-images-'));
  await sharp(gradient(40, 30), { raw: { width: 40, height: 30, channels: 3 } }).png().toFile(path.join(dir, 'grad.png'));
  for (const fmt of ['jpeg', 'png', 'webp', 'gif', 'tiff'] as const) await solid(48, 40, [200, 40, 90]).toFormat(fmt).toFile(path.join(dir, `solid.${fmt}`));
});

describe('torchvision geometry helpers', () => {
  it('rounds halves to even and resizes the shorter side with truncation', () => {
    expect([0.5, 1.5, 2.5, 3.5, 2.4, 2.6].map(pyRound)).toEqual([0, 2, 2, 4, 2, 3]);
    expect(resizeShorter(500, 375, 256)).toEqual({ width: 341, height: 256 });
    expect(resizeShorter(375, 500, 256)).toEqual({ width: 256, height: 341 });
    expect(centreCropOffset(341, 256, 224)).toEqual({ left: 58, top: 16 }); // 58.5 -> 58 (Python round)
  });
  it('random-resized-crop stays inside the image and falls back to a centre crop', () => {
    const r = mulberry32(1);
    for (let i = 0; i < 200; i++) {
      const b = randomResizedCropBox(50, 30, r);
      expect(b.left).toBeGreaterThanOrEqual(0);
      expect(b.top).toBeGreaterThanOrEqual(0);
      expect(b.left + b.width).toBeLessThanOrEqual(50);
      expect(b.top + b.height).toBeLessThanOrEqual(30);
    }
    // an RNG that always returns ~1 asks for the whole area at ratio 4/3: too wide for a 10×100 image
    const b = randomResizedCropBox(10, 100, () => 0.999999);
    expect(b).toMatchObject({ width: 10, height: pyRound(10 / 0.75), left: 0, top: Math.floor((100 - 13) / 2) });
  });
});

describe('loadImage', () => {
  it('passes an image already at the target size through unresampled and centre-crops exactly', async () => {
    // shorter side 30 = resize: no resampling; crop 20 at left = round(10) = 10, top = round(5) = 5
    const a = await loadImage(path.join(dir, 'grad.png'), { resize: 30, crop: 20, ...ID });
    expect(a.length).toBe(20 * 20 * 3);
    for (const [x, y] of [
      [0, 0],
      [19, 0],
      [7, 13],
      [19, 19],
    ] as const)
      expect(px(a, 20, x, y)).toEqual([((x + 10) * 4) % 256, ((y + 5) * 4) % 256, (x + 10 + y + 5) % 256]);
  });
  it('normalises with mean and std', async () => {
    const mean = [0.5, 0.25, 0.1];
    const std = [0.5, 0.2, 2];
    const a = await loadImage(path.join(dir, 'grad.png'), { resize: 30, crop: 20, mean, std });
    const raw = [(10 * 4) / 255, (5 * 4) / 255, 15 / 255];
    expect(a[0]).toBeCloseTo((raw[0]! - 0.5) / 0.5, 5);
    expect(a[1]).toBeCloseTo((raw[1]! - 0.25) / 0.2, 5);
    expect(a[2]).toBeCloseTo((raw[2]! - 0.1) / 2, 5);
  });
  it('decodes JPEG, PNG, WebP, GIF and TIFF', async () => {
    for (const fmt of ['jpeg', 'png', 'webp', 'gif', 'tiff']) {
      const a = await loadImage(path.join(dir, `solid.${fmt}`), { resize: 24, crop: 16, ...ID });
      const [r, g, b] = px(a, 16, 8, 8);
      expect(Math.abs(r! - 200), fmt).toBeLessThan(12);
      expect(Math.abs(g! - 40), fmt).toBeLessThan(12);
      expect(Math.abs(b! - 90), fmt).toBeLessThan(12);
    }
  });
  it('applies EXIF orientation before cropping', async () => {
    // stored 40×20: left half red, right half blue; orientation 6 = display rotated 90° clockwise,
    // so the displayed 20×40 image is red on top, blue below
    const w = 40, h = 20;
    const b = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) b.set(x < 20 ? [255, 0, 0] : [0, 0, 255], (y * w + x) * 3);
    const f = path.join(dir, 'orient6.jpg');
    await sharp(b, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toFile(f);
    expect((await sharp(f).metadata()).orientation).toBe(6);
    const a = await loadImage(f, { resize: 20, crop: 20, ...ID });
    // crop rows 10..29 of the displayed image: rows 0..9 red, 10..19 blue
    expect(px(a, 20, 10, 2)[0]).toBeGreaterThan(200);
    expect(px(a, 20, 10, 2)[2]).toBeLessThan(50);
    expect(px(a, 20, 10, 17)[2]).toBeGreaterThan(200);
    expect(px(a, 20, 10, 17)[0]).toBeLessThan(50);
  });
  it('converts CMYK, greyscale and RGBA to RGB', async () => {
    const cmyk = path.join(dir, 'cmyk.jpg');
    await solid(32, 32, [200, 40, 90]).toColourspace('cmyk').jpeg().toFile(cmyk);
    expect((await sharp(cmyk).metadata()).space).toBe('cmyk');
    const c = px(await loadImage(cmyk, { resize: 16, crop: 16, ...ID }), 16, 8, 8);
    expect(Math.abs(c[0]! - 200)).toBeLessThan(30);
    expect(Math.abs(c[1]! - 40)).toBeLessThan(30);
    expect(Math.abs(c[2]! - 90)).toBeLessThan(30);

    const grey = path.join(dir, 'grey.png');
    await sharp(Buffer.alloc(16 * 16, 77), { raw: { width: 16, height: 16, channels: 1 } }).toColourspace('b-w').png().toFile(grey);
    expect((await sharp(grey).metadata()).channels).toBe(1);
    expect(px(await loadImage(grey, { resize: 16, crop: 16, ...ID }), 16, 3, 3)).toEqual([77, 77, 77]);

    const rgba = path.join(dir, 'rgba.png');
    const p = Buffer.alloc(16 * 16 * 4);
    for (let i = 0; i < 256; i++) p.set([10, 20, 30, i % 2 ? 0 : 255], i * 4);
    await sharp(p, { raw: { width: 16, height: 16, channels: 4 } }).png().toFile(rgba);
    const a = await loadImage(rgba, { resize: 16, crop: 16, ...ID });
    expect(a.length).toBe(16 * 16 * 3);
    expect(px(a, 16, 1, 0)).toEqual([10, 20, 30]); // alpha dropped (PIL convert('RGB')), not blended
  });
  it('resizes the shorter side then centre-crops', async () => {
    const a = await loadImage(path.join(dir, 'grad.png'), { resize: 15, crop: 10, ...ID });
    expect(a.length).toBe(300);
    // 40×30 → 20×15 → crop at left 5, top round(2.5)=2: pixel (0,0) ≈ source (2*5+0.5, 2*2+0.5) averaged
    const [r, g] = px(a, 10, 0, 0);
    expect(Math.abs(r! - 4 * 10.5)).toBeLessThanOrEqual(4);
    expect(Math.abs(g! - 4 * 4.5)).toBeLessThanOrEqual(4);
  });
  it('throws DataError naming the file for a bad image and ConfigError for a bad transform', async () => {
    const f = path.join(dir, 'text.jpg');
    writeFileSync(f, '<html>not found</html>');
    await expect(loadImage(f, { resize: 8, crop: 8, ...ID })).rejects.toThrow(DataError);
    await expect(loadImage(f, { resize: 8, crop: 8, ...ID })).rejects.toThrow(/text\.jpg: not an image/);
    await expect(loadImage(path.join(dir, 'grad.png'), { resize: 8, crop: 16, ...ID })).rejects.toThrow(ConfigError);
  });
});

describe('train transform', () => {
  it('is repeatable for a seed, varies with the seed, and flips', async () => {
    const f = path.join(dir, 'grad.png');
    const t = { resize: 16, crop: 16, ...ID };
    const a = await loadImage(f, t, { train: { seed: 7 } });
    const b = await loadImage(f, t, { train: { seed: 7 } });
    expect(Array.from(a)).toEqual(Array.from(b));
    const outs = await Promise.all([1, 2, 3, 4].map((seed) => loadImage(f, t, { train: { seed } })));
    expect(new Set(outs.map((o) => o.join(','))).size).toBeGreaterThan(1);
    // scale (1,1), ratio of the image, flip always: the output is the mirrored full image
    const full = await loadImage(f, { resize: 16, crop: 16, ...ID }, { train: { seed: 3, scale: [1, 1], ratio: [4 / 3, 4 / 3], flip: 1 } });
    const [r0] = px(full, 16, 0, 8);
    const [r15] = px(full, 16, 15, 8);
    expect(r0!).toBeGreaterThan(r15!); // red grows with x in the source, so it falls with x after the flip
  });
});

describe('imageBatches', () => {
  let items: ImageItem[];
  beforeAll(async () => {
    items = [];
    for (let i = 0; i < 7; i++) {
      const f = path.join(dir, `ok${i}.png`);
      await solid(20 + i, 18, [i * 30, 0, 0]).png().toFile(f);
      items.push({ id: `ok${i}`, path: f });
    }
    const jpg = await solid(64, 48, [1, 2, 3]).jpeg().toBuffer();
    const bad: [string, Buffer | string][] = [
      ['empty.jpg', Buffer.alloc(0)],
      ['html.jpg', '<!doctype html><title>404</title>'],
      ['truncated.jpg', jpg.subarray(0, Math.floor(jpg.length / 2))],
      ['garbage.png', Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(200, 7)])],
      ['bomb.png', pngBomb(30000, 30000)],
    ];
    for (const [name, data] of bad) writeFileSync(path.join(dir, name), data);
    const withBad: ImageItem[] = [];
    items.forEach((it, i) => {
      withBad.push(it);
      if (i < bad.length) withBad.push({ id: bad[i]![0], path: path.join(dir, bad[i]![0]) });
    });
    withBad.push({ id: 'missing', path: path.join(dir, 'nope.jpg') });
    items = withBad;
  });

  it('skips bad files with a reason, keeps order, and fills batches', async () => {
    const t = { resize: 16, crop: 16, ...ID };
    const batches: ImageBatch[] = [];
    for await (const b of imageBatches(items, t, 3, { concurrency: 2 })) batches.push(b);
    expect(batches.map((b) => b.ids)).toEqual([['ok0', 'ok1', 'ok2'], ['ok3', 'ok4', 'ok5'], ['ok6']]);
    for (const b of batches) expect(b.data.length).toBe(b.ids.length * 16 * 16 * 3);
    expect(px(batches[1]!.data.subarray(16 * 16 * 3), 16, 5, 5)[0]).toBe(120); // ok4 = red 4*30
    const reasons = Object.fromEntries(batches.flatMap((b) => b.skipped).map((s) => [s.id, s.reason]));
    expect(Object.keys(reasons).sort()).toEqual(['bomb.png', 'empty.jpg', 'garbage.png', 'html.jpg', 'missing', 'truncated.jpg']);
    expect(reasons['empty.jpg']).toMatch(/empty file/);
    expect(reasons['html.jpg']).toMatch(/not an image/);
    expect(reasons['truncated.jpg']).toMatch(/truncated|corrupt/);
    expect(reasons['garbage.png']).toMatch(/corrupt|truncated/);
    expect(reasons['bomb.png']).toMatch(/pixel limit/);
    expect(reasons['missing']).toMatch(/missing file/);
  });
  it('gives the same batches at concurrency 1 and 3, and with train augmentation', async () => {
    const t = { resize: 16, crop: 12, ...ID };
    const run = async (concurrency: number, train?: { seed: number }) => {
      const out: number[] = [];
      for await (const b of imageBatches(items, t, 4, { concurrency, train, prefetch: 2 })) out.push(...b.data);
      return out;
    };
    expect(await run(1)).toEqual(await run(3));
    expect(await run(1, { seed: 5 })).toEqual(await run(3, { seed: 5 }));
  });
  it('decodes ahead of the consumer, but only up to the prefetch window', async () => {
    const files: ImageItem[] = [];
    for (let i = 0; i < 20; i++) {
      const f = path.join(dir, `pf${i}.png`);
      await solid(10, 10, [i, i, i]).png().toFile(f);
      files.push({ id: `pf${i}`, path: f });
    }
    for (const prefetch of [0, 1]) {
      let decoded = 0;
      const it = imageBatches(files, { resize: 8, crop: 8, ...ID }, 4, { concurrency: 2, prefetch, onDecoded: (n) => (decoded = n) });
      const first = await it.next();
      expect(first.value!.ids).toEqual(['pf0', 'pf1', 'pf2', 'pf3']);
      // hold the batch (the "model" is busy): decoding goes on without the consumer...
      // batch 1 is handed over once batch 2's first image is in: 5 consumed + (prefetch + 1) × 4 ahead
      const want = 5 + (prefetch + 1) * 4;
      for (let k = 0; k < 400 && decoded < want; k++) await new Promise((r) => setTimeout(r, 25));
      // ...and stops at the window
      await new Promise((r) => setTimeout(r, 200));
      expect(decoded).toBe(want);
      let rest = 0;
      for await (const b of { [Symbol.asyncIterator]: () => it }) rest += b.ids.length;
      expect(rest).toBe(16);
      expect(decoded).toBe(20);
    }
  });
  it('refuses images over a custom pixel limit', async () => {
    const out: ImageBatch[] = [];
    for await (const b of imageBatches(items.slice(0, 1), { resize: 16, crop: 16, ...ID }, 2, { limitInputPixels: 100 })) out.push(b);
    expect(out).toHaveLength(1);
    expect(out[0]!.ids).toEqual([]);
    expect(out[0]!.skipped[0]!.reason).toMatch(/pixel limit \(100 pixels\)/);
  });
  it('takes raw in-memory images, with and without resampling', async () => {
    const grey = new Uint8Array(28 * 28).map((_, i) => i % 256);
    const rgb = new Uint8Array(gradient(40, 30));
    const raws: ImageItem[] = [
      { id: 'g', raw: { data: grey, width: 28, height: 28, channels: 1 } },
      { id: 'c', raw: { data: rgb, width: 40, height: 30, channels: 3 } },
      { id: 'bad', raw: { data: new Uint8Array(5), width: 28, height: 28, channels: 1 } },
      { id: 'rgba', raw: { data: new Uint8Array(28 * 28 * 4).map((_, i) => [11, 22, 33, 0][i % 4]!), width: 28, height: 28, channels: 4 } },
    ];
    const t = { resize: 28, crop: 28, ...ID };
    const out: ImageBatch[] = [];
    for await (const b of imageBatches(raws, t, 8)) out.push(b);
    expect(out[0]!.ids).toEqual(['g', 'c', 'rgba']);
    expect(px(out[0]!.data.subarray(2 * 28 * 28 * 3), 28, 5, 5)).toEqual([11, 22, 33]);
    expect(px(out[0]!.data, 28, 3, 1)).toEqual([31, 31, 31]);
    const c = out[0]!.data.subarray(28 * 28 * 3, 2 * 28 * 28 * 3);
    // 40×30 → 37×28 (trunc 37.33), crop left round(4.5)=4: pixel (0,0) near source x ≈ 4.5*40/37
    expect(c.length).toBe(28 * 28 * 3);
    expect(out[0]!.skipped.map((s) => s.id)).toEqual(['bad']);
    const again = await transformRaw('c', raws[1]!.raw as never, t);
    expect(Array.from(again)).toEqual(Array.from(c));
    // train on raw pixels: whole image (scale 1, its own ratio), always flipped = exact mirror
    const sq = { data: new Uint8Array(gradient(16, 16)), width: 16, height: 16, channels: 3 as const };
    const m = await transformRaw('sq', sq, { resize: 16, crop: 16, ...ID }, { train: { seed: 1, scale: [1, 1], ratio: [1, 1], flip: 1 } });
    for (const [x, y] of [[0, 0], [3, 9], [15, 15]] as const) expect(px(m, 16, x, y)).toEqual([((15 - x) * 4) % 256, (y * 4) % 256, (15 - x + y) % 256]);
    // a large output goes through sharp instead of the JS resampler: both are bilinear
    const big = await transformRaw('c', raws[1]!.raw as never, { resize: 120, crop: 100, ...ID });
    const js = resizeBilinearU8(rgb, 40, 3, { left: 0, top: 0, width: 40, height: 30 }, 160, 120);
    let d = 0;
    for (let y = 0; y < 100; y++) for (let x = 0; x < 100; x++) for (let ch = 0; ch < 3; ch++) d += Math.abs(big[(y * 100 + x) * 3 + ch]! * 255 - js[((y + 10) * 160 + x + 30) * 3 + ch]!);
    expect(d / (100 * 100 * 3)).toBeLessThan(3); // grey levels, mean over the crop
    const r1 = await transformRaw('sq', sq, { resize: 16, crop: 8, ...ID }, { train: { seed: 9 } });
    const r2 = await transformRaw('sq', sq, { resize: 16, crop: 8, ...ID }, { train: { seed: 9 } });
    expect(Array.from(r1)).toEqual(Array.from(r2));
  });
});

/** A valid PNG header claiming w×h pixels with no real data: sharp must refuse it from the header alone. */
function pngBomb(w: number, h: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.alloc(10)), chunk('IEND', Buffer.alloc(0))]);
}

void readFileSync;

describe('parity with torchvision (fixtures from test/fixtures/data/make_parity.py)', () => {
  it('matches Resize + CenterCrop + ToTensor within resampling differences', async () => {
    const fx = path.join(path.dirname(new URL(import.meta.url).pathname), 'fixtures', 'data');
    const meta = JSON.parse(readFileSync(path.join(fx, 'parity.json'), 'utf8')) as { resize: number; crop: number; images: { file: string; ref: string }[] };
    for (const im of meta.images) {
      const b = readFileSync(path.join(fx, im.ref));
      const ref = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
      const got = await loadImage(path.join(fx, im.file), { resize: meta.resize, crop: meta.crop, ...ID });
      expect(got.length, im.file).toBe(ref.length);
      let sum = 0;
      let max = 0;
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(got[i]! - ref[i]!);
        sum += d;
        max = Math.max(max, d);
      }
      // different bilinear implementations (PIL vs libvips): small mean error; a wrong crop
      // offset or a resize by one pixel more gives a mean error of ~0.03 on these patterns
      expect(sum / ref.length, `${im.file} mean abs diff`).toBeLessThan(0.005);
      expect(max, `${im.file} max abs diff`).toBeLessThan(0.05);
    }
  });
  it('the JS resampler of in-memory images matches PIL bilinear to within one grey level', async () => {
    const fx = path.join(path.dirname(new URL(import.meta.url).pathname), 'fixtures', 'data');
    const meta = JSON.parse(readFileSync(path.join(fx, 'parity.json'), 'utf8')) as { resize: number; crop: number; images: { file: string; ref: string }[] };
    for (const im of meta.images.filter((m) => m.file.endsWith('.png'))) {
      const { data, info } = await sharp(path.join(fx, im.file)).raw().toBuffer({ resolveWithObject: true });
      const raw = { data: new Uint8Array(data), width: info.width, height: info.height, channels: info.channels as 3 | 4 };
      const got = await transformRaw(im.file, raw, { resize: meta.resize, crop: meta.crop, ...ID });
      const b = readFileSync(path.join(fx, im.ref));
      const ref = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
      let max = 0;
      for (let i = 0; i < ref.length; i++) max = Math.max(max, Math.abs(got[i]! - ref[i]!));
      expect(max * 255, im.file).toBeLessThanOrEqual(1.0001);
    }
  });
});
