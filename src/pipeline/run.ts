/**
 * `dcd run` and `dcd sweep` as library functions: load the config, build the stage
 * graph, print the plan or run it, and return the result table.
 */
import { existsSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { ArtifactError, ConfigError } from '../core/errors.js';
import { atomicWriteFile } from '../core/fsutil.js';
import { backendSummary } from '../backends/chain.js';
import { kTrainWarnings, seedWarnings } from './sizing.js';
import { log } from '../core/log.js';
import { configToYaml, loadConfig, outDirOf, type Config } from '../core/config.js';
import { buildGraph } from './experiment.js';
import { checkConfig } from './config-check.js';
import type { RowRef } from './stages/report.js';
import { formatPlan, lockCommand, runStages, stageDir, type StageStatus } from './runner.js';
import { withRunLock } from './lock.js';
import { reportStage } from './stages/report.js';
import { bf16Support, resolvePrecision } from '../backends/precision.js';
import { formatTasks, runOnSlurm, type SlurmRunResult } from './executors/slurm.js';

/** Options shared by run and sweep. */
export interface RunOptions {
  /** `--set key=value` overrides. */
  set?: readonly string[];
  /** `--seeds 0,1,2`: replaces config.seeds. */
  seeds?: readonly number[];
  dryRun?: boolean;
  /** Working directory for relative CLI paths and the default runs/ folder. */
  cwd?: string;
  /** `--only embed`: run only these stage kinds (and what they need); no table at the end. */
  only?: readonly string[];
  /** `--shard I/N`: of those stages, only every N-th starting at I (job arrays). */
  shard?: { index: number; count: number };
  /** `--stage ID`: run exactly these stages, whose dependencies are complete (one cluster job). */
  stages?: readonly string[];
  /** `--part I/N` (with one --stage): row shard I of N of a shardable stage; `--merge N`: merge its N shards. */
  part?: { index: number; count: number };
  merge?: number;
  /** `--executor slurm`: the stages run as Slurm jobs; the driver waits, then prints the table. */
  slurm?: {
    partition?: string | undefined;
    sbatch?: readonly string[];
    /** `--shards N`: shardable stages (embed) as N row-shard tasks and a merge. */
    shards?: number;
    /** The CLI's backend choice, passed on to the jobs. */
    backend?: string | undefined;
    /** squeue poll interval (ms). */
    pollMs?: number;
  };
}

/** What a run returns. */
export interface RunOutcome {
  runDir: string;
  plan: StageStatus[];
  planText: string;
  /** The Markdown table (undefined for a dry run). */
  table?: string;
  /** Stages that ran (not cached). */
  ran: string[];
  /** `--executor slurm`: each task's outcome, and the sbatch commands (all a dry run does). */
  slurm?: SlurmRunResult;
  /** The HTML report, where the run wrote one. */
  html?: string;
}

/** Parses `I/N` (0 ≤ I < N). */
export function parseShardArg(s: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index < count)) throw new ConfigError(`--shard: expected I/N with 0 ≤ I < N (e.g. $SLURM_ARRAY_TASK_ID/16), received "${s}"`);
  return { index, count };
}

/** Stage kinds `--only` accepts. */
export const STAGE_KINDS = ['data', 'original', 'failures', 'backbone', 'embed', 'filter', 'select', 'baseline', 'train', 'evaluate', 'retention', 'gallery', 'report'] as const;

/** Parses `--only embed,filter`. */
export function parseOnly(s: string): string[] {
  const kinds = s.split(',').map((x) => x.trim()).filter(Boolean);
  const bad = kinds.filter((k) => !(STAGE_KINDS as readonly string[]).includes(k));
  if (!kinds.length || bad.length) throw new ConfigError(`--only: unknown stage ${bad.join(', ') || '(none)'}; expected some of ${STAGE_KINDS.join(', ')}`);
  return kinds;
}

/** Parses `0,1,2` into seeds. */
export function parseSeeds(s: string): number[] {
  const parts = s.split(',').map((x) => x.trim()).filter(Boolean);
  const out = parts.map(Number);
  if (!parts.length || out.some((x) => !Number.isInteger(x) || x < 0)) throw new ConfigError(`--seeds: expected comma-separated integers ≥ 0 (e.g. 0,1,2), received "${s}"`);
  return out;
}

