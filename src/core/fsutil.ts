import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile, open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ArtifactError } from './errors.js';

/** True for "no space left on device" and "disk quota exceeded". */
export function isDiskFull(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** What a full disk while writing `file` tells the user (the CLI prints it for writers that throw the raw error). */
export function diskFullMessage(file: string | undefined, e: unknown): string {
  const what = (e as NodeJS.ErrnoException).code === 'EDQUOT' ? 'disk quota exceeded' : 'no space left on device';
  return `${file ?? 'writing an output'}: ${what}; nothing was written under that name. Free space (or point the output elsewhere) and rerun the same command: completed stages and files are kept, and it resumes where it stopped`;
}

/** `e` as an ArtifactError naming `file` when the disk is full; else `e` itself. */
export function diskFullAware(file: string, e: unknown): unknown {
  return isDiskFull(e) ? new ArtifactError(diskFullMessage(file, e), { cause: e }) : e;
}

/** Creates `dir` and its parents. */
export async function ensureDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
}

/** A temporary name beside `finalPath`, on the same file system so rename is atomic. */
export function tempPathFor(finalPath: string): string {
  return path.join(path.dirname(finalPath), `.${path.basename(finalPath)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Writes a file so that it appears only when complete: data goes to a temporary file
 * in the same folder, is fsynced, then renamed over `finalPath`. A killed process
 * leaves at most a `.tmp` file, never a partial file under the final name.
 */
export async function atomicWriteFile(finalPath: string, data: string | Uint8Array): Promise<void> {
  await ensureDir(path.dirname(finalPath));
  await commitTemp(tempPathFor(finalPath), finalPath, (fh) => fh.writeFile(data));
}

/**
 * The last step of an atomic write: `write` (if given) into `tmp`, fsync it, rename it over
 * `finalPath` (data on disk before the name appears). On any error `tmp` is removed and the
 * error rethrown, a full disk as an ArtifactError naming `finalPath`.
 */
export async function commitTemp(tmp: string, finalPath: string, write?: (fh: FileHandle) => Promise<void>): Promise<void> {
  try {
    const fh = await open(tmp, write ? 'w' : 'r+');
    try {
      await write?.(fh);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, finalPath);
  } catch (e) {
    await rm(tmp, { force: true });
    throw diskFullAware(finalPath, e);
  }
}

/** Writes JSON (2-space indent, trailing newline) atomically. */
export async function atomicWriteJson(finalPath: string, value: unknown): Promise<void> {
  await atomicWriteFile(finalPath, JSON.stringify(value, null, 2) + '\n');
}

/**
 * The JSON of a marker file written last (a stage's manifest, a shard's part record), or
 * undefined when it is missing or unreadable: either way the work it marks is not complete.
 */
export function readJsonIfComplete<T>(file: string): T | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Hex sha256 of a file, streamed. */
export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  await new Promise<void>((resolve, reject) => {
    createReadStream(file)
      .on('data', (c) => h.update(c))
      .on('end', () => resolve())
      .on('error', reject);
  });
  return h.digest('hex');
}

/** Hex sha256 of bytes or a string. */
export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Names of the temporary files and folders dcd's writers leave when killed: {@link tempPathFor}'s
 * `.<name>.<pid>.<hex>.tmp`, and the trainer's `<name>.tmp-<pid>` and `<name>.<pid>.tmp`.
 */
const TEMP_NAME = /^\..+\.\d+\.[0-9a-f]{8}\.tmp$|\.tmp-\d+$|\.\d+\.tmp$/;

/**
 * Removes the temporary files and folders under `root` that earlier, killed writers left
 * (see {@link TEMP_NAME}), except this process's own. Call it only while holding `root`
 * exclusively (the run folder's lock): another live writer's temporaries would go too.
 * @returns the paths removed
 */
export async function removeStaleTemps(root: string): Promise<string[]> {
  const removed: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (TEMP_NAME.test(e.name) && !e.name.includes(`.${process.pid}.`) && !e.name.endsWith(`.tmp-${process.pid}`)) {
        await rm(p, { recursive: true, force: true });
        removed.push(p);
      } else if (e.isDirectory() && depth < 8) await walk(p, depth + 1);
    }
  };
  await walk(root, 0);
  return removed;
}

/** Writes a file non-atomically (for scratch outputs only). */
export { writeFile };
