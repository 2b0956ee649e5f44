/**
 * Downloading official weights into the cache: `$DCD_CACHE/weights/<file>` (default
 * `$XDG_CACHE_HOME/dcd` or `~/.cache/dcd`). Downloads go to `<file>.part`, resume with
 * an HTTP Range request, and are renamed into place only after the sha256 checks out.
 */
import { createWriteStream, existsSync, statSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, DataError, describeError } from '../core/errors.js';
import { ensureDir, sha256File } from '../core/fsutil.js';
import { log, progress } from '../core/log.js';
import { getModelSpec } from './registry.js';

/** The cache folder: `$DCD_CACHE`, else `$XDG_CACHE_HOME/dcd`, else `~/.cache/dcd`. */
export function cacheDir(): string {
  if (process.env.DCD_CACHE) return path.resolve(process.env.DCD_CACHE);
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg ? path.resolve(xdg) : path.join(os.homedir(), '.cache'), 'dcd');
}

/** Options of {@link fetchWeights}. */
export interface FetchOptions {
  /** Download from here instead of the registry URL. */
  url?: string;
  /** Expected full sha256 (overrides the registry's). */
  sha256?: string;
  /** Cache folder (default {@link cacheDir}). */
  cache?: string;
}

/** Result of {@link fetchWeights}. */
export interface FetchResult {
  file: string;
  sha256: string;
  /** How the hash was checked. */
  verified: 'sha256' | 'sha256-prefix' | 'none';
  /** False when the file was already in the cache. */
  downloaded: boolean;
  /** Bytes that a resumed download did not have to fetch again. */
  resumedFrom: number;
}

function checkHash(file: string, got: string, full?: string, prefix?: string): FetchResult['verified'] {
  if (full) {
    if (got !== full.toLowerCase()) throw new DataError(`${file}: sha256 ${got} does not match the expected ${full}; the download is corrupt (it was removed; run the command again)`);
    return 'sha256';
  }
  if (prefix) {
    if (!got.startsWith(prefix.toLowerCase()))
      throw new DataError(`${file}: sha256 ${got} does not start with the published prefix ${prefix}; the download is corrupt (it was removed; run the command again)`);
    return 'sha256-prefix';
  }
  return 'none';
}

/**
 * Downloads the official weights of registry model `name` (or `opts.url`) into the
 * cache, resuming a partial download, and verifies the sha256 (full, or the published
 * prefix). A file already cached is verified and returned without downloading.
 * @throws ConfigError when no URL is known; DataError on HTTP failure or hash mismatch
 */
export async function fetchWeights(name: string, opts: FetchOptions = {}): Promise<FetchResult> {
  const spec = getModelSpec(name);
  const w = spec.weights;
  const url = opts.url ?? w?.url;
  if (!url) throw new ConfigError(`${name}: no official download URL is recorded; give one with --url`);
  const fileName = w?.file ?? (path.basename(new URL(url).pathname) || `${name}.bin`);
  const dir = path.join(opts.cache ?? cacheDir(), 'weights');
  await ensureDir(dir);
  const final = path.join(dir, fileName);
  const full = opts.sha256 ?? w?.sha256;
  const prefix = full ? undefined : w?.sha256Prefix;
  if (existsSync(final)) {
    const got = await sha256File(final);
    return { file: final, sha256: got, verified: checkHash(final, got, full, prefix), downloaded: false, resumedFrom: 0 };
  }
  const part = `${final}.part`;
  let have = existsSync(part) ? statSync(part).size : 0;
  let res: Response;
  try {
    res = await fetch(url, { headers: have > 0 ? { Range: `bytes=${have}-` } : {}, redirect: 'follow' });
  } catch (e) {
    throw new DataError(`${url}: download failed (${describeError(e)}); check the network and run again (a partial download resumes)`);
  }
  if (res.status === 416 && have > 0) {
    // The partial file already holds everything.
  } else if (res.status === 206 && have > 0) {
    log.info(`resuming ${fileName} at ${have} bytes`);
  } else if (res.status === 200) {
    have = 0; // server ignored the Range: start over
  } else {
    throw new DataError(`${url}: HTTP ${res.status} ${res.statusText}; check the URL (give another with --url)`);
  }
  const resumedFrom = have;
  if (res.status !== 416 && res.body) {
    const len = Number(res.headers.get('content-length') ?? 0);
    const bar = progress(`fetch ${fileName}`, Math.max(1, Math.round((have + len) / 1e6)), 'MB');
    bar.tick(Math.round(have / 1e6));
    const out = createWriteStream(part, { flags: have > 0 ? 'a' : 'w' });
    let mb = Math.round(have / 1e6);
    let bytes = have;
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
        bytes += chunk.length;
        const now = Math.round(bytes / 1e6);
        if (now > mb) bar.tick(now - mb), (mb = now);
      }
    } catch (e) {
      await new Promise<void>((r) => out.end(() => r()));
      bar.stop();
      throw new DataError(`${url}: download interrupted after ${bytes} bytes (${describeError(e)}); run the command again to resume`);
    }
    await new Promise<void>((r, j) => out.end((err?: Error | null) => (err ? j(err) : r())));
    bar.stop();
  }
  const got = await sha256File(part);
  let verified: FetchResult['verified'];
  try {
    verified = checkHash(final, got, full, prefix);
  } catch (e) {
    await rm(part, { force: true });
    throw e;
  }
  await rename(part, final);
  if (verified === 'none') log.warn(`${fileName}: no published sha256 to check against; its sha256 is ${got}`);
  return { file: final, sha256: got, verified, downloaded: true, resumedFrom };
}
