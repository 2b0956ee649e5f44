/**
 * Design probe for the textured benchmark and the SSL backbone (train/test/MFreq only, never
 * heldout): trains the debugged model and reports its accuracy at home vs in rare contexts;
 * pretrains backbones and reports their class/context retention of k nearest neighbours on
 * the mfreq set. Usage:
 *   node dist/scripts/science/ssl-probe.js '<synthetic options JSON>' '<dino options JSON>' [backend]
 */
import { initBackend } from '../../src/backends/chain.js';
import { generateSynthetic } from '../../src/data/synthetic.js';
import { createSmallCnn } from '../../src/models/small-cnn.js';
import { embedImages, fitClassifier, predictLabels } from '../../src/train/in-memory.js';
import { trainDemoBackbone } from '../../src/train/demo-backbones.js';
import { dinoOptions, pretrainDino } from '../../src/ssl/train.js';
import type { ImageModel } from '../../src/core/types.js';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [opt = '{}', dopt = '{}', backend = 'native', only = ''] = process.argv.slice(2);
await initBackend(backend);
const syn = JSON.parse(opt);
const d = generateSynthetic(syn, 0);
const t0 = performance.now();
if (!only || only.includes('orig')) {
  const m = createSmallCnn({ widths: [8, 16, 32], numClasses: d.options.numClasses, seed: 0 });
  await fitClassifier(m, d.sets.train, { steps: 300, lr: 3e-3, seed: 0, flip: true });
  console.log(`original trained ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  for (const k of ['train', 'test', 'mfreq'] as const) {
    const s = d.sets[k];
    const p = predictLabels(m, s.images, s.size, s.n);
    let home = 0, nh = 0, rare = 0, nr = 0;
    for (let i = 0; i < s.n; i++) {
      const ok = p[i] === s.labels[i] ? 1 : 0;
      if (s.contexts[i] === d.home[s.labels[i]!]) (home += ok), nh++;
      else (rare += ok), nr++;
    }
    console.log(`${k}: home ${(100 * home / nh).toFixed(1)} (${nh}) rare ${(100 * rare / nr).toFixed(1)} (${nr}) all ${(100 * (home + rare) / s.n).toFixed(1)}`);
  }
  m.dispose();
}
function retention(name: string, m: ImageModel) {
  const s = d.sets.mfreq;
  const f = embedImages(m, s.images, s.size, s.n);
  const D = m.numFeatures;
  const ks = [1, 5, 10];
  const cls = ks.map(() => 0), ctx = ks.map(() => 0);
  for (let i = 0; i < s.n; i++) {
    const dist: [number, number][] = [];
    for (let j = 0; j < s.n; j++) {
      if (j === i) continue;
      let t = 0;
      for (let c = 0; c < D; c++) { const u = f[i * D + c]! - f[j * D + c]!; t += u * u; }
      dist.push([t, j]);
    }
    dist.sort((a, b) => a[0] - b[0]);
    ks.forEach((k, ki) => { for (let r = 0; r < k; r++) { const j = dist[r]![1]; if (s.labels[j] === s.labels[i]) cls[ki]!++; if (s.contexts[j] === s.contexts[i]) ctx[ki]!++; } });
  }
  console.log(`${name}: ` + ks.map((k, ki) => `k=${k} class ${(100 * cls[ki]! / (k * s.n)).toFixed(1)} context ${(100 * ctx[ki]! / (k * s.n)).toFixed(1)}`).join(' | '));
}
const widths = [16, 32, 64];
if (!only || only.includes('random')) { const r = createSmallCnn({ widths, numClasses: 0, seed: 1000 }); retention('random_cnn', r); r.dispose(); }
if (!only || only.includes('broad')) {
  const t1 = performance.now();
  const b = await trainDemoBackbone({ kind: 'broad_cnn', widths, broadSize: 3000, steps: 300, lr: 3e-3, seed: 1000 }, syn);
  console.log(`broad_cnn ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  retention('broad_cnn', b); b.dispose();
}
if (!only || only.includes('ssl')) {
  const o = dinoOptions({ widths, ...JSON.parse(dopt) });
  const pool = d.sets.pool;
  const t2 = performance.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ssl-probe-'));
  const r = await pretrainDino({ images: pool.images, size: pool.size, n: pool.n }, o, dir, (rec) => { if (rec.step % 25 === 0) console.log(JSON.stringify(rec)); });
  console.log(`ssl ${r.total} steps ${((performance.now() - t2) / 1000).toFixed(1)} s (${dir})`);
  retention('ssl', r.backbone); r.backbone.dispose();
}
