#!/usr/bin/env node
/**
 * Blind design aid for `select.clean` (docs/slices-and-cleaning.md): on a finished run's world-0
 * artifacts, the debug-train and de-val picks' noise rate (true class ≠ label, from the pool's
 * true_label) and share in their seed image's context, without and with the k-NN label check, per
 * backbone. Reads the embed, failures, data and select stage folders only: no training, no
 * heldout. Checks first that the plain selection it recomputes equals the select stage's picks.
 *   npm run build && node scripts/science/clean-noise.mjs runs/<name> [k=10]
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { initBackend } from '../../dist/src/backends/chain.js';
import { readArrowFile, stringColumn } from '../../dist/src/core/arrow.js';
import { readManifest } from '../../dist/src/data/manifest.js';
import { selectionQuality } from '../../dist/src/eval/selection-quality.js';
import { cleanSelect } from '../../dist/src/retrieval/clean.js';
import { EmbeddingStore } from '../../dist/src/retrieval/store.js';

const run = process.argv[2];
const k = Number(process.argv[3] ?? 10);
if (!run || !existsSync(path.join(run, 'embed')) || !existsSync(path.join(run, 'select'))) {
  console.error('usage: node scripts/science/clean-noise.mjs runs/<name> [k]   (a run folder with embed/ and select/ stage folders)');
  process.exit(2);
}
const one = (stage, re) => {
  const d = readdirSync(path.join(run, stage)).filter((x) => re.test(x));
  if (d.length !== 1) throw new Error(`${run}/${stage}: expected one folder matching ${re}, found ${d.join(', ') || 'none'}`);
  return path.join(run, stage, d[0]);
};
await initBackend(undefined, { quiet: true });
const seedRows = (await readManifest(path.join(one('failures', /-s0-/), 'seed.arrow'))).rows;
const poolRows = (await readManifest(path.join(one('data', /^[a-z-]+?(-s0)?-[0-9a-f]{10}$/), 'pool.arrow'))).rows;
const poolById = new Map(poolRows.map((r) => [r.id, r]));
const seedById = new Map(seedRows.map((r) => [r.id, r]));
const backbones = readdirSync(path.join(run, 'select')).map((d) => /^(.*)-s0-[0-9a-f]+$/.exec(d)?.[1]).filter(Boolean);
const variants = [
  { name: `agreement ≥ 0.3, k=${k}`, clean: { k, rule: 'agreement', minAgreement: 0.3 } },
  { name: `agreement ≥ 0.5, k=${k}`, clean: { k, rule: 'agreement', minAgreement: 0.5 } },
  { name: `confident, k=${k}`, clean: { k, rule: 'confident' } },
];
const pct = (x) => (x === null ? '—' : x.toFixed(2));
const q = (sel) => selectionQuality('', sel.ids.map((id, i) => ({ id, label: sel.labels[i], seedId: sel.seedIds[i] })), poolById, seedById);
console.log('| backbone | cleaning | debug-train picks | noise (%) | same context (%) | de-val noise (%) | dropped | rounds | still flagged |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|');
for (const b of backbones) {
  const m = await (await EmbeddingStore.open([path.join(one('embed', new RegExp(`^${b}-mfreq(-s0)?-[0-9a-f]{10}$`)), 'mfreq.arrow')], { role: 'mfreq', requireLabel: true })).readAll();
  const want = new Set(seedRows.map((r) => r.id));
  const rows = m.ids.map((id, i) => (want.has(id) ? i : -1)).filter((i) => i >= 0);
  const seeds = {
    ids: rows.map((i) => m.ids[i]),
    labels: Int32Array.from(rows, (i) => m.labels[i]),
    data: Float32Array.from(rows.flatMap((i) => Array.from(m.data.subarray(i * m.dim, (i + 1) * m.dim)))),
    dim: m.dim,
  };
  const pool = await EmbeddingStore.open([path.join(one('embed', new RegExp(`^${b}-pool(-s0)?-[0-9a-f]{10}$`)), 'pool.arrow')], { role: 'pool', requireLabel: true });
  const all = await pool.readAll();
  const cfg = (await import(path.resolve(one('select', new RegExp(`^${b}-s0-`)), 'manifest.json'), { with: { type: 'json' } })).default.config;
  const opts = { k: cfg.k_train, kVal: cfg.k_val, anyLabel: cfg.candidates === 'any_label' };
  if (cfg.normalize) throw new Error('select.normalize: true runs are not handled here');
  let checked = false;
  for (const v of variants) {
    const r = await cleanSelect(seeds, pool, { ids: all.ids, labels: all.labels, data: all.data, dim: all.dim }, opts, v.clean);
    if (!checked) {
      const f = path.join(one('select', new RegExp(`^${b}-s0-`)), 'debug_train-picks.arrow');
      const stage = stringColumn(await readArrowFile(f), 'id', f);
      if (stage.join() !== r.before.train.ids.join()) throw new Error(`${b}: the recomputed plain selection differs from ${f}`);
      const p = q(r.before.train);
      console.log(`| ${b} | none (Algorithm 1) | ${r.before.train.ids.length} | ${pct(p.noise)} | ${pct(p.sameContext)} | ${pct(q(r.before.deval).noise)} | 0 | 1 | 0 |`);
      checked = true;
    }
    const p = q(r.train);
    console.log(`| ${b} | ${v.name} | ${r.train.ids.length} | ${pct(p.noise)} | ${pct(p.sameContext)} | ${pct(q(r.deval).noise)} | ${r.dropped.length} | ${r.rounds} | ${r.stillFlagged} |`);
  }
}
