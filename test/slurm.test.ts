/**
 * `dcd run --executor slurm` against a real single-node Slurm cluster that this file
 * starts (scripts/slurm/start.sh: munged, slurmctld, slurmd on this machine) and stops.
 * The flat demo config (configs/demo-flat.yaml), shrunk with --set to one seed and few epochs, runs once locally and
 * through Slurm with --shards 2: same report. A driver killed mid-run and rerun adopts
 * the queued and running jobs and submits each stage once. A job made to fail (a
 * corrupted input) is reported with its log, and the driver exits non-zero.
 *
 * Skipped, with the reason printed, only where the Slurm binaries are absent or the
 * tests do not run as root (slurmd must); scripts/setup.sh installs them, so CI runs it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
// The flat demo (two backbones, no pretraining stage: the quickest full graph), shrunk: one seed,
// 2 + 1 epochs, a smaller pool, no Complete and Random rows (fewer jobs); named demo.
const DEMO = path.join(ROOT, 'configs/demo-flat.yaml');
const SHRINK = ['--seeds', '0', '--set', 'experiment.name=demo', '--set', 'train.epochs=2', '--set', 'train.finetune.epochs=1', '--set', 'data.synthetic.pool.size=3000', '--set', 'methods=[original,dcd]'];

function which(bin: string): boolean {
  return spawnSync('bash', ['-c', `command -v ${bin} || test -x /usr/sbin/${bin}`], { encoding: 'utf8' }).status === 0;
}
const missing = ['munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'sinfo'].filter((b) => !which(b));
const isRoot = process.getuid?.() === 0;
const skipReason = missing.length ? `Slurm binaries absent (${missing.join(', ')}): install slurm-wlm and munge (bash scripts/setup.sh)` : !isRoot ? 'not root: slurmd must run as root to start jobs' : '';
if (skipReason) console.warn(`test/slurm.test.ts skipped: ${skipReason}`);

const clusterDir = mkdtempSync(path.join(tmpdir(), 'slurm-'));
// A port of its own, so a cluster started by hand (default 6817) does not collide.
const port = 20000 + Math.floor(Math.random() * 20000) * 2;
// One CPU for jobs: one task at a time, so the test files running beside this one keep a core.
const CLUSTER_ENV = { ...process.env, DCD_SLURM_DIR: clusterDir, DCD_SLURM_CTLD_PORT: String(port), DCD_SLURM_CPUS: '1', PATH: `${process.env.PATH}:/usr/sbin` };
let ENV: NodeJS.ProcessEnv = {};

/** The CLI in a child process (asynchronous: a blocked test worker would miss vitest's heartbeats for minutes). */
function runCli(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn('node', [CLI, ...args], { cwd, env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The table printed (stdout up to the "results:" line). */
function tableOf(stdout: string): string {
  const i = stdout.indexOf('\nresults:');
  return i < 0 ? stdout : stdout.slice(0, i);
}

/** Completed stage folders of a run → `pick` of its manifest (default: the finish time). */
function manifests(runDir: string, pick: (m: { timings: { finished: string }; outputs_hash: string }) => string = (m) => m.timings.finished): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(runDir)) return out;
  for (const stage of readdirSync(runDir)) {
    const d = path.join(runDir, stage);
    if (stage === 'slurm' || !statSync(d).isDirectory()) continue;
    for (const inst of readdirSync(d)) {
      const m = path.join(d, inst, 'manifest.json');
      if (existsSync(m)) out.set(`${stage}/${inst}`, pick(JSON.parse(readFileSync(m, 'utf8'))));
    }
  }
  return out;
}

interface State {
  jobs: { job_id: string; stages: string[]; name: string }[];
}
const stateOf = (runDir: string): State => JSON.parse(readFileSync(path.join(runDir, 'slurm/state.json'), 'utf8'));

/** Starts the driver (`node args...`) and kills it (SIGKILL: no clean-up) once `stages` stages have finished in jobs; returns its stderr. */
async function driverKilledAfter(args: string[], cwd: string, runDir: string, stages: number): Promise<string> {
  const child = spawn('node', args, { cwd, env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const t0 = Date.now();
  while (manifests(runDir).size < stages) {
    if (Date.now() - t0 > 240_000) throw new Error(`no stage finished within 240 s:\n${err.slice(-3000)}`);
    if (child.exitCode !== null) throw new Error(`driver exited early (${child.exitCode}):\n${err.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  return err;
}

let localTable = '';
let localRunDir = '';

/** Stage instances whose outputs differ between two run folders (outputs_hash of each manifest): says where a mismatch began. */
function differingStages(a: string, b: string): string {
  const ha = manifests(a, (m) => m.outputs_hash);
  const hb = manifests(b, (m) => m.outputs_hash);
  const diff = [...ha].filter(([k, h]) => hb.has(k) && hb.get(k) !== h).map(([k]) => k);
  return `stages whose outputs differ from the local run's (retention and report name the run folder, so they always do): ${diff.join(', ') || 'none'}`;
}

describe.skipIf(!!skipReason)('dcd run --executor slurm on a real single-node cluster', () => {
  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npx tsc -p tsconfig.json first`);
    const r = spawnSync('bash', [path.join(ROOT, 'scripts/slurm/start.sh')], { env: CLUSTER_ENV, encoding: 'utf8', timeout: 90_000 });
    if (r.status !== 0) throw new Error(`scripts/slurm/start.sh failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    const conf = /export SLURM_CONF=(\S+)/.exec(r.stdout)?.[1];
    expect(conf).toBe(path.join(clusterDir, 'slurm.conf'));
    // One thread count for the local run and every job (sbatch exports the environment): oneDNN splits
    // reductions by thread, so results are bit-identical only at equal thread counts.
    ENV = { ...CLUSTER_ENV, SLURM_CONF: conf, DCD_LOG: 'info', DCD_SLURM_POLL_MS: '500', DCD_NATIVE_THREADS: '2' };
    // The cluster runs jobs: srun and sbatch --wrap both work before dcd uses it.
    const s = spawnSync('srun', ['hostname'], { env: ENV, encoding: 'utf8', timeout: 60_000 });
    expect(s.status, s.stderr).toBe(0);
    // The reference: the same shrunk demo, run locally.
    const cwd = mkdtempSync(path.join(tmpdir(), 'slurm-local-'));
    const loc = await runCli(['run', DEMO, ...SHRINK], cwd);
    localRunDir = path.join(cwd, 'runs/demo');
    expect(loc.code, loc.stderr.slice(-3000)).toBe(0);
    localTable = tableOf(loc.stdout);
    expect(localTable).toMatch(/^\| dcd-broad_cnn \|/m);
  }, 300_000);

  afterAll(() => {
    spawnSync('bash', [path.join(ROOT, 'scripts/slurm/stop.sh')], { env: CLUSTER_ENV, encoding: 'utf8', timeout: 60_000 });
  });

  it('--dry-run prints one sbatch command per job array, chained by afterok, and submits nothing', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'slurm-dry-'));
    const r = await runCli(['run', DEMO, ...SHRINK, '--executor', 'slurm', '--shards', '2', '--partition', 'debug', '--dry-run'], cwd);
    expect(r.code, r.stderr).toBe(0);
    const cmds = r.stdout.split('\n').filter((l) => l.startsWith('sbatch --'));
    expect(cmds.length).toBeGreaterThan(5);
    for (const c of cmds) (expect(c).toMatch(/ --partition=debug /), expect(c).toMatch(/ --array=0-\d+ /));
    expect(r.stdout).toMatch(/--dependency=afterok:\$dcd_demo_/);
    expect(existsSync(path.join(cwd, 'runs/demo/slurm'))).toBe(false);
  });

  it('runs the demo as Slurm jobs with --shards 2 (report identical to the local run); a driver killed mid-run and rerun adopts the queued and running jobs and submits each task once', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'slurm-kill-'));
    const runDir = path.join(cwd, 'runs/demo');
    const args = [CLI, 'run', DEMO, ...SHRINK, '--executor', 'slurm', '--shards', '2'];
    const err = await driverKilledAfter(args, cwd, runDir, 3);
    const before = manifests(runDir);
    const firstJobs = stateOf(runDir).jobs.length;
    expect(firstJobs).toBeGreaterThan(3);
    const r = await runCli(args.slice(1), cwd);
    expect(r.code, r.stderr.slice(-4000)).toBe(0);
    expect(tableOf(r.stdout), differingStages(localRunDir, runDir)).toBe(localTable);
    // Stages finished before the kill were neither resubmitted nor rerun.
    for (const [k, finished] of before) expect(manifests(runDir).get(k), k).toBe(finished);
    const st = stateOf(runDir);
    const submitted = st.jobs.flatMap((j) => j.stages);
    expect(new Set(submitted).size, `a stage was submitted twice: ${submitted.join(' ')}`).toBe(submitted.length);
    // The killed driver had submitted everything; its jobs ran on: the rerun had nothing to submit.
    expect(st.jobs.length).toBe(firstJobs);
    expect(r.stderr).toMatch(/still queued or running from an earlier driver run; not resubmitted/);
    expect(readFileSync(path.join(runDir, 'report.md'), 'utf8')).toBe(localTable);
    // Embeddings ran as row shards (one array over both halves of each set) and merges; so did
    // Algorithm 1's candidate search (both backbones' select stages, 2 pool shards each).
    expect(err).toMatch(/slurm: job \d+ dcd-demo-embed-part-\d+: 8 task\(s\) embed\/broad_cnn-mfreq-s0-\w+ \(part 0\/2\)/);
    expect(err).toMatch(/slurm: job \d+ dcd-demo-embed-merge-\d+: 4 task\(s\)/);
    expect(err).toMatch(/slurm: job \d+ dcd-demo-select-part-\d+: 4 task\(s\)/);
    expect(submitted.filter((k) => k.startsWith('embed/') && k.includes('#part=')).length).toBe(8);
    expect(submitted.filter((k) => k.startsWith('select/') && k.includes('#part=')).length).toBe(4);
    // Each stage's manifest says where it computed (here: native, the 2 threads of ENV).
    const m = JSON.parse(readFileSync(path.join(runDir, 'original', readdirSync(path.join(runDir, 'original'))[0]!, 'manifest.json'), 'utf8'));
    expect(m.compute).toEqual({ backend: 'native', threads: 2 });
    // Every task exited 0 (the job script records it next to the log).
    for (const j of st.jobs) j.stages.forEach((_, i) => expect(readFileSync(path.join(runDir, 'slurm/logs', `${j.name}_${i}.rc`), 'utf8').trim()).toBe('0'));
    // A plain local rerun finds every stage cached.
    const local = await runCli(['run', DEMO, ...SHRINK], cwd);
    expect(local.code).toBe(0);
    expect(local.stdout).toMatch(/stages ran: 0,/);
    expect(tableOf(local.stdout)).toBe(localTable);
  }, 1_200_000);

  it('a driver killed mid-run whose state file is then lost finds its jobs by name on rerun and submits no stage twice', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'slurm-lost-'));
    const runDir = path.join(cwd, 'runs/demo');
    const args = [CLI, 'run', DEMO, ...SHRINK, '--executor', 'slurm', '--shards', '2'];
    await driverKilledAfter(args, cwd, runDir, 2);
    const before = stateOf(runDir).jobs;
    rmSync(path.join(runDir, 'slurm/state.json'));
    const r = await runCli(args.slice(1), cwd);
    expect(r.code, r.stderr.slice(-4000)).toBe(0);
    expect(r.stderr).toMatch(/state\.json is missing; found \d+ job\(s\) of this run still queued or running by name/);
    expect(r.stderr).toMatch(/still queued or running from an earlier driver run; not resubmitted/);
    expect(tableOf(r.stdout), differingStages(localRunDir, runDir)).toBe(localTable);
    // The recovered jobs are the killed driver's (same ids), and no stage was submitted twice.
    const st = stateOf(runDir);
    const recovered = st.jobs.filter((j) => j.submitted === 'recovered');
    expect(recovered.length).toBeGreaterThan(0);
    for (const j of recovered) expect(before.find((b) => b.job_id === j.job_id)?.stages, j.name).toEqual(j.stages);
    const submitted = st.jobs.flatMap((j) => j.stages);
    expect(new Set(submitted).size, `a stage was submitted twice: ${submitted.join(' ')}`).toBe(submitted.length);
    // New jobs got new names (the old scripts and logs are kept).
    const names = st.jobs.map((j) => j.name);
    expect(new Set(names).size).toBe(names.length);
  }, 1_200_000);

  it('a failing job (corrupted input) is reported with its log; the driver exits non-zero; a rerun resubmits only the failed stages', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'slurm-fail-'));
    const runDir = path.join(cwd, 'runs/demo');
    const d = await runCli(['run', DEMO, ...SHRINK, '--only', 'data'], cwd);
    expect(d.code, d.stderr).toBe(0);
    // Other bytes, recorded in the data stage's manifest as its output (a stage that wrote garbage):
    // the data stage stays cached, every reader of pool.arrow fails.
    const dataDir = path.join(runDir, 'data', readdirSync(path.join(runDir, 'data'))[0]!);
    const pool = path.join(dataDir, 'pool.arrow');
    const good = readFileSync(pool);
    writeFileSync(pool, Buffer.alloc(good.length, 0x5a));
    const manifestFile = path.join(dataDir, 'manifest.json');
    const goodManifest = readFileSync(manifestFile, 'utf8');
    const m = JSON.parse(goodManifest);
    m.outputs.pool = { ...m.outputs.pool, sha256: createHash('sha256').update(readFileSync(pool)).digest('hex'), mtime_ms: statSync(pool).mtimeMs };
    writeFileSync(manifestFile, JSON.stringify(m));
    const r = await runCli(['run', DEMO, ...SHRINK, '--executor', 'slurm', '--shards', '2'], cwd);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Slurm job\(s\) failed/);
    // Both halves of both pool embeddings read the corrupted file: four failed tasks.
    const failed = [...r.stderr.matchAll(/^\s+(\d+_\d+) (embed\/\S+-pool-\S+) \(part (\d)\/2\): FAILED \([^)]*\); log: (\S+)$/gm)];
    expect(failed.length, r.stderr.slice(-3000)).toBe(4);
    for (const [, , , , logFile] of failed) {
      expect(existsSync(logFile!), logFile).toBe(true);
      expect(readFileSync(logFile!, 'utf8')).toMatch(/pool\.arrow/);
    }
    expect(r.stderr).toMatch(/dependent job\(s\) not run/);
    expect(r.stdout).not.toMatch(/\| method \|/);
    // Repair the input (and its record) and rerun: only the stages without a manifest are submitted again.
    writeFileSync(pool, good);
    writeFileSync(manifestFile, goodManifest);
    const doneBefore = new Set(manifests(runDir).keys());
    const jobsBefore = stateOf(runDir).jobs.length;
    const again = await runCli(['run', DEMO, ...SHRINK, '--executor', 'slurm', '--shards', '2'], cwd);
    expect(again.code, again.stderr.slice(-3000)).toBe(0);
    expect(tableOf(again.stdout), differingStages(localRunDir, runDir)).toBe(localTable);
    const resubmitted = stateOf(runDir).jobs.slice(jobsBefore).flatMap((j) => j.stages);
    for (const k of resubmitted) expect(doneBefore.has(k.replace(/#.*$/, '')), k).toBe(false);
    // Of the embeddings' row shards, exactly the failed ones ran again (the mfreq halves were kept).
    const parts = resubmitted.filter((k) => k.startsWith('embed/') && k.includes('#part=')).sort();
    expect(parts).toEqual(failed.map(([, , stage, part]) => `${stage}#part=${part}/2`).sort());
  }, 1_200_000);
});

