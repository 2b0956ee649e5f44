#!/usr/bin/env node
/**
 * Preview of the map and the slice gallery (src/analysis/slices-html.ts) on a finished run's
 * world-0 artifacts, before the report includes them: one backbone's seed failures sliced, its
 * debug-train picks and a pool sample on the map. Reads embed, failures and select stage folders
 * (the seed images' pixels from failures/…/seed.u8); no heldout, no training.
 *   npm run build && node scripts/science/slices-preview.mjs runs/<name> <backbone label> <out folder> [k|auto]
 * then open <out folder>/index.html (e.g. chromium --headless --screenshot=shot.png index.html).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { readArrowFile, stringColumn } from '../../dist/src/core/arrow.js';
import { readManifest } from '../../dist/src/data/manifest.js';
import { rowFacts } from '../../dist/src/eval/selection-quality.js';
import { EmbeddingStore } from '../../dist/src/retrieval/store.js';
import { failureSlices } from '../../dist/src/analysis/slices.js';
import { projectSets } from '../../dist/src/analysis/projection.js';
import { mapFragment, sliceGalleryFragment } from '../../dist/src/analysis/slices-html.js';

const [run, backbone, out, kArg = 'auto'] = process.argv.slice(2);
if (!run || !backbone || !out || !existsSync(path.join(run, 'embed'))) {
  console.error('usage: node scripts/science/slices-preview.mjs runs/<name> <backbone label> <out folder> [k|auto]');
  process.exit(2);
}
const one = (stage, re) => {
  const d = readdirSync(path.join(run, stage)).filter((x) => re.test(x));
  if (d.length !== 1) throw new Error(`${run}/${stage}: expected one folder matching ${re}, found ${d.join(', ') || 'none'}`);
  return path.join(run, stage, d[0]);
};
const failures = one('failures', /-s0-/);
const seedMan = await readManifest(path.join(failures, 'seed.arrow'));
const rowAt = new Map(seedMan.rows.map((r, i) => [r.id, i]));
const m = await (await EmbeddingStore.open([path.join(one('embed', new RegExp(`^${backbone}-mfreq(-s0)?-[0-9a-f]{10}$`)), 'mfreq.arrow')], { role: 'mfreq', requireLabel: true })).readAll();
const rows = m.ids.map((id, i) => (rowAt.has(id) ? i : -1)).filter((i) => i >= 0);
const take = (d, idx, dim) => {
  const o = new Float32Array(idx.length * dim);
  idx.forEach((r, t) => o.set(d.subarray(r * dim, (r + 1) * dim), t * dim));
  return o;
};
const seedIds = rows.map((i) => m.ids[i]);
const seedLabels = Int32Array.from(rows, (i) => m.labels[i]);
const seedData = take(m.data, rows, m.dim);
const slices = failureSlices(
  { data: seedData, dim: m.dim, labels: seedLabels, contexts: seedIds.map((id) => rowFacts(seedMan.rows[rowAt.get(id)]).context ?? null) },
  { k: kArg === 'auto' ? 'auto' : Number(kArg) },
);
const pool = await (await EmbeddingStore.open([path.join(one('embed', new RegExp(`^${backbone}-pool(-s0)?-[0-9a-f]{10}$`)), 'pool.arrow')], { role: 'pool', requireLabel: true })).readAll();
const picksFile = path.join(one('select', new RegExp(`^${backbone}-s0-`)), 'debug_train-picks.arrow');
const picks = await readArrowFile(picksFile);
const pickIds = stringColumn(picks, 'id', picksFile);
const poolAt = new Map(pool.ids.map((id, i) => [id, i]));
const map = projectSets(
  [
    { set: 'pool', ids: pool.ids, data: pool.data, labels: pool.labels },
    { set: 'pick', ids: pickIds, data: take(pool.data, pickIds.map((id) => poolAt.get(id)), pool.dim), seedIds: stringColumn(picks, 'seed_id', picksFile) },
    { set: 'seed', ids: seedIds, data: seedData, labels: seedLabels },
  ],
  m.dim,
  { sample: 2000 },
);
mkdirSync(path.join(out, 'images'), { recursive: true });
const shape = JSON.parse(seedMan.meta['dcd.pixels']).shape;
const px = readFileSync(path.join(failures, JSON.parse(seedMan.meta['dcd.pixels']).file));
const per = shape[0] * shape[1] * shape[2];
const classNames = JSON.parse(readFileSync(path.join(one('data', /^[a-z-]+?(-s0)?-[0-9a-f]{10}$/), 'classes.json'), 'utf8'));
const names = Array.isArray(classNames) ? classNames : classNames.names;
const gallery = await sliceGalleryFragment({
  slices,
  seedIds,
  seedLabels,
  classNames: names,
  thumb: async (i) => {
    const r = rowAt.get(seedIds[i]);
    const name = `seed-${r}.png`;
    await sharp(px.subarray(r * per, (r + 1) * per), { raw: { width: shape[1], height: shape[0], channels: shape[2] } }).resize(96, 96, { kernel: 'nearest' }).png().toFile(path.join(out, 'images', name));
    return `images/${name}`;
  },
});
writeFileSync(
  path.join(out, 'index.html'),
  `<!doctype html><meta charset="utf-8"><title>slices preview: ${backbone}</title><body style="font-family:sans-serif;max-width:1100px;margin:auto"><h2>Map (${backbone})</h2>${mapFragment(map, { title: backbone, classNames: names })}<h2>Failure slices (${backbone})</h2>${gallery}</body>`,
);
console.log(path.join(out, 'index.html'));
