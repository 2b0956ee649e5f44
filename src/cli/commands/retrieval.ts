import type { Argv, CommandModule } from 'yargs';
import { useBackend } from '../backend.js';
import { completeBaselineFiles, filterFiles, parseClassList, randomBaselineFiles, selectFiles } from '../../retrieval/files.js';
import { DEFAULT_MEMORY_BUDGET_MIB } from '../../retrieval/store.js';
import { CLEAN_DEFAULTS } from '../../retrieval/clean.js';
import { selectCleanFiles } from '../../retrieval/clean-files.js';
import { seeDocs } from '../usage.js';

const budgetOpt = {
  type: 'number',
  default: DEFAULT_MEMORY_BUDGET_MIB,
  describe: 'memory budget of the streamed embeddings, MiB',
} as const;
const normOpt = { type: 'boolean', default: false, describe: 'L2-normalise features before distances' } as const;

function printFiles(files: string[]): void {
  for (const f of files) process.stdout.write(`${f}\n`);
}

const filter: CommandModule<object, any> = {
  command: 'filter',
  describe: 'Test-leakage filter: drop pool images closer to any test image than τ_y of their weak class (docs/method.md §1)',
  builder: (y: Argv) =>
    y
      .option('pool', { type: 'string', array: true, demandOption: true, describe: 'pool embeddings (robust features; shards allowed)' })
      .option('test', { type: 'string', array: true, demandOption: true, describe: 'embeddings of every evaluation set (their union is T)' })
      .option('train', { type: 'string', array: true, demandOption: true, describe: 'train features of the τ_y source dataset' })
      .option('val', { type: 'string', array: true, demandOption: true, describe: 'test/val features of the τ_y source dataset' })
      .option('scope', { choices: ['all', 'class'] as const, default: 'all' as const, describe: 'nearest test image over all classes, or over the weak class only' })
      .option('normalize', normOpt)
      .option('memory-budget', budgetOpt)
      .option('out', { type: 'string', demandOption: true, describe: 'filtered pool (Arrow); also writes .removed.csv and .summary.csv' })
      .example('dcd filter --pool pool.arrow --test seed.arrow heldout.arrow inet-val.arrow --train train.arrow --val inet-val.arrow --out pool-filtered.arrow', '')
      .epilogue(seeDocs('docs/method.md')),
  handler: async (a) => {
    await useBackend(a.backend);
    const r = await filterFiles({ pool: a.pool, test: a.test, train: a.train, val: a.val, scope: a.scope, normalize: a.normalize, memoryBudgetMiB: a.memoryBudget, out: a.out });
    process.stderr.write(`dcd: kept ${r.result.kept}, removed ${r.result.removed.length} (${r.result.removed.filter((x) => x.reason === 'duplicate').length} exact duplicates)\n`);
    printFiles(r.files);
  },
};

