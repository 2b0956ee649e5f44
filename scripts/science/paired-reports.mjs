#!/usr/bin/env node
/**
 * Paired comparison of two settings over several worlds (docs/slices-and-cleaning.md): each
 * argument pair is the report.json of run A and of run B in one world (e.g. without and with
 * `select.clean`). For every method both runs have, and for the columns Seed, Heldout and INet (all),
 * prints A's and B's values per (world, seed) and the mean ± sample std of B − A over all pairs, with
 * t = mean / (std / √n) and how many pairs favour B. Reads the reports' per-seed `results` only.
 *   node scripts/science/paired-reports.mjs A-w0/report.json B-w0/report.json [A-w1.json B-w1.json ...]
 */
import { readFileSync } from 'node:fs';

const files = process.argv.slice(2);
if (files.length < 2 || files.length % 2 !== 0) {
  console.error('usage: node scripts/science/paired-reports.mjs A.json B.json [A.json B.json ...]   (report.json files, A then B per world)');
  process.exit(2);
}
const COLUMNS = [['seed', 'Seed'], ['heldout', 'Heldout'], ['test_all', 'INet (all)']];

/** (method, seed) → metrics of one report.json. */
function results(file) {
  const r = JSON.parse(readFileSync(file, 'utf8'));
  if (!Array.isArray(r.results)) throw new Error(`${file}: no "results" array (is it a dcd report.json?)`);
  const m = new Map();
  for (const x of r.results) m.set(`${x.method}\u0000${x.seed}`, x.metrics);
  return m;
}

const worlds = [];
for (let i = 0; i < files.length; i += 2) worlds.push({ a: results(files[i]), b: results(files[i + 1]), name: `pair ${i / 2 + 1}` });
const methods = [...new Set([...worlds[0].a.keys()].map((k) => k.split('\u0000')[0]))];
const fmt = (v) => (v >= 0 ? '+' : '') + v.toFixed(2);

console.log('| method | column | A, per (world, seed) | B, per (world, seed) | B − A, mean ± std | t | pairs B > A |');
console.log('|---|---|---|---|---:|---:|---:|');
for (const method of methods) {
  for (const [col, label] of COLUMNS) {
    const as = [], bs = [];
    for (const w of worlds)
      for (const [key, ma] of w.a) {
        if (!key.startsWith(`${method}\u0000`)) continue;
        const mb = w.b.get(key);
        if (!mb || ma[col] === undefined || mb[col] === undefined) continue;
        as.push(ma[col]);
        bs.push(mb[col]);
      }
    if (as.length === 0) continue;
    const d = bs.map((b, i) => b - as[i]);
    const n = d.length;
    const mean = d.reduce((s, x) => s + x, 0) / n;
    const std = n > 1 ? Math.sqrt(d.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1)) : NaN;
    const t = std > 0 ? mean / (std / Math.sqrt(n)) : mean === 0 ? 0 : Infinity;
    const wins = d.filter((x) => x > 0).length;
    console.log(
      `| ${method} | ${label} | ${as.map((x) => x.toFixed(2)).join(' / ')} | ${bs.map((x) => x.toFixed(2)).join(' / ')} | ${fmt(mean)} ± ${std.toFixed(2)} | ${Number.isFinite(t) ? t.toFixed(1) : '–'} | ${wins}/${n} |`,
    );
  }
}
console.log(`\n${worlds.length} world(s); B − A per (world, seed) on the same seed; t with n − 1 degrees of freedom (2.31 is the two-sided 5% level for n = 9, 4.30 for n = 3).`);
