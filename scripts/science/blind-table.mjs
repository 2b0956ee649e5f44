#!/usr/bin/env node
/**
 * Design aid for the textured demo: the result table of a run *without* its heldout and
 * complement columns, so settings are chosen on Seed / MFreq / INet only (issue 16's rule:
 * never tune on debug-heldout). Run the pipeline blind first, then read it:
 *   dcd run configs/demo.yaml --set experiment.name=probe-x --set 'eval.sets=[seed,mfreq,test]'
 *   node scripts/science/blind-table.mjs runs/probe-x
 * (the report stage stops on the missing heldout column; every evaluate stage has finished by then).
 * Prints mean ± std over seeds per method and the number of images each method added.
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';

const run = process.argv[2];
if (!run || !existsSync(path.join(run, 'evaluate'))) {
  console.error('usage: node scripts/science/blind-table.mjs runs/<name>   (a run folder with an evaluate/ stage folder)');
  process.exit(2);
}
const COLS = ['seed', 'mfreq_sub', 'test_sub', 'mfreq_all', 'test_all'];
const rows = new Map();
const added = new Map();
for (const dir of readdirSync(path.join(run, 'evaluate'))) {
  const m = /^(.*)-s(\d+)-[0-9a-f]+$/.exec(dir);
  const f = path.join(run, 'evaluate', dir, 'metrics.json');
  if (!m || !existsSync(f)) continue;
  const method = m[1].replace(/^original-train$/, 'original');
  const metrics = { ...JSON.parse(readFileSync(f, 'utf8')), s: Number(m[2]) };
  if (!rows.has(method)) rows.set(method, []);
  rows.get(method).push(metrics);
}
if (existsSync(path.join(run, 'train'))) {
  for (const dir of readdirSync(path.join(run, 'train'))) {
    const m = /^(.*)-s(\d+)-[0-9a-f]+$/.exec(dir);
    const f = path.join(run, 'train', dir, 'manifest.json');
    if (!m || !existsSync(f)) continue;
    const c = JSON.parse(readFileSync(f, 'utf8')).counts ?? {};
    if (!added.has(m[1])) added.set(m[1], []);
    added.get(m[1]).push(c.added ?? 0);
  }
}
const fmt = (xs) => {
  const v = xs.filter((x) => typeof x === 'number');
  if (!v.length) return '—';
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const sd = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1)) : 0;
  return `${mean.toFixed(1)} ± ${sd.toFixed(1)}`;
};
// INet (all) against the original model of the same seed (paired: the draws differ by seed)
const orig = new Map((rows.get('original') ?? []).map((x) => [x.s, x.test_all]));
console.log(`| method | n | added | ${COLS.join(' | ')} | test_all − original |`);
for (const [method, ms] of [...rows].sort()) {
  const a = added.get(method);
  const d = ms.filter((x) => orig.has(x.s)).map((x) => x.test_all - orig.get(x.s));
  console.log(`| ${method} | ${ms.length} | ${a ? fmt(a) : '0'} | ${COLS.map((c) => fmt(ms.map((x) => x[c]))).join(' | ')} | ${fmt(d)} |`);
}
