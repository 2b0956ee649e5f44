#!/usr/bin/env node
/**
 * Design aid for issue 16 (blind: reads only the debug-seed set's predictions, never heldout or
 * complement). For each fine-tuned row of a one-world run (`world_seed`), how much of the spread
 * of its Seed-column accuracy over training seeds independent per-image flips explain:
 * √(mean over images of the per-image variance of correctness over the seeds / N), against the
 * observed std. If the two are close, larger evaluation sets shrink the spread; if the observed
 * std is much larger, whole models move (a fine-tune that ends better or worse on many images).
 *   node scripts/science/seed-flips.mjs runs/<name> [seeds, default 0,1,2]
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';

const run = process.argv[2];
const seeds = (process.argv[3] ?? '0,1,2').split(',').map(Number);
if (!run || !existsSync(path.join(run, 'evaluate'))) {
  console.error('usage: node scripts/science/seed-flips.mjs runs/<name> [0,1,2]   (a run folder with an evaluate/ stage folder)');
  process.exit(2);
}
const dirs = readdirSync(path.join(run, 'evaluate'));
const std = (xs) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
};
/** Correctness per seed-set image of one evaluate stage folder. */
function correct(dir) {
  const t = tableFromIPC(readFileSync(path.join(run, 'evaluate', dir, 'predictions.arrow')));
  const [id, set, y, p] = ['id', 'set', 'label', 'pred'].map((c) => t.getChild(c).toArray());
  const m = new Map();
  for (let i = 0; i < t.numRows; i++) if (set[i] === 'seed') m.set(id[i], y[i] === p[i] ? 1 : 0);
  return m;
}
for (const row of ['complete', 'random', ...new Set(dirs.map((d) => /^(dcd-.*)-s\d+-[0-9a-f]+$/.exec(d)?.[1]).filter(Boolean))]) {
  const found = seeds.map((s) => dirs.filter((d) => d.startsWith(`${row}-s${s}-`)));
  if (found.some((f) => f.length !== 1)) {
    console.log(`${row}: skipped (needs exactly one evaluate folder per seed ${seeds.join(', ')}; found ${found.map((f) => f.length).join(', ')})`);
    continue;
  }
  const c = found.map((f) => correct(f[0]));
  const ids = [...c[0].keys()];
  const n = ids.length;
  const acc = c.map((m) => (100 * ids.reduce((a, i) => a + m.get(i), 0)) / n);
  const v = ids.reduce((a, i) => a + std(c.map((m) => m.get(i) ?? 0)) ** 2, 0) / n;
  const flip = ids.filter((i) => new Set(c.map((m) => m.get(i))).size > 1).length;
  console.log(`${row.padEnd(20)} N ${n}  Seed std ${std(acc).toFixed(2)}  independent-flip part ${(100 * Math.sqrt(v / n)).toFixed(2)}  images that flip ${((100 * flip) / n).toFixed(1)}%`);
}
