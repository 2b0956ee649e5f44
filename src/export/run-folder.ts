/**
 * Finding a finished run's stages from its folder alone (no config, no data files needed):
 * every stage folder holds a `manifest.json` that names its inputs by their outputs' hash,
 * so the report a run printed leads to its rows' evaluations, their selections, the failure
 * sets and the data draw.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ArtifactError } from '../core/errors.js';

/** The fields of a stage's manifest.json the export reads. */
export interface StageManifest {
  stage: string;
  label: string;
  config: Record<string, unknown>;
  inputs: Record<string, string>;
  outputs: Record<string, { file: string }>;
  outputs_hash: string;
  timings?: { finished?: string };
}

/** A finished stage: its folder and manifest. */
export interface StageRecord {
  dir: string;
  manifest: StageManifest;
  /** Absolute path of output `name`; throws naming the stage when it has none. */
  file(name: string): string;
  /** The stage this one read under `alias` (`stage:<alias>` in its inputs), if it is in the run folder. */
  input(alias: string): StageRecord | undefined;
}

/** One row of the report the run printed. */
export interface ReportRow {
  method: string;
  seed: number;
  variant: string;
  evaluate: StageRecord;
}

/** A run folder read back: the report's rows and every finished stage by outputs hash. */
export interface RunFolder {
  runDir: string;
  report: StageRecord;
  rows: ReportRow[];
}

/** Reads every finished stage under `runDir` (folders `<stage>/<label>-<key>/manifest.json`). */
function readStages(runDir: string): StageRecord[] {
  const out: StageRecord[] = [];
  const byHash = new Map<string, StageRecord>();
  for (const kind of readdirSync(runDir, { withFileTypes: true })) {
    if (!kind.isDirectory()) continue;
    for (const inst of readdirSync(path.join(runDir, kind.name), { withFileTypes: true })) {
      const dir = path.join(runDir, kind.name, inst.name);
      const mf = path.join(dir, 'manifest.json');
      if (!inst.isDirectory() || !existsSync(mf)) continue;
      let manifest: StageManifest;
      try {
        manifest = JSON.parse(readFileSync(mf, 'utf8')) as StageManifest;
      } catch (e) {
        throw new ArtifactError(`${mf}: not readable JSON (${(e as Error).message}); delete the stage folder and rerun dcd run to write it again`);
      }
      if (typeof manifest.outputs_hash !== 'string' || typeof manifest.stage !== 'string') continue;
      const rec: StageRecord = {
        dir,
        manifest,
        file(name) {
          const o = manifest.outputs?.[name];
          if (!o) throw new ArtifactError(`${mf}: stage ${manifest.stage}/${manifest.label} has no output "${name}" (has: ${Object.keys(manifest.outputs ?? {}).join(', ')}); was the run written by an older dcd? rerun dcd run`);
          return path.join(dir, o.file);
        },
        input(alias) {
          const h = manifest.inputs?.[`stage:${alias}`];
          return h === undefined ? undefined : byHash.get(h);
        },
      };
      out.push(rec);
      byHash.set(manifest.outputs_hash, rec);
    }
  }
  return out;
}

/**
 * Opens the run folder `runDir` (e.g. `runs/demo`): the report stage whose report.md is the
 * run's own `report.md` (or `sweep-report.md`), else the most recently finished report.
 */
export function openRunFolder(runDir: string): RunFolder {
  if (!existsSync(runDir)) throw new ArtifactError(`${runDir}: no such run folder; give the folder dcd run wrote (runs/<experiment.name>, printed at the end of the run)`);
  const stages = readStages(runDir);
  const reports = stages.filter((s) => s.manifest.stage === 'report');
  if (!reports.length)
    throw new ArtifactError(`${runDir}: no finished report stage (report/*/manifest.json); run \`dcd run CONFIG\` to the end first (a run with --only stops before the report)`);
  const printed = ['report.md', 'sweep-report.md'].map((f) => path.join(runDir, f)).filter(existsSync).map((f) => readFileSync(f, 'utf8'));
  const own = (r: StageRecord) => {
    const f = path.join(r.dir, 'report.md');
    return existsSync(f) && printed.includes(readFileSync(f, 'utf8'));
  };
  const finished = (r: StageRecord) => r.manifest.timings?.finished ?? '';
  const report = reports.find(own) ?? [...reports].sort((a, b) => finished(b).localeCompare(finished(a)))[0]!;
  const cfgRows = (report.manifest.config.rows ?? []) as { method: string; seed: number; variant?: string }[];
  const rows = cfgRows.map((r, i) => {
    const evaluate = report.input(`row${i}`);
    if (!evaluate) throw new ArtifactError(`${report.dir}: its row ${i} (${r.method}, seed ${r.seed}) has no finished evaluate stage in ${runDir}; rerun dcd run to complete the run`);
    return { method: r.method, seed: r.seed, variant: r.variant ?? '', evaluate };
  });
  return { runDir, report, rows };
}