function load(file: string, opts: RunOptions, extraSet: readonly string[] = []): Config {
  const set = [...(opts.set ?? []), ...extraSet];
  if (opts.seeds) set.push(`seeds=[${opts.seeds.join(',')}]`);
  const cfg = loadConfig(file, { set, ...(opts.cwd ? { cwd: opts.cwd } : {}) });
  // the one validation pass, before any stage (and any folder) exists
  checkConfig(cfg, path.resolve(opts.cwd ?? process.cwd(), file));
  return cfg;
}

/** The arguments after `node main.js` that rebuild `file`'s graph in a job (`--stage ID` follows). */
function jobCliArgs(file: string, opts: RunOptions): string[] {
  const cwd = opts.cwd ?? process.cwd();
  return [
    ...(opts.slurm?.backend ? ['--backend', opts.slurm.backend] : []),
    'run',
    path.resolve(cwd, file),
    ...(opts.set ?? []).flatMap((s) => ['--set', s]),
    ...(opts.seeds ? ['--seeds', opts.seeds.join(',')] : []),
  ];
}

/** The slurm executor: submit the plan's uncached stages, wait, and fail with each failed job's log. */
async function executeOnSlurm(file: string, runDir: string, cfg: Config, roots: Parameters<typeof runStages>[1], opts: RunOptions): Promise<SlurmRunResult> {
  const sel = { ...(opts.only ? { only: opts.only } : {}), ...(opts.shard ? { shard: opts.shard } : {}) };
  if (!opts.dryRun) await atomicWriteFile(path.join(runDir, 'config.resolved.yaml'), configToYaml(cfg));
  // the executor makes the plan itself, after it has read the queue (see runOnSlurm)
  const plan = async () => (await runStages(runDir, roots, { dryRun: true, ...sel })).plan;
  const r = await runOnSlurm(plan, {
    runDir,
    cwd: opts.cwd ?? process.cwd(),
    cliArgs: jobCliArgs(file, opts),
    resources: cfg.executor.slurm,
    partition: opts.slurm?.partition,
    sbatchArgs: opts.slurm?.sbatch ?? [],
    ...(opts.slurm?.shards ? { shards: opts.slurm.shards } : {}),
    ...(opts.dryRun ? { dryRun: true } : {}),
    ...(opts.slurm?.pollMs ? { pollMs: opts.slurm.pollMs } : {}),
  });
  if (opts.dryRun) return r;
  if (r.tasks.length) log.info(`slurm: ${r.tasks.length} task(s):\n${formatTasks(r.tasks)}`);
  if (r.failed.length) {
    const skipped = r.tasks.filter((t) => t.state !== 'COMPLETED' && !r.failed.includes(t)).length;
    throw new ArtifactError(
      `${r.failed.length} Slurm job(s) failed${skipped ? ` (${skipped} dependent job(s) not run)` : ''}:\n${r.failed.map((t) => `  ${t.task} ${t.stage}: ${t.state} (${t.reason}); log: ${t.log}`).join('\n')}\nfix the cause and rerun the same command: completed stages are kept, only the missing ones are submitted`,
    );
  }
  return r;
}

async function execute(runDir: string, cfg: Config, roots: Parameters<typeof runStages>[1], reportDir: () => string, opts: RunOptions, tableName: string, file?: string): Promise<RunOutcome> {
  // The run folder's lock (./lock.ts) from the resolved config's write to the table's; the job-array modes run under their driver's.
  if (opts.dryRun || opts.shard || opts.stages?.length) return executeUnlocked(runDir, cfg, roots, reportDir, opts, tableName, file);
  return withRunLock(runDir, lockCommand(), () => executeUnlocked(runDir, cfg, roots, reportDir, opts, tableName, file));
}

