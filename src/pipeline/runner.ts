/**
 * The generic stage runner: a DAG of stages, each `async (ctx) => outputs`, each
 * writing into its own folder `runs/<experiment>/<stage>/<label>-<key>/` with a
 * `manifest.json`. A stage's key hashes its own config slice, its version and its
 * dependencies' keys, so two runs (or two variants of a sweep) that need the same
 * stage share one folder. The manifest records the content hashes of the inputs
 * (dependencies' outputs, external files) and of the outputs; a stage is cached
 * when its manifest exists, its inputs are unchanged and its output files are all
 * present with their recorded content (size, then mtime, else sha256). The manifest is written last and atomically, so a stage killed at any
 * moment is simply not complete, and runs again (a train stage resumes from the
 * epoch checkpoint it keeps in its folder).
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, readFileSync, statSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { ArtifactError } from '../core/errors.js';
import { atomicWriteJson, ensureDir, readJsonIfComplete, removeStaleTemps, sha256, sha256File } from '../core/fsutil.js';
import { log, progress as makeProgress } from '../core/log.js';
import { DCD_VERSION } from '../core/version.js';
import { nativeAddon } from '../backends/addon.js';
import { canonicalJson } from '../core/config.js';
import { withRunLock } from './lock.js';
import { isShardable, mergeParts, runPart } from './shards.js';
import type { StageContext, StageManifest, StageOutputs, StageResult, StageSpec } from './stage-types.js';

/** Version of the manifest layout itself. */
export const MANIFEST_SCHEMA_VERSION = 1;

export type { StageContext, StageManifest, StageOutputs, StageResult, StageSpec } from './stage-types.js';

const keyCache = new WeakMap<StageSpec, string>();

/** The stage's identity: hash of kind, version, config slice and dependency keys. */
export function stageKey(spec: StageSpec): string {
  const hit = keyCache.get(spec);
  if (hit) return hit;
  const deps = Object.fromEntries(Object.entries(spec.deps).map(([a, d]) => [a, stageKey(d)]));
  const k = sha256(canonicalJson({ stage: spec.stage, version: spec.version, config: spec.config ?? null, deps, externals: spec.externals ?? [] })).slice(0, 10);
  keyCache.set(spec, k);
  return k;
}

/** A label as a portable folder name (`small_cnn:8-16` → `small_cnn_8-16`). */
export function safeLabel(label: string): string {
  return label.replace(/[^A-Za-z0-9._-]+/g, '_');
}

/** Folder of a stage under `runDir`. */
export function stageDir(runDir: string, spec: StageSpec): string {
  return path.join(runDir, spec.stage, `${safeLabel(spec.label)}-${stageKey(spec)}`);
}

/** Dependencies first, each stage once (by key), in a stable order. */
export function topoOrder(roots: readonly StageSpec[]): StageSpec[] {
  const seen = new Map<string, StageSpec>();
  const visiting = new Set<string>();
  const visit = (s: StageSpec) => {
    const id = stageId(s);
    if (seen.has(id)) return;
    if (visiting.has(id)) throw new ArtifactError(`stage graph has a cycle at ${id}`);
    visiting.add(id);
    for (const d of Object.values(s.deps)) visit(d);
    visiting.delete(id);
    seen.set(id, s);
  };
  for (const r of roots) visit(r);
  return [...seen.values()];
}

/**
 * Fingerprint of a file or folder outside the run: the sha256 of a file up to
 * 256 MiB, else its size and mtime; a folder by its mtime and entry count.
 */
export async function fingerprint(p: string): Promise<string> {
  if (!existsSync(p)) return 'missing';
  const st = statSync(p);
  if (st.isDirectory()) return `dir:${Math.floor(st.mtimeMs)}:${readdirSync(p).length}`;
  if (st.size <= 256 * 2 ** 20) return `sha256:${await sha256File(p)}`;
  return `stat:${st.size}:${Math.floor(st.mtimeMs)}`;
}

/** A stage folder's manifest; missing or unreadable: not complete, the stage reruns. */
function readStageManifest(dir: string): StageManifest | undefined {
  return readJsonIfComplete<StageManifest>(path.join(dir, 'manifest.json'));
}

/** Why a stage will run, or that it is cached. */
export interface StageStatus {
  spec: StageSpec;
  dir: string;
  cached: boolean;
  reason: string;
}