const select: CommandModule<object, any> = {
  command: 'select',
  describe: 'Algorithm 1: greedy, global-minimum-first, non-overlapping selection of k pool images per seed image, per class',
  builder: (y: Argv) =>
    y
      .option('seed', { type: 'string', array: true, demandOption: true, describe: 'seed embeddings (id, label, embedding)' })
      .option('pool', { type: 'string', array: true, demandOption: true, describe: 'pool embeddings (shards allowed)' })
      .option('k-train', { type: 'number', demandOption: true, alias: 'k', describe: 'debug-train picks per seed (config select.k_train)' })
      .option('k-val', { type: 'number', default: 5, describe: 'de-val picks per seed, selected first (config select.k_val); 0 = no de-val run' })
      .option('deval-out', { type: 'string', describe: 'de-val output (default: <out>.deval.arrow)' })
      .option('exclude', { type: 'string', array: true, describe: 'Arrow files whose ids are never candidates (earlier selections)' })
      .option('only', { type: 'string', array: true, describe: 'Arrow files whose ids are the only candidates (e.g. the filtered pool)' })
      .option('any-label', { type: 'boolean', default: false, describe: '"complete pool": candidates of any weak label' })
      .option('classes', { type: 'string', describe: 'allowed classes: comma list or file of integers' })
      .option('normalize', normOpt)
      .option('memory-budget', budgetOpt)
      .option('clean', { choices: ['none', 'knn'] as const, default: 'none' as const, describe: 'knn: drop picks whose k nearest pool images mostly carry another weak label, refill (config select.clean; docs/slices-and-cleaning.md)' })
      .option('clean-k', { type: 'number', default: CLEAN_DEFAULTS.k, describe: 'pool neighbours per pick' })
      .option('clean-rule', { choices: ['agreement', 'confident'] as const, default: CLEAN_DEFAULTS.rule, describe: 'agreement: share ≥ --clean-min-agreement; confident: per-class thresholds' })
      .option('clean-min-agreement', { type: 'number', default: CLEAN_DEFAULTS.minAgreement, describe: 'share of neighbours that must share the pick\'s label' })
      .option('clean-max-rounds', { type: 'number', default: CLEAN_DEFAULTS.maxRounds, describe: 'selection rounds at most' })
      .option('truth', { type: 'string', array: true, describe: '--clean knn: pool manifests recording true_label, for the noise rate before/after' })
      .option('out', { type: 'string', demandOption: true, describe: 'selection (Arrow: id, label, seed_id, distance, rank); also .csv and .summary.csv (--clean knn: .dropped.csv, .clean.json)' })
      .example('dcd select --seed seed.arrow --pool pool-filtered.arrow --k-train 46 --k-val 5 --out debug-train.arrow', '')
      .check((a) => {
        if (a.truth && a.clean !== 'knn') throw new Error('--truth reports the noise rate before/after cleaning: it needs --clean knn');
        return true;
      })
      .epilogue(seeDocs('docs/method.md')),
  handler: async (a) => {
    await useBackend(a.backend);
    const args = {
      seed: a.seed,
      pool: a.pool,
      k: a.kTrain,
      kVal: a.kVal,
      devalOut: a.devalOut,
      exclude: a.exclude,
      only: a.only,
      anyLabel: a.anyLabel,
      normalize: a.normalize,
      classes: await parseClassList(a.classes),
      memoryBudgetMiB: a.memoryBudget,
      out: a.out,
    };
    const cleaned = a.clean === 'knn' ? await selectCleanFiles({ ...args, clean: { k: a.cleanK, rule: a.cleanRule, minAgreement: a.cleanMinAgreement, maxRounds: a.cleanMaxRounds }, truth: a.truth }) : null;
    const r = cleaned ?? (await selectFiles(args));
    process.stderr.write(`dcd: selected ${r.train.ids.length} debug-train${r.deval ? ` and ${r.deval.ids.length} de-val` : ''} image(s)\n`);
    if (cleaned) process.stderr.write(`dcd: --clean knn dropped ${cleaned.result.dropped.length} pick(s) over ${cleaned.report.rounds} selection round(s) and refilled them\n`);
    printFiles(r.files);
  },
};

const baseline: CommandModule<object, any> = {
  command: 'baseline <method>',
  describe: 'Baseline selections: random (same count per class as a selection) or complete (all of W\', re-weighted)',
  builder: (y: Argv) =>
    y
      .positional('method', { choices: ['random', 'complete'] as const, demandOption: true })
      .option('pool', { type: 'string', array: true, demandOption: true, describe: 'filtered pool W\' (id, label)' })
      .option('counts', { type: 'string', array: true, describe: 'random: selection whose per-class counts to match (e.g. debug-train.arrow)' })
      .option('seed', { type: 'number', default: 0, describe: 'random: PRNG seed' })
      .option('exclude', { type: 'string', array: true, describe: 'random: ids never drawn (e.g. the de-val set)' })
      .option('train', { type: 'string', array: true, describe: 'complete: train manifest/embeddings whose label column gives n_y' })
      .option('out', { type: 'string', demandOption: true })
      .example('dcd baseline random --pool pool-filtered.arrow --counts debug-train.arrow --seed 0 --out random.arrow', '')
      .example('dcd baseline complete --pool pool-filtered.arrow --train train-manifest.arrow --out complete.arrow', '')
      .check((a) => {
        if (a.method === 'random' && !a.counts) throw new Error('baseline random needs --counts SELECTION.arrow');
        if (a.method === 'complete' && !a.train) throw new Error('baseline complete needs --train TRAIN.arrow (for n_y)');
        return true;
      })
      .epilogue(seeDocs('docs/method.md')),
  handler: async (a) => {
    const files =
      a.method === 'random'
        ? await randomBaselineFiles({ pool: a.pool, counts: a.counts, seed: a.seed, exclude: a.exclude, out: a.out })
        : await completeBaselineFiles({ pool: a.pool, train: a.train, out: a.out });
    printFiles(files);
  },
};

/** yargs command modules of this area (see src/cli/main.ts). */
export const commands: CommandModule<object, any>[] = [filter, select, baseline];