async function executeUnlocked(runDir: string, cfg: Config, roots: Parameters<typeof runStages>[1], reportDir: () => string, opts: RunOptions, tableName: string, file?: string): Promise<RunOutcome> {
  const planned = (plan: StageStatus[]) => ({ runDir, plan, planText: formatPlan(plan, runDir) });
  let slurm: SlurmRunResult | undefined;
  if (opts.slurm) {
    if (!file) throw new ConfigError('--executor slurm: not supported here (dcd run only)');
    if (opts.stages?.length) throw new ConfigError('--stage runs one stage in this process; drop --executor slurm');
    slurm = await executeOnSlurm(file, runDir, cfg, roots, opts);
    if (opts.dryRun) return { ...planned((await runStages(runDir, roots, { dryRun: true })).plan), ran: [], slurm };
  }
  const sel = { ...(opts.only ? { only: opts.only } : {}), ...(opts.shard ? { shard: opts.shard } : {}), ...(opts.stages?.length ? { ids: opts.stages } : {}), ...(opts.part ? { part: opts.part } : {}), ...(opts.merge ? { merge: opts.merge } : {}) };
  if ((opts.part || opts.merge) && opts.stages?.length !== 1) throw new ConfigError('--part and --merge need exactly one --stage');
  if (opts.dryRun) return { ...planned((await runStages(runDir, roots, { dryRun: true, ...sel })).plan), ran: [] };
  const partial = !!(opts.only?.length || opts.shard || opts.stages?.length);
  // A cluster job (--stage) leaves the resolved config to its driver: many jobs would race on it.
  if (!opts.stages?.length) await atomicWriteFile(path.join(runDir, 'config.resolved.yaml'), configToYaml(cfg));
  if (slurm) {
    const left = (await runStages(runDir, roots, { dryRun: true, ...sel })).plan.filter((s) => !s.cached);
    if (left.length) throw new ArtifactError(`after the Slurm jobs, ${left.length} stage(s) are still incomplete (${left.slice(0, 3).map((s) => `${s.spec.stage}/${s.spec.label}: ${s.reason}`).join('; ')}); rerun the same command`);
  } else {
    // once, when the config is valid and the run starts (not above a one-line config error)
    const backend = backendSummary();
    log.info(`run ${path.relative(opts.cwd ?? process.cwd(), runDir) || '.'}${backend ? `, ${backend}` : ''}`);
  }
  const r = await runStages(runDir, roots, {
    onStatus: (s, i, n) => {
      if (s.cached && !opts.slurm && !opts.stages?.length) log.info(`[${i + 1}/${n}] ${s.spec.stage}/${s.spec.label}: cached`);
    },
    ...sel,
  });
  const ran = slurm ? slurm.tasks.filter((t) => t.state === 'COMPLETED').map((t) => t.stage) : r.ran.map((s) => `${s.stage}/${s.label}`);
  if (partial) return { ...planned(r.plan), ran, ...(slurm ? { slurm } : {}) };
  const report = path.join(reportDir(), 'report.md');
  const table = readFileSync(report, 'utf8');
  // The report stage writes report.md once; the run folder links to it, next to the resolved config.
  linkFile(path.join(runDir, tableName), report);
  const html = path.join(reportDir(), 'html', 'report.html');
  return { ...planned(r.plan), table, ran, ...(slurm ? { slurm } : {}), ...(existsSync(html) ? { html } : {}) };
}