function resultOf(dir: string, manifest: StageManifest): StageResult {
  return {
    dir,
    manifest,
    file(name: string) {
      const o = manifest.outputs[name];
      if (!o) throw new ArtifactError(`${path.join(dir, 'manifest.json')}: stage ${manifest.stage} has no output "${name}" (has: ${Object.keys(manifest.outputs).join(', ')})`);
      return path.join(dir, o.file);
    },
  };
}

/** Unique id of a stage instance: `stage/label-key`. */
export function stageId(spec: StageSpec): string {
  return `${spec.stage}/${spec.label}-${stageKey(spec)}`;
}

async function inputHashes(spec: StageSpec, done: Map<string, StageResult>): Promise<Record<string, string> | undefined> {
  const out: Record<string, string> = {};
  for (const [alias, d] of Object.entries(spec.deps)) {
    const r = done.get(stageId(d));
    if (!r) return undefined;
    out[`stage:${alias}`] = r.manifest.outputs_hash;
  }
  for (const e of spec.externals ?? []) out[`file:${e}`] = await fingerprint(e);
  return out;
}

/**
 * Why a stage's recorded outputs no longer stand, or undefined when each is as written: same
 * size, and either the mtime recorded at write (a cheap check, for GB files) or, when the file
 * was touched since (mtime differs, or a manifest without one), the same sha256.
 */
async function outputsChanged(dir: string, m: StageManifest): Promise<string | undefined> {
  for (const [name, o] of Object.entries(m.outputs)) {
    const f = path.join(dir, o.file);
    if (!existsSync(f)) return `output ${name} (${o.file}) is missing`;
    const st = statSync(f);
    if (st.size !== o.bytes) return `output ${name} (${o.file}) changed size`;
    if (o.mtime_ms === st.mtimeMs) continue;
    if ((await sha256File(f)) !== o.sha256) return `output ${name} (${o.file}) changed content (sha256 differs from the manifest's)`;
  }
  return undefined;
}

function diffKeys(a: Record<string, string>, b: Record<string, string>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => a[k] !== b[k]);
}

/** Status of `spec` given the results of its dependencies (undefined = dependency not done yet). */
async function statusOf(runDir: string, spec: StageSpec, done: Map<string, StageResult>, willRun: Set<string>): Promise<StageStatus> {
  const dir = stageDir(runDir, spec);
  const m = readStageManifest(dir);
  const pending = Object.entries(spec.deps).filter(([, d]) => willRun.has(stageId(d)));
  if (!m) {
    const partial = existsSync(path.join(dir, 'started.json'));
    return { spec, dir, cached: false, reason: partial ? 'an earlier attempt was interrupted; resumes from its saved state' : neverRan(runDir, spec) };
  }
  if (m.schema_version !== MANIFEST_SCHEMA_VERSION || m.stage_version !== spec.version) return { spec, dir, cached: false, reason: 'stage version changed' };
  if (pending.length) return { spec, dir, cached: false, reason: `input ${pending.map(([a]) => a).join(', ')} is recomputed first` };
  const ih = await inputHashes(spec, done);
  if (!ih) return { spec, dir, cached: false, reason: 'an input is not available' };
  const changed = diffKeys(m.inputs, ih);
  if (changed.length) return { spec, dir, cached: false, reason: `input changed: ${changed.map((c) => c.replace(/^(stage|file):/, '')).join(', ')}` };
  const missing = await outputsChanged(dir, m);
  if (missing) return { spec, dir, cached: false, reason: missing };
  return { spec, dir, cached: true, reason: `cached (config ${m.config_hash.slice(0, 8)}, inputs unchanged, finished ${m.timings.finished})` };
}

/** Flattens a JSON value into dotted keys. */
function flatten(v: unknown, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else out[prefix || '(value)'] = JSON.stringify(v);
  return out;
}

