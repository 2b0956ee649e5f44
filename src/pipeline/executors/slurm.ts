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
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../core/config.js';
import { ArtifactError, ConfigError } from '../../core/errors.js';
import { atomicWriteFile, atomicWriteJson, ensureDir } from '../../core/fsutil.js';
import { log } from '../../core/log.js';
import { lockCommand, stageDir, stageId, type StageSpec, type StageStatus } from '../runner.js';
import { withRunLock } from '../lock.js';
import { isShardable, partDir } from '../shards.js';

/** Resources of one stage kind's jobs (`executor.slurm.<stage>` in the config). */
export type SlurmResources = NonNullable<Config['executor']['slurm'][string]>;

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
  /** Row shards of each shardable stage (embed); 1 = whole stages. */
  shards?: number;
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
  /** Task i runs unit stages[i]: a stage id, plus `#part=i/n` for a row shard or `#merge=n`. */
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

/** `squeue` of this user's jobs and array tasks in every state, one line each in `format`. */
function squeueAll(format: string): string[] {
  const user = process.env.USER ?? spawnSync('id', ['-un'], { encoding: 'utf8' }).stdout.trim();
  return slurmCmd('squeue', ['--noheader', '--array', '--states=all', `--user=${user}`, `--format=${format}`]).split('\n');
}