/** Points `link` at `target` (a relative symlink), replacing what was there in one rename. */
function linkFile(link: string, target: string): void {
  const tmp = `${link}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  symlinkSync(path.relative(path.dirname(link), target), tmp);
  renameSync(tmp, link);
}

/** `dcd run CONFIG`: every stage of the experiment, cached stages skipped. */
export async function runExperiment(file: string, opts: RunOptions = {}): Promise<RunOutcome> {
  const cfg = load(file, opts);
  if (!opts.dryRun) {
    // before any stage: the sizing warnings that need only the config (src/pipeline/sizing.ts);
    // then the precision line, which stays right above the run/backend line
    for (const w of [...seedWarnings(cfg.seeds, cfg.world_seed), ...kTrainWarnings(cfg.select)]) log.warn(w);
    announcePrecision(cfg, opts);
  }
  const runDir = outDirOf(cfg, opts.cwd);
  const g = buildGraph(plannedConfig(cfg, opts));
  return execute(runDir, cfg, g.roots, () => stageDir(runDir, g.report), opts, 'report.md', file);
}

/**
 * `cfg` with compute.precision and train.precision as they will compute, for the stage graph: the
 * stages put the precision into their keys, and a key must name what its results were computed in
 * (fp32 results where bf16 falls back share fp32's keys). In this process: bf16 only where
 * {@link bf16Support} allows it. The Slurm driver and its jobs (`--stage`) keep the precision asked
 * for: the nodes compute it, and the driver cannot see their CPUs; a job on a node without bf16 fails
 * its stage rather than file fp32 results under a bf16 key. config.resolved.yaml keeps what was asked.
 */
function plannedConfig(cfg: Config, opts: RunOptions): Config {
  if (opts.slurm || opts.stages?.length) return cfg;
  const compute = resolvePrecision(cfg.compute.precision).precision;
  const train = resolvePrecision(cfg.train.precision).precision;
  if (compute === cfg.compute.precision && train === cfg.train.precision) return cfg;
  return { ...cfg, compute: { ...cfg.compute, precision: compute }, train: { ...cfg.train, precision: train } };
}

/**
 * Prints the precision line at start-up (beside the backend's): what `compute.precision` and
 * `train.precision` will run as here, or why bf16 falls back to fp32 (see {@link plannedConfig}).
 */
function announcePrecision(cfg: Config, opts: RunOptions): void {
  const want = [cfg.compute.precision, cfg.train.precision];
  if (!want.includes('bf16')) return;
  if (opts.slurm) {
    log.info(`precision: embedding/retrieval ${cfg.compute.precision}, training ${cfg.train.precision}, as asked: the Slurm jobs compute it (a node without bf16 fails its bf16 stages)`);
    return;
  }
  const s = bf16Support();
  if (s.ok) log.info(`precision: embedding/retrieval ${cfg.compute.precision}, training ${cfg.train.precision} (bf16 on ${s.isa}: bf16 inputs, fp32 accumulation)`);
  else log.warn(`precision fp32 (bf16 asked for, unavailable: ${s.why})`);
}

/** Options of {@link runSweep}. */
export interface SweepOptions extends RunOptions {
  /** `--backbones a,b,c`: one variant per backbone (matched by label or name in config.backbones). */
  backbones?: readonly string[];
  /** `--grid key=v1,v2` (repeatable): one variant per value, crossed with the others. */
  grid?: readonly string[];
}

/** Parses `key=v1,v2` into the key and YAML-parsed values. */
export function parseGrid(expr: string): { key: string; values: string[] } {
  const eq = expr.indexOf('=');
  if (eq <= 0) throw new ConfigError(`--grid ${expr}: expected KEY=V1,V2,..., e.g. --grid select.k_train=10,20`);
  const values = expr.slice(eq + 1).split(',').map((v) => v.trim()).filter((v) => v !== '');
  if (!values.length) throw new ConfigError(`--grid ${expr}: no values after "="`);
  return { key: expr.slice(0, eq).trim(), values };
}

/**
 * `dcd sweep CONFIG --backbones a,b --grid key=v1,v2`: every variant's stages in one
 * run folder, stages the variants share run once, one combined table at the end.
 */
export async function runSweep(file: string, opts: SweepOptions): Promise<RunOutcome & { variants: string[] }> {
  const base = load(file, opts);
  if (!opts.dryRun) announcePrecision(base, opts);
  const axes: { name: string; sets: string[] }[][] = [];
  if (opts.backbones?.length) {
    axes.push(
      opts.backbones.map((b) => {
        const known = base.backbones.find((x) => (x.label ?? x.name) === b) ?? base.backbones.find((x) => x.name === b);
        const entry = known ?? { name: b };
        return { name: `backbone=${b}`, sets: [`backbones=${JSON.stringify([entry])}`] };
      }),
    );
  }
  for (const g of opts.grid ?? []) {
    const { key, values } = parseGrid(g);
    axes.push(values.map((v) => ({ name: `${key}=${v}`, sets: [`${key}=${v}`] })));
  }
  if (!axes.length) throw new ConfigError('dcd sweep: give --backbones a,b,... and/or --grid key=v1,v2,...');
  let variants: { name: string; sets: string[] }[] = [{ name: '', sets: [] }];
  for (const axis of axes) variants = variants.flatMap((v) => axis.map((a) => ({ name: v.name ? `${v.name},${a.name}` : a.name, sets: [...v.sets, ...a.sets] })));
  const runDir = outDirOf(base, opts.cwd);
  const rows: RowRef[] = [];
  for (const v of variants) {
    const cfg = load(file, opts, v.sets);
    if (outDirOf(cfg, opts.cwd) !== runDir) throw new ConfigError(`--grid: a variant changes experiment.name or experiment.out; sweep variants share one run folder`);
    rows.push(...buildGraph(plannedConfig(cfg, opts), v.name).rows);
  }
  const report = reportStage(base, rows, { label: 'sweep' });
  const out = await execute(runDir, base, [report], () => stageDir(runDir, report), opts, 'sweep-report.md');
  if (!opts.dryRun) await atomicWriteFile(path.join(runDir, 'sweep-variants.yaml'), YAML.stringify(variants.map((v) => ({ name: v.name, set: v.sets }))));
  return { ...out, variants: variants.map((v) => v.name) };
}