/** Why a stage with no folder yet runs: new, or which config keys differ from an earlier run of the same label. */
function neverRan(runDir: string, spec: StageSpec): string {
  const parent = path.join(runDir, spec.stage);
  if (!existsSync(parent)) return 'never ran';
  let best: string[] | undefined;
  for (const d of readdirSync(parent)) {
    const lab = safeLabel(spec.label);
    if (!d.startsWith(`${lab}-`) || d.slice(lab.length + 1).includes('-')) continue;
    const m = readStageManifest(path.join(parent, d));
    if (!m) continue;
    const a = flatten(m.config);
    const b = flatten(spec.config ?? null);
    const changed = diffKeys(a, b).map((k) => `${k} ${a[k] ?? '(unset)'} → ${b[k] ?? '(unset)'}`);
    if (!best || changed.length < best.length) best = changed;
  }
  if (!best) return 'never ran';
  return best.length ? `config changed since the last run: ${best.join(', ')}` : 'an upstream stage changed since the last run';
}

/** Options of {@link runStages}. */
export interface RunStagesOptions {
  /** Only compute and return the plan. */
  dryRun?: boolean;
  /** Called with each stage's status before it runs (or is skipped). */
  onStatus?: (s: StageStatus, index: number, total: number) => void;
  /**
   * Run only these stage kinds (plus what they need), e.g. `['embed']`; with `shard`,
   * only every `count`-th of them starting at `index` (a job array splits the work).
   */
  only?: readonly string[];
  shard?: { index: number; count: number };
  /**
   * Run exactly these stages (ids as {@link stageId} prints them: `stage/label-key`);
   * everything they depend on must already be complete. One job of a cluster executor
   * runs one stage this way, after the jobs of its dependencies.
   */
  ids?: readonly string[];
  /** With one id in `ids`: run only row shard `index` of `count` of it (see shards.ts); no manifest. */
  part?: { index: number; count: number };
  /** With one id in `ids`: merge its `merge` row shards into the stage's folder and manifest. */
  merge?: number;
}

/** The stages `--only` / `--shard` keep: the chosen ones and everything they depend on. */
function selectStages(order: readonly StageSpec[], opts: RunStagesOptions): Set<string> | undefined {
  if (opts.ids?.length) {
    const known = new Set(order.map(stageId));
    const bad = opts.ids.filter((id) => !known.has(id));
    if (bad.length) throw new ArtifactError(`--stage ${bad.join(', ')}: no such stage in this config's graph (the config or its --set/--seeds differ from the ones the id came from; \`dcd run CFG --executor slurm --dry-run\` lists them, one per task)`);
  }
  if ((opts.part || opts.merge) && opts.ids?.length !== 1) throw new ArtifactError('--part and --merge need exactly one --stage');
  if (opts.part || opts.merge) {
    const spec = order.find((s) => stageId(s) === opts.ids![0])!;
    if (!isShardable(spec)) throw new ArtifactError(`${opts.ids![0]}: --part/--merge need a stage that splits into row shards; this one does not (it has no shards hook)`);
  }
  if (!opts.only?.length && !opts.shard && !opts.ids?.length) return undefined;
  if (opts.ids?.length && (opts.only?.length || opts.shard)) throw new ArtifactError('--stage cannot be combined with --only or --shard');
  const kinds = opts.only?.length ? new Set(opts.only) : undefined;
  const ids = opts.ids?.length ? new Set(opts.ids) : undefined;
  const chosen = ids
    ? order.filter((s) => ids.has(stageId(s)))
    : order.filter((s) => !kinds || kinds.has(s.stage)).filter((_, i) => !opts.shard || i % opts.shard.count === opts.shard.index);
  const keep = new Set<string>();
  const visit = (s: StageSpec) => {
    if (keep.has(stageId(s))) return;
    keep.add(stageId(s));
    Object.values(s.deps).forEach(visit);
  };
  chosen.forEach(visit);
  return keep;
}

/** What {@link runStages} returns. */
export interface RunStagesResult {
  plan: StageStatus[];
  results: Map<StageSpec, StageResult>;
  ran: StageSpec[];
}

/**
 * Runs every stage that `roots` need, skipping cached ones. With `dryRun`, returns
 * the plan without running anything: for each stage, whether it is cached and why
 * it runs otherwise (a stage downstream of one that runs is reported as such).
 */