/** Task states Slurm knows, by `<array job id>_<task id>`. */
function queueStates(): Map<string, { state: string; reason: string }> {
  const out = new Map<string, { state: string; reason: string }>();
  for (const line of squeueAll('%F|%K|%T|%r')) {
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

/** Unit keys of a job script's tasks, from its STAGES and EXTRA arrays (as {@link jobScript} writes them). */
export function scriptKeys(text: string, file: string): string[] {
  const arr = (name: string): string[] => {
    const m = new RegExp(`^${name}=\\((.*)\\)$`, 'm').exec(text);
    if (!m) throw new ArtifactError(`${file}: no ${name}=(...) line; not a job script written by dcd run --executor slurm`);
    return splitArgs(m[1]!);
  };
  const stages = arr('STAGES');
  const extra = arr('EXTRA');
  if (extra.length !== stages.length) throw new ArtifactError(`${file}: ${stages.length} STAGES but ${extra.length} EXTRA entries`);
  return stages.map((id, i) => {
    const part = /^--part (\d+)\/(\d+)$/.exec(extra[i]!);
    const merge = /^--merge (\d+)$/.exec(extra[i]!);
    return part ? `${id}#part=${part[1]}/${part[2]}` : merge ? `${id}#merge=${merge[1]}` : id;
  });
}

/**
 * The state of a run whose `slurm/state.json` is gone (deleted, or the run folder restored without
 * it): its jobs that Slurm still queues or runs, found by name (`dcd-<run>-...`, one job script each
 * in `slurm/jobs/`), so that a rerun adopts them instead of submitting their stages a second time.
 */
function recoverState(runDir: string, jobDir: string): SlurmState {
  const state: SlurmState = { version: 1, seq: 0, jobs: [] };
  if (!existsSync(jobDir)) return state;
  const scripts = readdirSync(jobDir).filter((f) => f.endsWith('.sh'));
  if (!scripts.length) return state;
  const prefix = jobName(runDir, '', 0).replace(/-0$/, '');
  const active = new Map<string, string>(); // job name → array job id, of jobs with a task still queued or running
  for (const line of squeueAll('%F|%j|%T')) {
    const [id, name, st] = line.trim().split('|');
    if (id && name && st && ACTIVE.has(st) && name.startsWith(prefix)) active.set(name, id);
  }
  for (const f of scripts.sort()) {
    const name = f.slice(0, -3);
    state.seq = Math.max(state.seq, Number(/-(\d+)$/.exec(name)?.[1] ?? -1) + 1);
    const id = active.get(name);
    if (!id) continue;
    const script = path.join(jobDir, f);
    const kind = name.slice(prefix.length).replace(/-\d+$/, '');
    state.jobs.push({ name, job_id: id, stages: scriptKeys(readFileSync(script, 'utf8'), script), kind, script, submitted: 'recovered', sbatch: [] });
  }
  return state;
}

/** A job name without characters Slurm or file names mind. */
function jobName(runDir: string, kind: string, seq: number): string {
  return `dcd-${path.basename(runDir).replace(/[^A-Za-z0-9._-]+/g, '_')}-${kind}-${seq}`;
}

/** The script of one job array: task i runs unit i through the CLI, then records its exit code. */
export function jobScript(o: { name: string; units: readonly Unit[]; cwd: string; cli: readonly string[]; rcDir: string }): string {
  return [
    '#!/usr/bin/env bash',
    `# ${o.name}: written by dcd run --executor slurm; task i runs stage STAGES[i] (EXTRA[i]: its row shard or merge).`,
    `STAGES=(${o.units.map((u) => shellQuote(u.id)).join(' ')})`,
    `EXTRA=(${o.units.map((u) => shellQuote(u.mode === 'part' ? `--part ${u.part}/${u.count}` : u.mode === 'merge' ? `--merge ${u.count}` : '')).join(' ')})`,
    'i=${SLURM_ARRAY_TASK_ID:-0}',
    '# native threads = the CPUs Slurm gave the task (executor.slurm.<stage>.cpus), unless set by hand:',
    '# without task binding, every CPU of the node would look free.',
    'if [ -n "${SLURM_CPUS_PER_TASK:-}" ] && [ -z "${DCD_NATIVE_THREADS:-}" ]; then export DCD_NATIVE_THREADS=$SLURM_CPUS_PER_TASK; fi',
    `cd ${shellQuote(o.cwd)} || exit 1`,
    'echo "dcd job $SLURM_JOB_ID (array ${SLURM_ARRAY_JOB_ID:-} task $i) on $(hostname): ${STAGES[$i]} ${EXTRA[$i]}" >&2',
    `${o.cli.map(shellQuote).join(' ')} --stage "\${STAGES[$i]}" \${EXTRA[$i]}`,
    'rc=$?',
    `echo "$rc" > ${shellQuote(o.rcDir)}/${o.name}_$i.rc`,
    'exit $rc',
    '',
  ].join('\n');
}

/** One task: a whole stage, one row shard of it, or the merge of its shards. */
interface Unit {
  /** Unique key: the stage id, plus `#part=i/n` or `#merge=n`. */
  key: string;
  id: string;
  spec: StageSpec;
  mode: 'whole' | 'part' | 'merge';
  part?: number;
  count?: number;
  /** Keys of the units it waits for. */
  after: string[];
  depth: number;
}

/** How a unit reads in messages. */
function unitLabel(u: { id: string; mode: string; part?: number | undefined; count?: number | undefined }): string {
  return u.mode === 'part' ? `${u.id} (part ${u.part}/${u.count})` : u.mode === 'merge' ? `${u.id} (merge of ${u.count})` : u.id;
}
function labelOfKey(key: string): string {
  const m = /^(.*)#(part|merge)=(?:(\d+)\/)?(\d+)$/.exec(key);
  if (!m) return key;
  return m[2] === 'part' ? `${m[1]} (part ${m[3]}/${m[4]})` : `${m[1]} (merge of ${m[4]})`;
}

/**
 * Submits the stages of the plan that are not cached as Slurm job arrays (dependencies
 * by afterok), adopting the still-active tasks of an earlier driver run, and waits for
 * all of them. It makes the plan with `makePlan` after reading the queue (see the comment
 * at `queue`). With `shards` > 1,
 * shardable stages (embed) run as that many row-shard tasks and a merge task. Returns
 * every task's outcome; the caller turns failures into an error.
 */
export async function runOnSlurm(makePlan: () => Promise<readonly StageStatus[]>, o: SlurmRunOptions): Promise<SlurmRunResult> {
  // The driver holds the run folder's lock while its jobs run (the jobs, `--stage`, take none).
  if (o.dryRun) return driveSlurm(makePlan, o);
  return withRunLock(o.runDir, lockCommand(), () => driveSlurm(makePlan, o));
}

async function driveSlurm(makePlan: () => Promise<readonly StageStatus[]>, o: SlurmRunOptions): Promise<SlurmRunResult> {
  const print = o.print ?? ((l: string) => log.info(l));
  const slurmDir = path.join(o.runDir, 'slurm');
  const stateFile = path.join(slurmDir, 'state.json');
  const logDir = path.join(slurmDir, 'logs');
  const jobDir = path.join(slurmDir, 'jobs');
  let state = readState(stateFile);
  if (!existsSync(stateFile) && !o.dryRun) {
    state = recoverState(o.runDir, jobDir);
    if (state.jobs.length) print(`slurm: ${stateFile} is missing; found ${state.jobs.length} job(s) of this run still queued or running by name (job scripts in ${jobDir})`);
    // written back at once: a driver killed again before it submits anything still finds them
    if (state.seq > 0) await atomicWriteJson(stateFile, state);
  }
  // The queue is read before the plan is made. A task of an earlier driver run that ends in between
  // has written its outputs before squeue stops listing it, so the plan then finds its stage cached;
  // with the plan made first, such a stage was neither cached nor active, and was submitted again.
  const queue = state.jobs.length && !o.dryRun ? queueStates() : undefined;
  const plan = await makePlan();
  const todo = plan.filter((s) => !s.cached);
  const specOf = new Map(todo.map((s) => [stageId(s.spec), s.spec]));
  const shards = o.shards ?? 1;

  // The units of the remaining stages, dependencies first (the plan is in that order).
  const units = new Map<string, Unit>();
  const finalOf = new Map<string, string>(); // stage id → key of the unit that completes it
  for (const st of todo) {
    const id = stageId(st.spec);
    const after = Object.values(st.spec.deps).flatMap((d) => {
      const f = finalOf.get(stageId(d));
      return f ? [f] : [];
    });
    const depth = Math.max(-1, ...after.map((k) => units.get(k)!.depth)) + 1;
    if (shards > 1 && isShardable(st.spec)) {
      const parts: string[] = [];
      for (let i = 0; i < shards; i++) {
        // A part done by an earlier run (its part.json) needs no job.
        if (existsSync(path.join(partDir(st.dir, i, shards), 'part.json'))) continue;
        const key = `${id}#part=${i}/${shards}`;
        units.set(key, { key, id, spec: st.spec, mode: 'part', part: i, count: shards, after, depth });
        parts.push(key);
      }
      const key = `${id}#merge=${shards}`;
      units.set(key, { key, id, spec: st.spec, mode: 'merge', count: shards, after: [...after, ...parts], depth: depth + (parts.length ? 1 : 0) });
      finalOf.set(id, key);
    } else {
      units.set(id, { key: id, id, spec: st.spec, mode: 'whole', after, depth });
      finalOf.set(id, id);
    }
  }

  // Tasks of earlier driver runs that Slurm still runs or queues: adopt them.
  const taskOf = new Map<string, string>(); // unit key → task ref (array_task), for dependencies
  const logOf = new Map<string, string>();
  const adopted = new Set<string>();
  if (queue) {
    for (const j of state.jobs)
      j.stages.forEach((key, i) => {
        const t = `${j.job_id}_${i}`;
        const s = queue.get(t);
        // A task waiting on a failed one is about to be cancelled: submit its stage anew instead.
        if (s && ACTIVE.has(s.state) && !/DependencyNeverSatisfied/.test(s.reason) && units.has(key)) {
          adopted.add(key);
          taskOf.set(key, t);
          logOf.set(key, path.join(logDir, `${j.name}_${i}.log`));
        }
      });
  }

  // One array per (depth, kind, part/merge/whole) of the units still to submit.
  const groups = new Map<string, { kind: string; units: Unit[] }>();
  for (const u of units.values()) {
    if (adopted.has(u.key)) continue;
    const k = `${String(u.depth).padStart(4, '0')}:${u.spec.stage}:${u.mode}`;
    if (!groups.has(k)) groups.set(k, { kind: u.mode === 'whole' ? u.spec.stage : `${u.spec.stage}-${u.mode}`, units: [] });
    groups.get(k)!.units.push(u);
  }
  const ordered = [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g);

  const submittedBy = new Set<string>();
  const commands: string[] = [];
  const submittedJobs: JobRecord[] = [];
  if (!o.dryRun) await Promise.all([ensureDir(logDir), ensureDir(jobDir)]);
  const cli = [process.execPath, fileURLToPath(new URL('../../cli/main.js', import.meta.url)), ...o.cliArgs];
  const user = o.sbatchArgs ?? [];
  for (const g of ordered) {
    const seq = state.seq++;
    const name = jobName(o.runDir, g.kind, seq);
    const keys = g.units.map((u) => u.key);
    const deps = new Set<string>();
    for (const u of g.units)
      for (const a of u.after) {
        const t = taskOf.get(a);
        if (!t) throw new ArtifactError(`internal: ${a} has no job before ${u.key}`);
        deps.add(t);
      }
    const stageKind = g.units[0]!.spec.stage;
    const r = { ...(o.resources?.default ?? {}), ...(o.resources?.[stageKind] ?? {}) };
    const script = path.join(jobDir, `${name}.sh`);
    const args = [
      '--parsable',
      `--job-name=${name}`,
      `--array=0-${keys.length - 1}`,
      `--output=${path.join(logDir, '%x_%a.log')}`,
      `--chdir=${o.cwd}`,
      '--kill-on-invalid-dep=yes',
      ...(deps.size ? [`--dependency=afterok:${[...deps].join(':')}`] : []),
      ...((o.partition ?? r.partition) ? [`--partition=${o.partition ?? r.partition}`] : []),
      ...(r.cpus ? [`--cpus-per-task=${r.cpus}`] : []),
      ...(r.mem !== undefined ? [`--mem=${r.mem}`] : []),
      ...(r.time ? [`--time=${r.time}`] : []),
      ...(r.gres ? [`--gres=${r.gres}`] : []),
      ...user,
    ];
    const cmdLine = `sbatch ${[...args, script].map(shellQuote).join(' ')}`;
    if (o.dryRun) {
      commands.push(`# ${name}: ${g.units.map((u, i) => `[${i}] ${unitLabel(u)}`).join(', ')}\n${cmdLine}`);
      keys.forEach((k, i) => taskOf.set(k, `$${name.replace(/[^A-Za-z0-9_]/g, '_')}_${i}`));
      continue;
    }
    await atomicWriteFile(script, jobScript({ name, units: g.units, cwd: o.cwd, cli, rcDir: logDir }));
    const out = slurmCmd('sbatch', [...args, script]).trim();
    const jobId = out.split(';')[0]!.trim();
    if (!/^\d+$/.test(jobId)) throw new ArtifactError(`sbatch printed "${out}", expected a job id`);
    const rec: JobRecord = { name, job_id: jobId, stages: keys, kind: g.kind, script, submitted: new Date().toISOString(), sbatch: args };
    state.jobs.push(rec);
    submittedJobs.push(rec);
    // Recorded at once: a driver killed from here on finds the job on rerun.
    await atomicWriteJson(stateFile, state);
    commands.push(cmdLine);
    keys.forEach((k, i) => {
      taskOf.set(k, `${jobId}_${i}`);
      logOf.set(k, path.join(logDir, `${name}_${i}.log`));
      submittedBy.add(k);
    });
    const labels = g.units.map(unitLabel);
    print(`slurm: job ${jobId} ${name}: ${labels.length} task(s) ${labels.length <= 3 ? labels.join(', ') : `${labels.slice(0, 2).join(', ')}, ... ${labels.at(-1)}`}${deps.size ? ` (after ${[...deps].join(', ')})` : ''}`);
  }
  if (o.dryRun) return { commands, tasks: [], failed: [], submittedJobs };
  for (const k of adopted) print(`slurm: ${taskOf.get(k)} ${labelOfKey(k)}: still queued or running from an earlier driver run; not resubmitted`);

  // Wait.
  const pollMs = o.pollMs ?? (Number(process.env.DCD_SLURM_POLL_MS) || 2000);
  const pendingKeys = new Set(taskOf.keys());
  const last = new Map<string, string>();
  const missing = new Map<string, number>();
  const outcome = new Map<string, TaskOutcome>();
  let queueErrors = 0;
  while (pendingKeys.size) {
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
    for (const key of [...pendingKeys]) {
      const u = units.get(key)!;
      const task = taskOf.get(key)!;
      const lg = logOf.get(key)!;
      let s = q.get(task);
      if (!s) {
        // Slurm has forgotten the task (MinJobAge): the stage's manifest (a part's part.json) or the job's exit code tell.
        const rcFile = lg.replace(/\.log$/, '.rc');
        const dir = stageDir(o.runDir, u.spec);
        const doneFile = u.mode === 'part' ? path.join(partDir(dir, u.part!, u.count!), 'part.json') : path.join(dir, 'manifest.json');
        const done = existsSync(doneFile);
        if (existsSync(rcFile)) {
          const rc = readFileSync(rcFile, 'utf8').trim();
          s = { state: rc === '0' && done ? 'COMPLETED' : 'FAILED', reason: rc === '0' ? (done ? 'None' : `exit 0 but no ${path.basename(doneFile)}`) : `exit code ${rc}` };
        } else {
          const n = (missing.get(key) ?? 0) + 1;
          missing.set(key, n);
          if (n < 5) continue;
          s = done ? { state: 'COMPLETED', reason: 'None' } : { state: 'VANISHED', reason: 'not in squeue, no exit code' };
        }
      }
      if (last.get(key) !== s.state) {
        last.set(key, s.state);
        if (s.state !== 'PENDING' || submittedBy.has(key)) print(`slurm: ${task} ${unitLabel(u)}: ${s.state}${s.state !== 'COMPLETED' && !ACTIVE.has(s.state) ? ` (${s.reason}); log: ${lg}` : ''}`);
      }
      if (ACTIVE.has(s.state)) continue;
      pendingKeys.delete(key);
      outcome.set(key, { stage: unitLabel(u), task, state: s.state, reason: s.reason, log: lg, submitted: submittedBy.has(key) });
    }
    if (pendingKeys.size) await sleep(pollMs);
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
