/**
 * The Slurm executor of `dcd run --executor slurm`: the stages a local run would run
 * become Slurm jobs on the shared run folder, chained with `--dependency=afterok`.
 *
 * Each job is a job array whose task `i` runs one stage through the CLI itself
 * (`dcd run CFG ... --stage <id>`), so the stage code stays in one place and a job is
 * exactly what a local run would do for that stage. Stages of one kind at one depth of
 * the remaining graph share an array (all embeddings of a wave, all trainings of every
 * seed and method, ...). The driver records every submission in
 * `<run>/slurm/state.json` before it waits; a rerun reads it, adopts tasks that are
 * still pending or running, takes completed stages from their manifests, and submits
 * only what is missing (a failed task's stage alone). Without slurmdbd `sacct` has no
 * data, so the driver polls `squeue --states=all` (finished jobs stay listed for
 * MinJobAge) and, for jobs slurmctld has forgotten, the stage's manifest and the exit
 * code the job script writes next to its log.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArtifactError, ConfigError } from '../../core/errors.js';
import { atomicWriteFile, atomicWriteJson, ensureDir } from '../../core/fsutil.js';
import { log } from '../../core/log.js';
import { stageDir, stageId, type StageSpec, type StageStatus } from '../runner.js';

/** Resources of one stage kind's jobs (`executor.slurm.<stage>` in the config). */
export interface SlurmResources {
  gres?: string | undefined;
  cpus?: number | undefined;
  mem?: string | number | undefined;
  time?: string | undefined;
  partition?: string | undefined;
}

/** Options of {@link runOnSlurm}. */
export interface SlurmRunOptions {
  /** The run folder every job shares. */
  runDir: string;
  /** Working directory of the jobs (relative config paths resolve against it). */
  cwd: string;
  /** CLI arguments after `node main.js` that rebuild the same graph (`run CFG --set ...`); `--stage ID` is appended. */
  cliArgs: readonly string[];
  /** Per-stage-kind resources; `default` applies to every kind, the kind's own entry on top. */
  resources?: Readonly<Record<string, SlurmResources | undefined>>;
  partition?: string | undefined;
  /** Extra sbatch arguments for every job (`--sbatch "--account=x --qos=y"`). */
  sbatchArgs?: readonly string[];
  /** Print the sbatch commands instead of submitting. */
  dryRun?: boolean;
  /** Poll interval of squeue (ms; default 2000, env DCD_SLURM_POLL_MS). */
  pollMs?: number;
  /** Writes a line for the user (default: stderr through the logger). */
  print?: (line: string) => void;
}

/** One submitted job array as `state.json` records it. */
export interface JobRecord {
  name: string;
  job_id: string;
  /** Task i runs stages[i]. */
  stages: string[];
  kind: string;
  script: string;
  submitted: string;
  sbatch: string[];
}

/** `<run>/slurm/state.json`. */
export interface SlurmState {
  version: 1;
  /** Next job sequence number (job names stay unique across driver runs). */
  seq: number;
  jobs: JobRecord[];
}

/** What happened to one stage's task. */
export interface TaskOutcome {
  stage: string;
  task: string;
  state: string;
  reason: string;
  log: string;
  /** Submitted by this driver run (false: adopted from an earlier one, still queued or running). */
  submitted: boolean;
}

/** What {@link runOnSlurm} returns. */
export interface SlurmRunResult {
  /** The sbatch command lines (also for a dry run). */
  commands: string[];
  tasks: TaskOutcome[];
  failed: TaskOutcome[];
  /** Jobs submitted by this call. */
  submittedJobs: JobRecord[];
}