export async function runStages(runDir: string, roots: readonly StageSpec[], opts: RunStagesOptions = {}): Promise<RunStagesResult> {
  // One writer per run folder. The tasks of a job array (--shard, --stage, --part) run beside each
  // other by design, on stages their driver hands out: their driver holds the lock.
  if (opts.dryRun || opts.shard || opts.ids?.length) return runStagesUnlocked(runDir, roots, opts);
  return withRunLock(runDir, lockCommand(), async () => {
    // what killed writers left (half files under temporary names), now that no other writer can be here
    const stale = await removeStaleTemps(runDir);
    if (stale.length) log.info(`removed ${stale.length} temporary file(s) left by an interrupted run (${stale.slice(0, 3).map((f) => path.relative(runDir, f)).join(', ')}${stale.length > 3 ? ', …' : ''})`);
    return runStagesUnlocked(runDir, roots, opts);
  });
}

/** What holds a lock, for the message of a process that finds it taken. */
export function lockCommand(): string {
  return ['dcd', ...process.argv.slice(2)].join(' ').slice(0, 200);
}

async function runStagesUnlocked(runDir: string, roots: readonly StageSpec[], opts: RunStagesOptions): Promise<RunStagesResult> {
  const keep = selectStages(topoOrder(roots), opts);
  const order = topoOrder(roots).filter((s) => !keep || keep.has(stageId(s)));
  const done = new Map<string, StageResult>();
  const willRun = new Set<string>();
  const plan: StageStatus[] = [];
  const ran: StageSpec[] = [];
  for (let i = 0; i < order.length; i++) {
    const spec = order[i]!;
    const id = stageId(spec);
    const st = await statusOf(runDir, spec, done, willRun);
    plan.push(st);
    opts.onStatus?.(st, i, order.length);
    if (st.cached) {
      done.set(id, resultOf(st.dir, readStageManifest(st.dir)!));
      continue;
    }
    willRun.add(id);
    if (opts.dryRun) continue;
    if (opts.ids?.length && !opts.ids.includes(id))
      throw new ArtifactError(`stage ${id} is not complete (${st.reason}), but --stage runs only ${opts.ids.join(', ')}: run its dependencies first (a cluster job starts after the jobs of its dependencies succeed)`);
    if (opts.part) {
      await runPartOf(runDir, spec, done, opts.part, i, order.length);
      ran.push(spec);
      continue;
    }
    const runSpec = opts.merge ? await mergeSpec(spec, done, opts.merge) : spec;
    done.set(id, await runOne(runDir, runSpec, done, i, order.length));
    willRun.delete(id);
    ran.push(spec);
  }
  // Every spec object reachable from the roots maps to its result (equal stages share one).
  const results = new Map<StageSpec, StageResult>();
  const visit = (s: StageSpec) => {
    if (results.has(s)) return;
    const r = done.get(stageId(s));
    if (r) results.set(s, r);
    Object.values(s.deps).forEach(visit);
  };
  roots.forEach(visit);
  return { plan, results, ran };
}

function stageContext(dir: string, spec: StageSpec, done: Map<string, StageResult>, name: string): StageContext {
  return {
    dir,
    inputs: Object.fromEntries(Object.entries(spec.deps).map(([a, d]) => [a, done.get(stageId(d))!])),
    progress: (n, unit) => makeProgress(name, n, unit),
    log: (msg) => log.info(`${name}: ${msg}`),
  };
}

/** The input hashes of a stage about to run, and their hash; `name` heads the error when an input has no result. */
async function inputsOf(spec: StageSpec, done: Map<string, StageResult>, name: string) {
  const inputs = await inputHashes(spec, done);
  if (!inputs) throw new ArtifactError(`${name}: an input stage has no result (internal ordering error)`);
  return { inputs, hash: sha256(canonicalJson(inputs)) };
}

