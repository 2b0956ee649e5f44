/**
 * Runs the whole demo experiment through library calls and prints the table, the
 * success criterion and the runtime. Usage:
 *   node dist/scripts/science/demo.js [--seeds 0,1,2] [--fashion] [--quick]
 */
import { initBackend } from '../../src/backends/chain.js';
import { checkCriterion, formatTable, runDemoExperiment, type DemoExperimentConfig } from '../../src/backbones-demo/experiment.js';
import { DEMO_CONFIG, FASHION_CONFIG } from '../../src/backbones-demo/presets.js';
import { fashionObjects } from '../../src/data/fashion-shift.js';

const argv = process.argv.slice(2);
const flag = (k: string) => argv.includes(k);
const val = (k: string) => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1] : undefined;
};
await initBackend(val('--backend'));
const t0 = performance.now();
const base = flag('--fashion') ? FASHION_CONFIG : DEMO_CONFIG;
const cfg: DemoExperimentConfig = JSON.parse(JSON.stringify(base));
if (flag('--fashion')) cfg.objects = await fashionObjects();
if (val('--seeds')) cfg.seeds = val('--seeds')!.split(',').map(Number);
if (val('--set')) Object.assign(cfg, JSON.parse(val('--set')!));
const res = await runDemoExperiment(cfg);
console.log(formatTable(res));
console.log('failures:', JSON.stringify(res.failures));
for (const c of checkCriterion(res)) console.log(`${c.ok ? 'PASS' : 'FAIL'} ${c.why}`);
console.log('timings (s):', Object.entries(res.timings).map(([k, v]) => `${k}=${v.toFixed(1)}`).join(' '));
console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
