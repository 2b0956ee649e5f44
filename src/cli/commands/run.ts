import type { CommandModule } from 'yargs';
import { initBackend } from '../../backends/chain.js';
import { ConfigError } from '../../core/errors.js';
import { splitArgs } from '../../pipeline/executors/slurm.js';
import { parseOnly, parseSeeds, parseShardArg, runExperiment, runSweep } from '../../pipeline/run.js';
import { seeDocs } from '../usage.js';

interface RunArgs {
  config: string;
  set?: string[];
  seeds?: string;
  'dry-run'?: boolean;
  backend?: string;
  precision?: string;
  only?: string;
  shard?: string;
  stage?: string[];
  executor?: string;
  shards?: number;
  partition?: string;
  sbatch?: string;
  part?: string;
  merge?: number;
}

const common = {
  set: { type: 'string', array: true, describe: 'override a config key: --set train.lr=0.05 (value read as YAML; null restores the default)' },
  seeds: { type: 'string', describe: 'comma-separated seeds of the random parts (training, Random baseline, synthetic draw), e.g. 0,1,2' },
  'dry-run': { type: 'boolean', default: false, describe: 'validate the config and print the plan (what runs, what is cached, and why) without running' },
  precision: { type: 'string', choices: ['fp32', 'bf16'], describe: 'compute.precision: bf16 embedding and retrieval on the native backend (same as --set compute.precision=bf16)' },
} as const;

/** The run options of the flags run and sweep share. */
const commonOptions = (a: RunArgs) => ({
  set: [...(a.set ?? []), ...(a.precision ? [`compute.precision=${a.precision}`] : [])],
  ...(a.seeds !== undefined ? { seeds: parseSeeds(a.seeds) } : {}), // `--seeds=` is an error, not no flag
  dryRun: !!a['dry-run'],
});

/** Where `dcd run` writes, for its --help. */
export const RESULTS_EPILOG = [
  'Results go to experiment.out; by default runs/<experiment.name>/ under the current folder',
  '(runs/demo/ for the demo):',
  '  report.md: the result table (and the retention table), also printed at the end',
  '  report/<name>-<hash>/html/report.html: the HTML report (plots, retrievals, wrong picks)',
  '  config.resolved.yaml: the config as run',
  '  <stage>/<label>-<hash>/: one folder per stage; a rerun skips the cached ones',
].join('\n');