/** Row shard `part` of a shardable stage, into its parts folder (the stage stays incomplete). */
async function runPartOf(runDir: string, spec: StageSpec, done: Map<string, StageResult>, part: { index: number; count: number }, index: number, total: number): Promise<void> {
  const dir = stageDir(runDir, spec);
  const name = `[${index + 1}/${total}] ${spec.stage}/${spec.label} (part ${part.index}/${part.count})`;
  const { hash } = await inputsOf(spec, done, name);
  await ensureDir(dir);
  log.info(`${name}: running`);
  const t0 = Date.now();
  await runPart(spec, stageContext(dir, spec, done, name), hash, part.index, part.count);
  log.info(`${name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

/** `spec` whose run merges its `count` row shards. */
async function mergeSpec(spec: StageSpec, done: Map<string, StageResult>, count: number): Promise<StageSpec> {
  const { hash } = await inputsOf(spec, done, stageId(spec));
  const merged: StageSpec = { ...spec, run: (ctx) => mergeParts(spec, ctx, hash, count) };
  keyCache.set(merged, stageKey(spec));
  return merged;
}

async function runOne(runDir: string, spec: StageSpec, done: Map<string, StageResult>, index: number, total: number): Promise<StageResult> {
  const dir = stageDir(runDir, spec);
  const name = `[${index + 1}/${total}] ${spec.stage}/${spec.label}`;
  const { inputs, hash: inputHash } = await inputsOf(spec, done, name);
  // A previous attempt with other inputs leaves state that must not be resumed.
  const startedFile = path.join(dir, 'started.json');
  if (existsSync(startedFile)) {
    let prev: { input_hash?: string } = {};
    try {
      prev = JSON.parse(readFileSync(startedFile, 'utf8'));
    } catch {
      /* unreadable: wipe */
    }
    if (prev.input_hash !== inputHash) await rm(dir, { recursive: true, force: true });
  }
  await rm(path.join(dir, 'manifest.json'), { force: true });
  await ensureDir(dir);
  const started = new Date();
  await atomicWriteJson(startedFile, { stage: spec.stage, label: spec.label, input_hash: inputHash, started: started.toISOString(), pid: process.pid });
  log.info(`${name}: running`);
  const out = await spec.run(stageContext(dir, spec, done, name));
  const outputs: StageManifest['outputs'] = {};
  for (const [k, rel] of Object.entries(out.files)) {
    const f = path.join(dir, rel);
    if (!existsSync(f)) throw new ArtifactError(`${name}: stage returned output ${k} = ${rel} but ${f} does not exist (stage bug)`);
    const st = statSync(f);
    outputs[k] = { file: rel, sha256: await sha256File(f), bytes: st.size, mtime_ms: st.mtimeMs };
  }
  const finished = new Date();
  const configHash = sha256(canonicalJson(spec.config ?? null));
  const manifest: StageManifest = {
    schema_version: MANIFEST_SCHEMA_VERSION,
    dcd_version: DCD_VERSION,
    stage: spec.stage,
    label: spec.label,
    key: stageKey(spec),
    stage_version: spec.version,
    config_hash: configHash,
    config: spec.config ?? null,
    inputs,
    input_hash: inputHash,
    outputs,
    outputs_hash: sha256(canonicalJson(Object.fromEntries(Object.entries(outputs).map(([k, o]) => [k, o.sha256])))),
    counts: out.counts ?? {},
    extra: out.extra ?? {},
    compute: computeRecord(),
    timings: { started: started.toISOString(), finished: finished.toISOString(), seconds: (finished.getTime() - started.getTime()) / 1000 },
  };
  await atomicWriteJson(path.join(dir, 'manifest.json'), manifest);
  log.info(`${name}: done in ${manifest.timings.seconds.toFixed(1)} s${Object.keys(manifest.counts).length ? ` (${Object.entries(manifest.counts).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`);
  return resultOf(dir, manifest);
}

/** The backend the stage ran on and, on `native`, its OpenMP thread count (see StageManifest.compute). */
function computeRecord(): StageManifest['compute'] {
  const backend = tf.getBackend() ?? 'none';
  return backend === 'native' ? { backend, threads: nativeAddon().getNumThreads() } : { backend };
}

/** The plan as text lines: `run    embed/dino-pool   never ran`. */
export function formatPlan(plan: readonly StageStatus[], runDir: string): string {
  const rows = plan.map((s) => [s.cached ? 'cached' : 'run', `${s.spec.stage}/${s.spec.label}`, s.cached ? path.relative(runDir, s.dir) : s.reason]);
  const w1 = Math.max(...rows.map((r) => r[1]!.length), 5);
  const nRun = plan.filter((s) => !s.cached).length;
  return [
    ...rows.map((r) => `${r[0]!.padEnd(7)}${r[1]!.padEnd(w1 + 2)}${r[2]}`),
    `${plan.length} stages: ${nRun} to run, ${plan.length - nRun} cached`,
  ].join('\n');
}
