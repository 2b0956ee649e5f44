import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile, open } from 'node:fs/promises';
import path from 'node:path';

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
  const tmp = tempPathFor(finalPath);
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, finalPath);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
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

/** Writes a file non-atomically (for scratch outputs only). */
export { writeFile };
