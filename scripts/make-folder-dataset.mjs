#!/usr/bin/env node
// Writes a folder dataset the way a user would bring one: plain PNG ImageFolders, a weak
// pool CSV, classes.txt, subset.txt and contexts.csv. It uses sharp only, not dcd's code,
// so `dcd init` + `dcd run` see it as any outside data set.
//
// Images: an object (the class: disc, square, triangle, plus, cross, ring) in a random
// colour over a textured background (the context: grass, sky, sand, snow, brick, night).
// Class y's home context is context y. train and test show 75% of each class at home, so a
// model learns the background as a shortcut; mfreq and complement (the deployment sets) show
// 80% of the objects away from home. The pool (weak labels = the first 4 classes) covers every
// context, 40% at home, with 15% images of another class and 15% without an object under
// their weak label; pool.csv records true_label and context for the report.
//
//   node scripts/make-folder-dataset.mjs OUT [--preset small|large|web|web-large] [--size 32] [--seed 0]
//       [--train N] [--test N] [--shifted N] [--pool N]     (N = images per set)
//
// small: 600 / 300 / 240 / 1,200 (CI); large: 12,000 / 4,000 / 3,000 / 20,000 (42,000 images).
// The web presets have a web-like pool (docs/experiments/web-like-pool.md): 4.6× as many pool images
// per subset class as train images per class (the paper's 5,956 Flickr images per class against
// ImageNet's ≈ 1,300), and web-search noise: 14% another class, 10% no object, 10% an off-topic
// object of no class (true_label none), 10% near-copies of an earlier pool image of the same query.
// web: 3,000 / 1,200 / 1,000 / 9,200 (15,400 images); web-large: 8,400 / 2,400 / 2,000 / 25,200 (40,000).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';

const CLASSES = ['disc', 'square', 'triangle', 'plus', 'cross', 'ring'];
const CONTEXTS = ['grass', 'sky', 'sand', 'snow', 'brick', 'night'];
const SUBSET = 4;
const CLASSIC = { wrong: 0.15, none: 0.15, offTopic: 0, dup: 0 };
const WEB = { wrong: 0.14, none: 0.1, offTopic: 0.1, dup: 0.1 };
const PRESETS = {
  small: { train: 600, test: 300, shifted: 240, pool: 1200, noise: CLASSIC },
  large: { train: 12000, test: 4000, shifted: 3000, pool: 20000, noise: CLASSIC },
  web: { train: 3000, test: 1200, shifted: 1000, pool: 9200, noise: WEB },
  'web-large': { train: 8400, test: 2400, shifted: 2000, pool: 25200, noise: WEB },
};

function parseArgs(argv) {
  const out = argv[0];
  if (!out || out.startsWith('--')) {
    console.error('usage: node scripts/make-folder-dataset.mjs OUT [--preset small|large|web|web-large] [--size 32] [--seed 0] [--train N] [--test N] [--shifted N] [--pool N]');
    process.exit(2);
  }
  const o = { out, preset: 'small', size: 32, seed: 0 };
  for (let i = 1; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`--${k} needs a value`);
    o[k] = k === 'preset' ? v : Number(v);
  }
  if (!PRESETS[o.preset]) throw new Error(`--preset: ${Object.keys(PRESETS).join(', ')}; not ${o.preset}`);
  return { ...PRESETS[o.preset], ...o };
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const clamp = (x) => (x < 0 ? 0 : x > 255 ? 255 : Math.round(x));