const run: CommandModule<object, RunArgs> = {
  command: 'run <config>',
  describe: 'Run an experiment from a YAML config: failures → embed → filter → select → train → evaluate → report (cached stages are skipped)',
  builder: (y) =>
    y
      .positional('config', { type: 'string', demandOption: true, describe: 'experiment YAML (e.g. configs/demo.yaml)' })
      .options(common)
      .option('only', { type: 'string', describe: 'run only these stage kinds and what they need, e.g. --only embed (no table)' })
      .option('shard', { type: 'string', describe: 'I/N: of the --only stages, run every N-th from I (one job of a job array)' })
      .option('stage', { type: 'string', array: true, describe: 'run exactly this stage (id stage/label-key, as --executor slurm --dry-run lists them); its dependencies must be complete' })
      .option('executor', { type: 'string', choices: ['local', 'slurm'], default: 'local', describe: 'local: stages run in this process; slurm: stages run as Slurm jobs on the shared run folder, this process submits and waits' })
      .option('part', { type: 'string', describe: 'I/N with one --stage: row shard I of N of that stage (embed, select, or the enabled leakage filter), into its parts/ folder' })
      .option('merge', { type: 'number', describe: 'N with one --stage: merge its N row shards into the stage (writes its manifest)' })
      .option('shards', { type: 'number', describe: 'with --executor slurm: run each embed and select stage and the enabled leakage filter as N row-shard tasks (one array) and a merge task' })
      .option('partition', { type: 'string', describe: 'with --executor slurm: the partition of every job' })
      .option('sbatch', { type: 'string', describe: 'with --executor slurm: extra sbatch arguments for every job, e.g. "--account=lab --qos=normal"' })
      .example('dcd run configs/demo.yaml', 'the embedded demo (≈ 4 min on 2 cores); prints the table')
      .example('dcd run configs/demo.yaml --dry-run', 'what would run, what is cached, and why')
      .example('dcd run configs/demo.yaml --set train.lr=0.02', 'override any config key')
      .example('dcd run configs/demo.yaml --executor slurm --shards 2', 'every stage as Slurm jobs (docs/cluster.md); waits, prints the same table')
      .epilog(RESULTS_EPILOG)
      .epilogue(`\n${seeDocs('docs/config.md (every config key)', 'README.md', 'docs/cluster.md')}`) as any,
  handler: async (a) => {
    const opts = {
      ...commonOptions(a),
      ...(a.only ? { only: parseOnly(a.only) } : {}),
      ...(a.shard ? { shard: parseShardArg(a.shard) } : {}),
      ...(a.stage?.length ? { stages: a.stage.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean) } : {}),
      ...(a.part ? { part: parseShardArg(a.part) } : {}),
      ...(a.merge !== undefined ? { merge: a.merge } : {}),
      ...(a.executor === 'slurm' ? { slurm: { partition: a.partition, sbatch: a.sbatch ? splitArgs(a.sbatch) : [], backend: a.backend, ...(a.shards !== undefined ? { shards: a.shards } : {}) } } : {}),
    };
    if (a.executor !== 'slurm' && (a.partition || a.sbatch || a.shards !== undefined)) throw new ConfigError('--partition, --sbatch and --shards need --executor slurm');
    if (a.shards !== undefined && !(Number.isInteger(a.shards) && a.shards >= 1)) throw new ConfigError(`--shards: expected an integer ≥ 1, received ${a.shards}`);
    if (a.merge !== undefined && !(Number.isInteger(a.merge) && a.merge >= 1)) throw new ConfigError(`--merge: expected an integer ≥ 1 (the number of shards), received ${a.merge}`);
    // The slurm driver only plans, submits and waits; the jobs load the backend. A dry run loads it
    // too: where bf16 falls back to fp32, the stage keys name fp32 (src/pipeline/run.ts plannedConfig).
    if (!opts.slurm) await initBackend(a.backend, { quiet: true }); // named when the run starts
    const r = await runExperiment(a.config, opts);
    if (opts.dryRun && r.slurm) process.stdout.write(`plan for ${r.runDir}:\n${r.planText}\nsbatch commands (${r.slurm.commands.length} job array(s); $NAME_I is task I of an earlier array's job id):\n${r.slurm.commands.join('\n')}\n`);
    else if (opts.dryRun) process.stdout.write(`plan for ${r.runDir}:\n${r.planText}\n`);
    else if (!r.table) process.stdout.write(`${r.planText}\nran ${r.ran.length} stage(s) into ${r.runDir}\n`);
    else process.stdout.write(`${r.table}\nresults: ${r.runDir}/report.md${r.html ? `, HTML report: ${r.html}` : ''} (stages ran: ${r.ran.length}, cached: ${r.plan.length - r.ran.length})\n`);
  },
};

interface SweepArgs extends RunArgs {
  backbones?: string;
  grid?: string[];
}

const sweep: CommandModule<object, SweepArgs> = {
  command: 'sweep <config>',
  describe: 'Run several variants of an experiment (backbones, or any config key) sharing common stages; ends in one combined table',
  builder: (y) =>
    y
      .positional('config', { type: 'string', demandOption: true, describe: 'experiment YAML' })
      .options(common)
      .option('backbones', { type: 'string', describe: 'comma-separated backbones, one variant each (names or labels in config.backbones, or registry names)' })
      .option('grid', { type: 'string', array: true, describe: 'KEY=V1,V2,...: one variant per value (repeatable; variants are crossed)' })
      .example('$0 sweep configs/demo.yaml --backbones broad_cnn,random_cnn --grid select.k_train=2,4', '')
      .epilogue(seeDocs('docs/config.md')) as any,
  handler: async (a) => {
    const opts = {
      ...commonOptions(a),
      ...(a.backbones ? { backbones: a.backbones.split(',').map((s) => s.trim()).filter(Boolean) } : {}),
      grid: a.grid ?? [],
    };
    await initBackend(a.backend, { quiet: true }); // named when the run starts (a dry run's keys depend on it too)
    const r = await runSweep(a.config, opts);
    if (opts.dryRun) process.stdout.write(`sweep over ${r.variants.length} variants (${r.variants.join('; ')}), plan for ${r.runDir}:\n${r.planText}\n`);
    else process.stdout.write(`${r.table}\nresults: ${r.runDir}/sweep-report.md (${r.variants.length} variants; stages ran: ${r.ran.length}, cached: ${r.plan.length - r.ran.length})\n`);
  },
};

/** yargs command modules of this area (see src/cli/main.ts). */
export const commands: CommandModule<object, any>[] = [run, sweep];
