/**
 * Design probe: trains the debugged model on a synthetic draw and prints its accuracy on
 * test, and on home vs rare pairs of mfreq. Usage:
 *   node dist/scripts/science/probe.js '<synthetic options JSON>' steps widths lr
 */
import { initBackend } from '../../src/backends/chain.js';
import { generateSynthetic } from '../../src/data/synthetic.js';
import { createSmallCnn } from '../../src/models/small-cnn.js';
import { fitClassifier, predictLabels } from '../../src/train/in-memory.js';

await initBackend('wasm');
const [opt = '{}', steps = '300', widths = '8-16-32', lr = '0.003'] = process.argv.slice(2);
const d = generateSynthetic(JSON.parse(opt), 0);
const m = createSmallCnn({ widths: widths.split('-').map(Number), numClasses: d.options.numClasses, seed: 0 });
const t0 = performance.now();
await fitClassifier(m, d.sets.train, { steps: Number(steps), lr: Number(lr), seed: 0, flip: true, onStep: (s, l) => console.log(`step ${s} loss ${l.toFixed(3)}`), every: 100 });
console.log(`train ${((performance.now() - t0) / 1000).toFixed(1)} s`);
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
