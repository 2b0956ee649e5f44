/**
 * An exclusive lock on a run folder: `<runDir>/.dcd.lock`, a small JSON file naming the
 * holder (pid, host, its start time, the command). Two `dcd run`s into one folder would
 * resume from each other's live checkpoints and write the same stage folders at once; the
 * second is refused instead, with the holder named.
 *
 * - Created with O_EXCL, so of two processes starting together exactly one gets it.
 * - Released when the holder finishes (also on an error, and at process exit).
 * - A lock left by a process that is gone (killed: same host, and that pid no longer runs, or now
 *   runs another program: /proc start time differs) is taken over, with a note. One from another
 *   host cannot be checked from here: the error says how to remove it.
 * - Re-entrant within a process (the Slurm driver takes it, then the runner it calls).
 */
import { closeSync, existsSync, linkSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { ArtifactError } from '../core/errors.js';
import { ensureDir } from '../core/fsutil.js';
import { log } from '../core/log.js';

/** File name of the lock inside a run folder. */
export const LOCK_FILE = '.dcd.lock';

/** What the lock file records. */
export interface LockHolder {
  pid: number;
  host: string;
  /** The holder's start time in clock ticks since boot (/proc/PID/stat field 22); null off Linux. */
  start_ticks: number | null;
  since: string;
  command: string;
}

/** A held lock; `release()` is idempotent. */
export interface RunLock {
  file: string;
  release(): void;
}

const held = new Map<string, { count: number; holder: LockHolder }>();
let exitHook = false;

/** Clock-tick start time of process `pid` (null when unknown: not Linux, or no such process). */
function startTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may hold spaces and parentheses: count fields after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(fields[19]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readHolder(file: string): LockHolder | null {
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as LockHolder;
    return typeof h.pid === 'number' && typeof h.host === 'string' ? h : null;
  } catch {
    return null;
  }
}

/** Why `h` no longer holds its lock, or null when it may still (or it runs elsewhere). */
function staleReason(h: LockHolder | null): string | null {
  if (!h) return 'its lock file is unreadable (a holder killed while writing it)';
  if (h.host !== hostname()) return null;
  if (!alive(h.pid)) return `process ${h.pid} on ${h.host} is gone`;
  const now = startTicks(h.pid);
  if (h.start_ticks !== null && now !== null && now !== h.start_ticks) return `process ${h.pid} on ${h.host} is gone (the pid now belongs to another process)`;
  return null;
}

function describe(h: LockHolder): string {
  return `process ${h.pid} on ${h.host} (${h.command}, since ${h.since})`;
}

/** Writes `holder` to `file` only if no file is there (O_EXCL); false when one is. */
function createExclusive(file: string, holder: LockHolder): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, JSON.stringify(holder) + '\n');
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * Takes the lock of `runDir` for this process, or throws an ArtifactError naming the holder.
 * @param command what holds it, for the other side's message (e.g. `dcd run configs/demo.yaml`)
 */
export async function lockRunDir(runDir: string, command: string): Promise<RunLock> {
  const file = path.join(path.resolve(runDir), LOCK_FILE);
  const mine = held.get(file);
  if (mine) {
    mine.count++;
    return releaser(file);
  }
  await ensureDir(path.dirname(file));
  const holder: LockHolder = { pid: process.pid, host: hostname(), start_ticks: startTicks(process.pid), since: new Date().toISOString(), command };
  for (let attempt = 0; ; attempt++) {
    if (createExclusive(file, holder)) break;
    const other = readHolder(file);
    const why = staleReason(other);
    if (!why || attempt >= 3) {
      throw new ArtifactError(
        other
          ? `${path.dirname(file)}: run folder in use by ${describe(other)}; wait for it to finish (a rerun then resumes), or use another experiment.out. If that process is gone (another host cannot be checked from here), delete ${file}`
          : `${file}: could not take the run folder's lock; delete the file if no dcd process uses ${path.dirname(file)}`,
      );
    }
    // Take over a stale lock: move it aside (of two takers only one rename succeeds), check that what
    // was moved is the stale holder's, and create ours. A live lock moved by mistake is put back.
    const aside = `${file}.stale.${process.pid}`;
    try {
      renameSync(file, aside);
    } catch {
      continue; // another process moved it first: try again
    }
    const moved = readHolder(aside);
    if (moved && other && (moved.pid !== other.pid || moved.since !== other.since)) {
      try {
        linkSync(aside, file);
      } catch {
        /* a third process created one meanwhile: it holds the lock */
      }
      rmSync(aside, { force: true });
      continue;
    }
    rmSync(aside, { force: true });
    log.warn(`${path.dirname(file)}: took over the run folder's lock (${why}); its stages resume where they stopped`);
  }
  held.set(file, { count: 1, holder });
  if (!exitHook) {
    exitHook = true;
    // a process that exits while holding a lock (an error thrown past every finally, process.exit) releases it
    process.on('exit', () => {
      for (const f of held.keys()) removeIfMine(f);
    });
  }
  return releaser(file);
}

function removeIfMine(file: string): void {
  const h = readHolder(file);
  if (h && h.pid === process.pid && h.host === hostname()) rmSync(file, { force: true });
}

function releaser(file: string): RunLock {
  let done = false;
  return {
    file,
    release() {
      if (done) return;
      done = true;
      const e = held.get(file);
      if (!e || --e.count > 0) return;
      held.delete(file);
      if (existsSync(file)) removeIfMine(file);
    },
  };
}

/** Runs `fn` holding `runDir`'s lock (see {@link lockRunDir}). */
export async function withRunLock<T>(runDir: string, command: string, fn: () => Promise<T>): Promise<T> {
  const lock = await lockRunDir(runDir, command);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