/** Background texture of context c: RGB, HWC. */
function background(c, S, rand) {
  const px = new Uint8Array(S * S * 3);
  const jitter = () => (rand() - 0.5) * 30;
  const base = [
    [60, 140, 50], // grass
    [120, 170, 235], // sky
    [215, 190, 130], // sand
    [235, 240, 245], // snow
    [160, 70, 55], // brick
    [20, 20, 45], // night
  ][c].map((v) => v + jitter());
  const phase = rand() * 6.28;
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      let v = [...base];
      const n = (rand() - 0.5) * 24;
      if (c === 0) v = v.map((q, k) => q + n + (k === 1 ? 25 * Math.sin(x * 1.3 + phase) : 0)); // grass blades
      else if (c === 1) v = v.map((q) => q - (y / S) * 50 + n * 0.3); // sky gradient
      else if (c === 2) v = v.map((q) => q + 15 * Math.sin((x + y) * 0.5 + phase) + n); // dunes
      else if (c === 3) v = v.map((q) => q - (rand() < 0.08 ? 40 : 0) + n * 0.3); // snow speckles
      else if (c === 4) {
        const row = Math.floor(y / 4);
        const mortar = y % 4 === 0 || (x + (row % 2) * 3) % 6 === 0;
        v = mortar ? [190, 185, 175] : v.map((q) => q + n);
      } else v = rand() < 0.02 ? [250, 250, 220] : v.map((q) => q + n * 0.3); // stars
      const o = (y * S + x) * 3;
      px[o] = clamp(v[0]);
      px[o + 1] = clamp(v[1]);
      px[o + 2] = clamp(v[2]);
    }
  return px;
}

/** Whether pixel (x, y) lies on shape k centred at (cx, cy) with radius r. */
function onShape(k, x, y, cx, cy, r) {
  const dx = x - cx;
  const dy = y - cy;
  const d = Math.hypot(dx, dy);
  const w = Math.max(1.2, r * 0.35);
  switch (k) {
    case 0:
      return d <= r;
    case 1:
      return Math.abs(dx) <= r * 0.85 && Math.abs(dy) <= r * 0.85;
    case 2:
      return dy <= r * 0.8 && dy >= -r && Math.abs(dx) <= ((dy + r) / (1.8 * r)) * r;
    case 3:
      return (Math.abs(dx) <= w / 2 && Math.abs(dy) <= r) || (Math.abs(dy) <= w / 2 && Math.abs(dx) <= r);
    case 4:
      return (Math.abs(dx - dy) <= w * 0.7 || Math.abs(dx + dy) <= w * 0.7) && Math.abs(dx) <= r * 0.8 && Math.abs(dy) <= r * 0.8;
    case 5:
      return d <= r && d >= r - w;
  }
  return false;
}

/** An off-topic object: a random star-shaped polygon (5-9 vertices), like none of the classes' shapes. */
function drawOffTopic(px, S, rand) {
  const n = 5 + Math.floor(rand() * 5);
  const radii = Array.from({ length: n }, () => 0.45 + 0.55 * rand());
  const rot = rand() * 2 * Math.PI;
  const colour = [rand() * 255, rand() * 255, rand() * 255];
  const r = S * (0.25 + rand() * 0.12);
  const cx = S / 2 + (rand() - 0.5) * S * 0.2;
  const cy = S / 2 + (rand() - 0.5) * S * 0.2;
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      const dx = (x + 0.5 - cx) / r;
      const dy = (y + 0.5 - cy) / r;
      const a = ((((Math.atan2(dy, dx) - rot) / (2 * Math.PI)) % 1) + 1) % 1 * n;
      const k = Math.floor(a) % n;
      const rr = radii[k] + (radii[(k + 1) % n] - radii[k]) * (a - Math.floor(a));
      if (dx * dx + dy * dy <= rr * rr) {
        const o = (y * S + x) * 3;
        for (let c = 0; c < 3; c++) px[o + c] = clamp(colour[c] + (rand() - 0.5) * 16);
      }
    }
  return px;
}

/** A near-copy of `src` (a repost, re-encoded): contrast within ±5%, brightness within ±3%, fresh noise. */
function nearCopy(src, rand) {
  const gain = 1 + (rand() - 0.5) * 0.1;
  const bias = (rand() - 0.5) * 0.06 * 255;
  return src.map((v) => clamp(v * gain + bias + (rand() - 0.5) * 8));
}

function drawImage(cls, ctx, S, rand) {
  const px = background(ctx, S, rand);
  if (cls < 0) return px;
  const colour = [rand() * 255, rand() * 255, rand() * 255];
  const r = S * (0.25 + rand() * 0.12);
  const cx = S / 2 + (rand() - 0.5) * S * 0.2;
  const cy = S / 2 + (rand() - 0.5) * S * 0.2;
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++)
      if (onShape(cls, x + 0.5, y + 0.5, cx, cy, r)) {
        const o = (y * S + x) * 3;
        for (let k = 0; k < 3; k++) px[o + k] = clamp(colour[k] + (rand() - 0.5) * 16);
      }
  return px;
}