describe('slurm executor pieces that need no cluster', () => {
  it('--sbatch words split like a shell splits them; job-script words are quoted back', async () => {
    const { splitArgs, shellQuote } = await import('../src/pipeline/executors/slurm.js');
    expect(splitArgs(`--account=lab  --comment='a b' --x="c \\"d\\"" e\\ f`)).toEqual(['--account=lab', '--comment=a b', '--x=c "d"', 'e f']);
    expect(() => splitArgs(`--comment='open`)).toThrow(/unbalanced '/);
    expect(shellQuote('--set')).toBe('--set');
    expect(shellQuote("methods=[a, b]'s")).toBe(`'methods=[a, b]'\\''s'`);
  });

  it('a job script names its tasks: the unit keys read back from STAGES and EXTRA', async () => {
    const { jobScript, scriptKeys } = await import('../src/pipeline/executors/slurm.js');
    const u = (id: string, mode: 'whole' | 'part' | 'merge', part?: number) => ({ key: '', id, mode, part, count: 2, after: [], depth: 0, spec: {} as never });
    const text = jobScript({ name: 'j', units: [u("embed/a b's-1", 'part', 1), u('embed/x-2', 'merge'), u('train/dcd-y-s0-3', 'whole')], cwd: '/w', cli: ['node', 'main.js'], rcDir: '/r' });
    expect(scriptKeys(text, 'j.sh')).toEqual(["embed/a b's-1#part=1/2", 'embed/x-2#merge=2', 'train/dcd-y-s0-3']);
    expect(() => scriptKeys('#!/bin/bash\necho hi\n', 'x.sh')).toThrow(/x\.sh: no STAGES=\(\.\.\.\) line/);
  });

  it('reads the queue before it makes the plan: a task of an earlier driver that ends in between is not submitted again', async () => {
    const { runOnSlurm } = await import('../src/pipeline/executors/slurm.js');
    const dir = mkdtempSync(path.join(tmpdir(), 'slurm-race-'));
    const bin = path.join(dir, 'bin');
    const runDir = path.join(dir, 'runs/demo');
    const calls = path.join(dir, 'calls.log');
    mkdirSync(bin, { recursive: true });
    mkdirSync(path.join(runDir, 'slurm'), { recursive: true });
    // Fake Slurm: the earlier driver's data task is RUNNING at the first squeue and gone after it.
    writeFileSync(path.join(bin, 'squeue'), `#!/bin/sh\necho squeue >> '${calls}'\nif [ ! -e '${dir}/seen' ]; then touch '${dir}/seen'; echo '100|0|RUNNING|None'; fi\n`, { mode: 0o755 });
    writeFileSync(path.join(bin, 'sbatch'), `#!/bin/sh\necho sbatch >> '${calls}'\necho 200\n`, { mode: 0o755 });
    const key = 'data/synthetic-s0-abc';
    writeFileSync(path.join(runDir, 'slurm/state.json'), JSON.stringify({ version: 1, seq: 1, jobs: [{ name: 'dcd-demo-data-0', job_id: '100', stages: [key], kind: 'data', script: '', submitted: 't', sbatch: [] }] }));
    const spec = { stage: 'data', label: 'synthetic-s0', version: 1, config: {}, deps: {}, run: async () => ({}) } as never;
    // The stage is complete once its task has ended, i.e. once the queue has been read: a plan made
    // before that (the old order) would not find it cached, and the task, no longer active, would be resubmitted.
    const plan = async () => {
      const ended = existsSync(calls) && readFileSync(calls, 'utf8').includes('squeue');
      writeFileSync(calls, 'plan\n', { flag: 'a' });
      return [{ spec, dir: path.join(runDir, 'data', 'synthetic-s0-abc'), cached: ended, reason: ended ? 'cached' : 'never ran' }];
    };
    const oldPath = process.env.PATH;
    process.env.PATH = `${bin}:${oldPath}`;
    try {
      const r = await runOnSlurm(plan, { runDir, cwd: dir, cliArgs: [], pollMs: 1, print: () => {} });
      expect(r.submittedJobs).toEqual([]);
      expect(r.tasks).toEqual([]);
    } finally {
      process.env.PATH = oldPath;
    }
    expect(readFileSync(calls, 'utf8').trim().split('\n')).toEqual(['squeue', 'plan']);
  });

  it('a job script gives native code the CPUs Slurm allotted (SLURM_CPUS_PER_TASK), unless DCD_NATIVE_THREADS is set', async () => {
    const { jobScript } = await import('../src/pipeline/executors/slurm.js');
    const dir = mkdtempSync(path.join(tmpdir(), 'slurm-script-'));
    const unit = { key: 'embed/x', id: 'embed/x', mode: 'whole' as const, after: [], depth: 0, spec: {} as never };
    // The "CLI" prints the thread count it would get.
    const script = path.join(dir, 'job.sh');
    writeFileSync(script, jobScript({ name: 'j', units: [unit], cwd: dir, cli: ['bash', '-c', 'echo "threads=${DCD_NATIVE_THREADS:-unset}"', 'cli'], rcDir: dir }));
    const threads = (env: NodeJS.ProcessEnv) => spawnSync('bash', [script], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8' }).stdout.trim();
    expect(threads({ SLURM_CPUS_PER_TASK: '3' })).toBe('threads=3');
    expect(threads({ SLURM_CPUS_PER_TASK: '3', DCD_NATIVE_THREADS: '5' })).toBe('threads=5');
    expect(threads({})).toBe('threads=unset');
    expect(readFileSync(path.join(dir, 'j_0.rc'), 'utf8').trim()).toBe('0');
  });

  it('executor.slurm resources are validated with the config; a misspelt stage kind names the nearest one', async () => {
    const { loadConfig } = await import('../src/core/config.js');
    const ok = loadConfig(DEMO, { set: ['executor.slurm.embed={gres: "gpu:1", cpus: 4, mem: 16G, time: "1:00:00"}'] });
    expect(ok.executor.slurm.embed).toEqual({ gres: 'gpu:1', cpus: 4, mem: '16G', time: '1:00:00' });
    expect(() => loadConfig(DEMO, { set: ['executor.slurm.embd={cpus: 4}'] })).toThrow(/executor\.slurm.*embed/s);
    expect(() => loadConfig(DEMO, { set: ['executor.slurm.train={cpus: "4"}'] })).toThrow(/executor\.slurm\.train\.cpus/);
  });

  it('--executor slurm without Slurm on PATH fails with a clear message', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'slurm-nopath-'));
    // PATH holds node alone.
    const bin = mkdtempSync(path.join(tmpdir(), 'slurm-bin-'));
    symlinkSync(process.execPath, path.join(bin, 'node'));
    const r = spawnSync(path.join(bin, 'node'), [CLI, 'run', DEMO, '--seeds', '0', '--executor', 'slurm'], { cwd, env: { ...process.env, PATH: bin }, encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/sbatch not found on PATH/);
  });
});
