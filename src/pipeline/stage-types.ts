/**
 * The types a stage and the runner share (re-exported by runner.ts): what a stage is,
 * what it receives and returns, and its manifest. In a file of their own so that the
 * runner and the modules it calls (shards.ts) can both name them without an import circle.
 */
import type { Progress } from '../core/log.js';

/** What a stage returns: its files (relative to its folder), row counts, small JSON results. */
export interface StageOutputs {
  files: Record<string, string>;
  counts?: Record<string, number>;
  /** Small results other stages read without opening files (e.g. metrics). */
  extra?: Record<string, unknown>;
}

/** A finished stage as downstream stages see it. */
export interface StageResult {
  dir: string;
  manifest: StageManifest;
  /** Absolute path of output `name`. */
  file(name: string): string;
}

/** What a stage function receives. */
export interface StageContext {
  /** The stage's own folder (exists; may hold a previous attempt's resumable state). */
  dir: string;
  /** Results of the stage's dependencies, by the alias the stage gave them. */
  inputs: Record<string, StageResult>;
  /** A progress bar labelled with the stage, showing items done, rate and ETA. */
  progress(total: number, unit?: string): Progress;
  /** Logs a line prefixed with the stage. */
  log(msg: string): void;
}

/** One node of the DAG. */
export interface StageSpec {
  /** Stage kind: failures, embed, filter, select, train, evaluate, report, ... */
  stage: string;
  /** Human-readable instance name (folder prefix), e.g. `dino_vits16-pool`. */
  label: string;
  /** Bump when the stage's outputs change meaning; part of the key. */
  version: number;
  /** The stage's own config slice (hashed; recorded in the manifest). */
  config: unknown;
  /** Dependencies by alias. */
  deps: Record<string, StageSpec>;
  /** Files or folders outside the run folder that the stage reads (fingerprinted). */
  externals?: readonly string[];
  /**
   * Row shards of this stage are contiguous blocks of whole multiples of this many rows
   * (its batch size), so that every batch a part computes is a batch of the unsharded run
   * (batched kernels may round differently for other batch shapes). Default: rows j mod n.
   */
  shardAlign?: number;
  run(ctx: StageContext): Promise<StageOutputs>;
  /**
   * Optional: the stage's work split into row shards for cluster job arrays (see
   * shards.ts). `part` writes shard `index` of `count` into `dir` and returns its files
   * (none: the part had no rows); `merge` turns the parts (in index order: folder and files)
   * into the stage's outputs, identical to `run`'s.
   */
  shards?: {
    part(ctx: StageContext, dir: string, index: number, count: number): Promise<Record<string, string>>;
    merge(ctx: StageContext, parts: readonly { dir: string; outputs: Record<string, string> }[]): Promise<StageOutputs>;
  };
}

/** The manifest.json of a completed stage. */
export interface StageManifest {
  schema_version: number;
  dcd_version: string;
  stage: string;
  label: string;
  key: string;
  stage_version: number;
  config_hash: string;
  config: unknown;
  inputs: Record<string, string>;
  input_hash: string;
  /** Per output: its sha256 and size, and its mtime when written (a later check rehashes only when it differs). */
  outputs: Record<string, { file: string; sha256: string; bytes: number; mtime_ms?: number }>;
  outputs_hash: string;
  counts: Record<string, number>;
  extra: Record<string, unknown>;
  /**
   * Where the stage computed: the tfjs backend and, on `native`, its thread count. Results are
   * bit-identical only between runs with the same of both (oneDNN splits reductions by thread),
   * so a Slurm job on a node with other CPUs gives results within float rounding, not identical.
   */
  compute?: { backend: string; threads?: number };
  timings: { started: string; finished: string; seconds: number };
}