/** Context of an image of class y: home with probability `home`, else one of the others. */
function pickContext(y, home, rand) {
  if (rand() < home) return y % CONTEXTS.length;
  const others = CONTEXTS.map((_, i) => i).filter((i) => i !== y % CONTEXTS.length);
  return others[Math.floor(rand() * others.length)];
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const S = o.size;
  const rand = mulberry32(0x5eed + o.seed * 7919);
  mkdirSync(o.out, { recursive: true });
  const contexts = ['path,context'];
  const jobs = [];
  const write = (rel, px) => {
    const file = path.join(o.out, rel);
    mkdirSync(path.dirname(file), { recursive: true });
    jobs.push(() => sharp(Buffer.from(px), { raw: { width: S, height: S, channels: 3 } }).png().toFile(file));
  };
  const sets = [
    ['train', o.train, 0.75],
    ['test', o.test, 0.75],
    ['mfreq', o.shifted, 0.2],
    ['complement', o.shifted, 0.2],
  ];
  for (const [name, n, home] of sets)
    for (let i = 0; i < n; i++) {
      const y = i % CLASSES.length;
      const c = pickContext(y, home, rand);
      const rel = `${name}/${CLASSES[y]}/${String(i).padStart(6, '0')}.png`;
      write(rel, drawImage(y, c, S, rand));
      contexts.push(`${rel},${CONTEXTS[c]}`);
    }
  const pool = ['path,weak_label,true_label,context'];
  const nz = o.noise;
  // originals a near-copy may repeat, per query (weak class): the last 50 written
  const recent = Array.from({ length: SUBSET }, () => []);
  for (let i = 0; i < o.pool; i++) {
    const weak = i % SUBSET;
    const rel = `pool/${CLASSES[weak]}/${String(i).padStart(6, '0')}.png`;
    // the web presets' near-copies draw their own number first; the classic presets draw exactly as before
    if (nz.dup > 0 && rand() < nz.dup && recent[weak].length) {
      const src = recent[weak][Math.floor(rand() * recent[weak].length)];
      write(rel, nearCopy(src.px, rand));
      pool.push(`${rel},${CLASSES[weak]},${src.truth},${CONTEXTS[src.c]}`);
      continue;
    }
    const u = rand();
    // classic: 70% show the weak class, 15% another class, 15% no object (web: + off-topic objects)
    const clean = 1 - nz.wrong - nz.none - nz.offTopic;
    const kind = u < clean ? 'weak' : u < clean + nz.wrong ? 'other' : u < clean + nz.wrong + nz.none ? 'none' : 'offtopic';
    const truth = kind === 'weak' ? weak : kind === 'other' ? (weak + 1 + Math.floor(rand() * (CLASSES.length - 1))) % CLASSES.length : -1;
    const c = pickContext(weak, 0.4, rand);
    const px = kind === 'offtopic' ? drawOffTopic(background(c, S, rand), S, rand) : drawImage(truth, c, S, rand);
    write(rel, px);
    const truthName = truth >= 0 ? CLASSES[truth] : 'none';
    pool.push(`${rel},${CLASSES[weak]},${truthName},${CONTEXTS[c]}`);
    if (nz.dup > 0) {
      recent[weak].push({ px, truth: truthName, c });
      if (recent[weak].length > 50) recent[weak].shift();
    }
  }
  writeFileSync(path.join(o.out, 'pool.csv'), pool.join('\n') + '\n');
  writeFileSync(path.join(o.out, 'contexts.csv'), contexts.join('\n') + '\n');
  writeFileSync(path.join(o.out, 'classes.txt'), CLASSES.join('\n') + '\n');
  writeFileSync(path.join(o.out, 'subset.txt'), CLASSES.slice(0, SUBSET).join('\n') + '\n');
  const limit = 8;
  for (let i = 0; i < jobs.length; i += limit) await Promise.all(jobs.slice(i, i + limit).map((j) => j()));
  console.log(`${o.out}: ${jobs.length} PNG images (${S}×${S}): train ${o.train}, test ${o.test}, mfreq ${o.shifted}, complement ${o.shifted}, pool ${o.pool}`);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