const ACTIVE = new Set(['PENDING', 'RUNNING', 'CONFIGURING', 'COMPLETING', 'SUSPENDED', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESIZING', 'SIGNALING', 'STAGE_OUT', 'STOPPED', 'RESV_DEL_HOLD', 'SPECIAL_EXIT']);

/** Quotes a word for bash when it needs it. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_/.,:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Splits `--sbatch "--gres=gpu:1 --comment='a b'"` into words (single/double quotes, backslash escapes). */
export function splitArgs(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  let q: string | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (q) {
      if (c === q) q = undefined;
      else if (c === '\\' && q === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === "'" || c === '"') (q = c), (has = true);
    else if (c === '\\' && i + 1 < s.length) (cur += s[++i]), (has = true);
    else if (/\s/.test(c)) {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else (cur += c), (has = true);
  }
  if (q) throw new ConfigError(`--sbatch: unbalanced ${q} in "${s}"`);
  if (has || cur) out.push(cur);
  return out;
}

/** Runs a Slurm client command; throws with its stderr when it fails. */
function slurmCmd(cmd: string, args: readonly string[], opts: { input?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, timeout: 60_000 });
  if (r.error) {
    const e = r.error as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new ConfigError(`--executor slurm: ${cmd} not found on PATH; run on a Slurm login node (or install slurm-wlm: scripts/setup.sh, and start a cluster: scripts/slurm/start.sh)`);
    throw new ArtifactError(`${cmd}: ${e.message}`);
  }
  if (r.status !== 0) throw new ArtifactError(`${cmd} ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/** Task states Slurm knows, by `<array job id>_<task id>`. */
function queueStates(): Map<string, { state: string; reason: string }> {
  const out = new Map<string, { state: string; reason: string }>();
  const user = process.env.USER ?? spawnSync('id', ['-un'], { encoding: 'utf8' }).stdout.trim();
  const text = slurmCmd('squeue', ['--noheader', '--array', '--states=all', `--user=${user}`, '--format=%F|%K|%T|%r']);
  for (const line of text.split('\n')) {
    const [arr, task, state, reason] = line.trim().split('|');
    if (!arr || !task || !state) continue;
    out.set(`${arr}_${task}`, { state, reason: reason ?? '' });
  }
  return out;
}

function readState(file: string): SlurmState {
  if (!existsSync(file)) return { version: 1, seq: 0, jobs: [] };
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as SlurmState;
    if (s.version !== 1 || !Array.isArray(s.jobs)) throw new Error('unknown layout');
    return s;
  } catch (e) {
    throw new ArtifactError(`${file}: unreadable (${(e as Error).message}); if no job of this run is queued any more, delete it and rerun`);
  }
}

/** A job name without characters Slurm or file names mind. */
function jobName(runDir: string, kind: string, seq: number): string {
  return `dcd-${path.basename(runDir).replace(/[^A-Za-z0-9._-]+/g, '_')}-${kind}-${seq}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The script of one job array: task i runs stage i through the CLI, then records its exit code. */
function jobScript(o: { name: string; stages: readonly string[]; cwd: string; cli: readonly string[]; rcDir: string }): string {
  return [
    '#!/usr/bin/env bash',
    `# ${o.name}: written by dcd run --executor slurm; task i runs STAGES[i].`,
    `STAGES=(${o.stages.map(shellQuote).join(' ')})`,
    'stage="${STAGES[${SLURM_ARRAY_TASK_ID:-0}]}"',
    `cd ${shellQuote(o.cwd)} || exit 1`,
    'echo "dcd job $SLURM_JOB_ID (array ${SLURM_ARRAY_JOB_ID:-} task ${SLURM_ARRAY_TASK_ID:-}) on $(hostname): $stage" >&2',
    `${o.cli.map(shellQuote).join(' ')} --stage "$stage"`,
    'rc=$?',
    `echo "$rc" > ${shellQuote(o.rcDir)}/${o.name}_\${SLURM_ARRAY_TASK_ID:-0}.rc`,
    'exit $rc',
    '',
  ].join('\n');
}

/**
 * Submits the stages of `plan` that are not cached as Slurm job arrays (dependencies
 * by afterok), adopting the still-active tasks of an earlier driver run, and waits for
 * all of them. Returns every task's outcome; the caller turns failures into an error.
 */
export async function runOnSlurm(plan: readonly StageStatus[], o: SlurmRunOptions): Promise<SlurmRunResult> {
  const print = o.print ?? ((l: string) => log.info(l));
  const slurmDir = path.join(o.runDir, 'slurm');
  const stateFile = path.join(slurmDir, 'state.json');
  const logDir = path.join(slurmDir, 'logs');
  const jobDir = path.join(slurmDir, 'jobs');
  const state = readState(stateFile);
  const todo = plan.filter((s) => !s.cached);
  const specOf = new Map(todo.map((s) => [stageId(s.spec), s.spec]));

  // Tasks of earlier driver runs that Slurm still runs or queues: adopt them.
  const inflight = new Map<string, { task: string; log: string }>();
  if (state.jobs.length && !o.dryRun) {
    const q = queueStates();
    for (const j of state.jobs)
      j.stages.forEach((st, i) => {
        const t = `${j.job_id}_${i}`;
        const s = q.get(t);
        if (s && ACTIVE.has(s.state) && specOf.has(st)) inflight.set(st, { task: t, log: path.join(logDir, `${j.name}_${i}.log`) });
      });
  }

  // Depth of each remaining stage in the remaining graph; one array per (depth, kind).
  const depth = new Map<string, number>();
  const depthOf = (s: StageSpec): number => {
    const id = stageId(s);
    const hit = depth.get(id);
    if (hit !== undefined) return hit;
    let d = 0;
    for (const dep of Object.values(s.deps)) if (specOf.has(stageId(dep))) d = Math.max(d, depthOf(dep) + 1);
    depth.set(id, d);
    return d;
  };
  const groups = new Map<string, { depth: number; kind: string; stages: StageSpec[] }>();
  for (const s of todo) {
    const id = stageId(s.spec);
    if (inflight.has(id)) continue;
    const d = depthOf(s.spec);
    const k = `${String(d).padStart(4, '0')}:${s.spec.stage}`;
    if (!groups.has(k)) groups.set(k, { depth: d, kind: s.spec.stage, stages: [] });
    groups.get(k)!.stages.push(s.spec);
  }
  const ordered = [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g);

  const taskOf = new Map<string, string>(); // stage id → task ref (array_task), for dependencies
  const logOf = new Map<string, string>();
  const submittedBy = new Set<string>();
  for (const [st, t] of inflight) (taskOf.set(st, t.task), logOf.set(st, t.log));
  const commands: string[] = [];
  const submittedJobs: JobRecord[] = [];
  if (!o.dryRun) await Promise.all([ensureDir(logDir), ensureDir(jobDir)]);
  const cli = [process.execPath, fileURLToPath(new URL('../../cli/main.js', import.meta.url)), ...o.cliArgs];
  const user = o.sbatchArgs ?? [];
  for (const g of ordered) {
    const seq = state.seq++;
    const name = jobName(o.runDir, g.kind, seq);
    const ids = g.stages.map(stageId);
    const deps = new Set<string>();
    for (const s of g.stages)
      for (const d of Object.values(s.deps)) {
        const t = taskOf.get(stageId(d));
        if (t) deps.add(t);
        else if (specOf.has(stageId(d))) throw new ArtifactError(`internal: ${stageId(d)} has no job before ${stageId(s)}`);
      }
    const r = { ...(o.resources?.default ?? {}), ...(o.resources?.[g.kind] ?? {}) };
    const script = path.join(jobDir, `${name}.sh`);
    const args = [
      '--parsable',
      `--job-name=${name}`,
      `--array=0-${ids.length - 1}`,
      `--output=${path.join(logDir, '%x_%a.log')}`,
      `--chdir=${o.cwd}`,
      '--kill-on-invalid-dep=yes',
      ...(deps.size ? [`--dependency=afterok:${[...deps].join(':')}`] : []),
      ...(o.partition ?? r.partition ? [`--partition=${o.partition ?? r.partition}`] : []),
      ...(r.cpus ? [`--cpus-per-task=${r.cpus}`] : []),
      ...(r.mem !== undefined ? [`--mem=${r.mem}`] : []),
      ...(r.time ? [`--time=${r.time}`] : []),
      ...(r.gres ? [`--gres=${r.gres}`] : []),
      ...user,
    ];
    const cmdLine = `sbatch ${[...args, script].map(shellQuote).join(' ')}`;
    if (o.dryRun) {
      commands.push(`# ${name}: ${ids.map((id, i) => `[${i}] ${id}`).join(', ')}\n${cmdLine}`);
      ids.forEach((id, i) => taskOf.set(id, `$${name.replace(/[^A-Za-z0-9_]/g, '_')}_${i}`));
      continue;
    }
    await atomicWriteFile(script, jobScript({ name, stages: ids, cwd: o.cwd, cli, rcDir: logDir }));
    const out = slurmCmd('sbatch', [...args, script]).trim();
    const jobId = out.split(';')[0]!.trim();
    if (!/^\d+$/.test(jobId)) throw new ArtifactError(`sbatch printed "${out}", expected a job id`);
    const rec: JobRecord = { name, job_id: jobId, stages: ids, kind: g.kind, script, submitted: new Date().toISOString(), sbatch: args };
    state.jobs.push(rec);
    submittedJobs.push(rec);
    // Recorded at once: a driver killed from here on finds the job on rerun.
    await atomicWriteJson(stateFile, state);
    commands.push(cmdLine);
    ids.forEach((id, i) => {
      taskOf.set(id, `${jobId}_${i}`);
      logOf.set(id, path.join(logDir, `${name}_${i}.log`));
      submittedBy.add(id);
    });
    print(`slurm: job ${jobId} ${name}: ${ids.length} task(s) ${ids.length <= 3 ? ids.join(', ') : `${ids.slice(0, 2).join(', ')}, ... ${ids.at(-1)}`}${deps.size ? ` (after ${[...deps].join(', ')})` : ''}`);
  }
  if (o.dryRun) return { commands, tasks: [], failed: [], submittedJobs };
  for (const [st, t] of inflight) print(`slurm: ${t.task} ${st}: still queued or running from an earlier driver run; not resubmitted`);

  // Wait.
  const pollMs = o.pollMs ?? (Number(process.env.DCD_SLURM_POLL_MS) || 2000);
  const pendingIds = new Set(taskOf.keys());
  const last = new Map<string, string>();
  const missing = new Map<string, number>();
  const outcome = new Map<string, TaskOutcome>();
  let queueErrors = 0;
  while (pendingIds.size) {
    let q: Map<string, { state: string; reason: string }>;
    try {
      q = queueStates();
      queueErrors = 0;
    } catch (e) {
      if (++queueErrors >= 30) throw e;
      log.warn(`squeue failed (${(e as Error).message}); retrying`);
      await sleep(pollMs);
      continue;
    }
    for (const id of [...pendingIds]) {
      const task = taskOf.get(id)!;
      const lg = logOf.get(id)!;
      let s = q.get(task);
      if (!s) {
        // Slurm has forgotten the task (MinJobAge): the manifest or the job's exit code tell.
        const rcFile = lg.replace(/\.log$/, '.rc');
        const spec = specOf.get(id)!;
        const manifest = existsSync(path.join(stageDir(o.runDir, spec), 'manifest.json'));
        if (existsSync(rcFile)) {
          const rc = readFileSync(rcFile, 'utf8').trim();
          s = { state: rc === '0' && manifest ? 'COMPLETED' : 'FAILED', reason: rc === '0' ? (manifest ? 'None' : 'no manifest') : `exit code ${rc}` };
        } else {
          const n = (missing.get(id) ?? 0) + 1;
          missing.set(id, n);
          if (n < 5) continue;
          s = manifest ? { state: 'COMPLETED', reason: 'None' } : { state: 'VANISHED', reason: 'not in squeue, no exit code' };
        }
      }
      if (last.get(id) !== s.state) {
        last.set(id, s.state);
        if (s.state !== 'PENDING' || submittedBy.has(id)) print(`slurm: ${task} ${id}: ${s.state}${s.state === 'FAILED' || s.state === 'CANCELLED' ? ` (${s.reason}); log: ${lg}` : ''}`);
      }
      if (ACTIVE.has(s.state)) continue;
      pendingIds.delete(id);
      outcome.set(id, { stage: id, task, state: s.state, reason: s.reason, log: lg, submitted: submittedBy.has(id) });
    }
    if (pendingIds.size) await sleep(pollMs);
  }
  const tasks = [...outcome.values()];
  const failed = tasks.filter((t) => t.state !== 'COMPLETED' && !/Dependency/.test(t.reason));
  return { commands, tasks, failed, submittedJobs };
}

/** The summary lines: one per task, failures with their log. */
export function formatTasks(tasks: readonly TaskOutcome[]): string {
  const rows = tasks.map((t) => [t.task, t.state + (t.state === 'COMPLETED' ? '' : ` (${t.reason})`), t.stage, t.state === 'COMPLETED' ? '' : t.log]);
  const w0 = Math.max(4, ...rows.map((r) => r[0]!.length));
  const w1 = Math.max(5, ...rows.map((r) => r[1]!.length));
  return rows.map((r) => `${r[0]!.padEnd(w0 + 2)}${r[1]!.padEnd(w1 + 2)}${r[2]}${r[3] ? `  log: ${r[3]}` : ''}`).join('\n');
}
