/**
 * The web-pool downloader. Fetches URL lists with bounded concurrency (overall and per
 * host), timeouts (whole request and stalled body), retries with exponential backoff,
 * a size cap, and a content check on the bytes themselves (magic numbers, never the
 * Content-Type header). Files are named by their sha256 inside the output folder, so a
 * URL can never make dcd write elsewhere, and identical content is stored once.
 * A journal (`downloads.jsonl`) makes a rerun fetch only what is still missing.
 */
import { appendFile, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import pLimit from 'p-limit';
import sharp from 'sharp';
import { ConfigError, describeError } from '../core/errors.js';
import { ensureDir, sha256, tempPathFor } from '../core/fsutil.js';
import { log, progress } from '../core/log.js';
import { writeManifest, type ManifestRow } from './manifest.js';
import { DEFAULT_PIXEL_LIMIT } from './images.js';

/** Options of {@link downloadPool}. */
export interface DownloadOptions {
  /** Downloads in flight overall. Default 16. */
  concurrency?: number;
  /** Downloads in flight per host. Default 4. */
  perHost?: number;
  /** Whole-request limit in ms (headers and body). Default 30 000. */
  timeoutMs?: number;
  /** Abort when no body bytes arrive for this long, ms. Default 10 000. */
  stallMs?: number;
  /** Attempts per URL for transient failures (network, timeout, 429, 5xx). Default 3. */
  retries?: number;
  /** First backoff in ms, doubled each retry (plus jitter). Default 500. */
  backoffMs?: number;
  /** Largest body accepted, bytes. Default 20 MiB. */
  maxBytes?: number;
  /** Redirects followed at most. Default 5. */
  maxRedirects?: number;
  /** Refetch URLs whose earlier failure was permanent (404, not an image, too large). */
  retryFailed?: boolean;
  /** User-Agent header. */
  userAgent?: string;
  /** Images with more pixels are refused as `too-many-pixels` (a decompression bomb). Default 100M, as the decoder's. */
  maxPixels?: number;
}

/** Outcome of one URL. `ok` and `duplicate` have a file; the rest explain why not. */
export type DownloadStatus = 'ok' | 'duplicate' | 'not-image' | 'corrupt-image' | 'too-many-pixels' | 'too-large' | 'timeout' | 'stalled' | 'network' | 'bad-url' | 'too-many-redirects' | `http-${number}`;

/** One journal record. */
export interface DownloadRecord {
  url: string;
  status: DownloadStatus;
  /** Relative to the output folder, for ok and duplicate. */
  file?: string;
  sha256?: string;
  bytes?: number;
  format?: string;
  attempts: number;
  error?: string;
}

/**
 * Decodes every pixel of `body` (to a 16² thumbnail: the decoder reads the whole image), so a
 * truncated or corrupt image, or one past `maxPixels` (a pixel bomb: its header is read
 * first, nothing is allocated for it), is recorded as such rather than as `ok`.
 */
async function checkDecodes(body: Uint8Array, maxPixels: number): Promise<void> {
  try {
    await sharp(body, { limitInputPixels: maxPixels, failOn: 'error' }).resize(16, 16, { fit: 'fill' }).raw().toBuffer();
  } catch (e) {
    const msg = describeError(e);
    if (/pixel limit/i.test(msg)) throw new Fail('too-many-pixels', `image has more than ${maxPixels} pixels (a decompression bomb?)`);
    throw new Fail('corrupt-image', `image does not decode (${msg.split('\n')[0]}): truncated or corrupt`);
  }
}

/** Statuses worth another try on a later run (the server or the network may recover). */
export function isTransient(s: DownloadStatus): boolean {
  return s === 'timeout' || s === 'stalled' || s === 'network' || s === 'http-429' || /^http-5\d\d$/.test(s);
}

/** The image format of `b` from its first bytes, or undefined when it is not an image dcd decodes. */
export function sniffImage(b: Uint8Array): 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | 'bmp' | undefined {
  const at = (i: number, ...bytes: number[]) => bytes.every((x, k) => b[i + k] === x);
  if (at(0, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png';
  if (at(0, 0x47, 0x49, 0x46, 0x38) && (b[4] === 0x37 || b[4] === 0x39) && b[5] === 0x61) return 'gif';
  if (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) return 'webp';
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return 'tiff';
  if (at(0, 0x42, 0x4d) && b.length > 26) return 'bmp';
  return undefined;
}

const EXT: Record<string, string> = { jpeg: 'jpg', png: 'png', gif: 'gif', webp: 'webp', tiff: 'tif', bmp: 'bmp' };

class Fail extends Error {
  constructor(
    readonly status: DownloadStatus,
    message: string,
  ) {
    super(message);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fetches one URL into memory, following redirects by hand (bounded, http(s) only), with the size cap and stall timer. */
async function fetchOnce(url: string, o: Required<Omit<DownloadOptions, 'retryFailed'>>): Promise<Uint8Array> {
  const ctl = new AbortController();
  let why: 'timeout' | 'stalled' | undefined;
  const total = setTimeout(() => {
    why = 'timeout';
    ctl.abort();
  }, o.timeoutMs);
  let stall: NodeJS.Timeout | undefined;
  const armStall = () => {
    clearTimeout(stall);
    stall = setTimeout(() => {
      why = 'stalled';
      ctl.abort();
    }, o.stallMs);
  };
  try {
    let current = url;
    for (let hop = 0; ; hop++) {
      let u: URL;
      try {
        u = new URL(current);
      } catch {
        throw new Fail('bad-url', `not a URL: ${current}`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Fail('bad-url', `only http(s) is fetched, not ${u.protocol}`);
      let res: Response;
      try {
        res = await fetch(u, { redirect: 'manual', signal: ctl.signal, headers: { 'user-agent': o.userAgent, accept: 'image/*' } });
      } catch (e) {
        if (why) throw new Fail(why, why === 'timeout' ? `no answer within ${o.timeoutMs} ms` : `stalled`);
        throw new Fail('network', describeError((e as Error).cause ?? e));
      }
      if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
        await res.body?.cancel().catch(() => undefined);
        if (hop >= o.maxRedirects) throw new Fail('too-many-redirects', `more than ${o.maxRedirects} redirects`);
        current = new URL(res.headers.get('location')!, u).toString();
        continue;
      }
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        throw new Fail(`http-${res.status}`, `HTTP ${res.status}`);
      }
      const len = Number(res.headers.get('content-length'));
      if (Number.isFinite(len) && len > o.maxBytes) {
        await res.body?.cancel().catch(() => undefined);
        throw new Fail('too-large', `Content-Length ${len} > cap ${o.maxBytes}`);
      }
      if (!res.body) return new Uint8Array();
      const chunks: Uint8Array[] = [];
      let n = 0;
      const reader = res.body.getReader();
      armStall();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          armStall();
          n += value.length;
          if (n > o.maxBytes) {
            ctl.abort();
            throw new Fail('too-large', `body over the cap of ${o.maxBytes} bytes`);
          }
          chunks.push(value);
        }
      } catch (e) {
        if (e instanceof Fail) throw e;
        if (why) throw new Fail(why, why === 'timeout' ? `not complete within ${o.timeoutMs} ms` : `no bytes for ${o.stallMs} ms`);
        throw new Fail('network', describeError((e as Error).cause ?? e));
      }
      const out = new Uint8Array(n);
      let off = 0;
      for (const c of chunks) {
        out.set(c, off);
        off += c.length;
      }
      return out;
    }
  } finally {
    clearTimeout(total);
    clearTimeout(stall);
  }
}

/** Result of {@link downloadPool}. */
export interface DownloadResult {
  /** One record per distinct input URL, in input order: status, file, sha256, attempts. */
  records: DownloadRecord[];
  /** Counts per status. */
  counts: Record<string, number>;
  /** URLs fetched by this run (the rest came from the journal). */
  fetched: number;
  /** The manifest of usable images (`pool.arrow`) and of every URL (`downloads.arrow`). */
  poolManifest: string;
  downloadsManifest: string;
}

/**
 * Downloads the `url` of every row into `outDir/images/<sha256[0:2]>/<sha256>.<ext>` and
 * writes two manifests into `outDir`: `downloads.arrow` (every URL, with its status in
 * `context`) and `pool.arrow` (one row per distinct image that arrived, path filled,
 * first URL wins for identical content). Rows keep their weak label and query.
 *
 * Resumable: each finished URL is appended to `outDir/downloads.jsonl`; a rerun skips
 * URLs already there, except transient failures (timeouts, network, 429, 5xx), and
 * permanent failures too with `retryFailed`.
 */
export async function downloadPool(rows: readonly ManifestRow[], outDir: string, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const o = {
    concurrency: opts.concurrency ?? 16,
    perHost: opts.perHost ?? 4,
    timeoutMs: opts.timeoutMs ?? 30_000,
    stallMs: opts.stallMs ?? 10_000,
    retries: opts.retries ?? 3,
    backoffMs: opts.backoffMs ?? 500,
    maxBytes: opts.maxBytes ?? 20 * 1024 * 1024,
    maxRedirects: opts.maxRedirects ?? 5,
    userAgent: opts.userAgent ?? 'dcd-pool-downloader/0.1 (research; data-centric debugging)',
    maxPixels: opts.maxPixels ?? DEFAULT_PIXEL_LIMIT,
  };
  for (const [k, v] of Object.entries(o)) if (typeof v === 'number' && !(v >= 0)) throw new ConfigError(`download option ${k}: expected a number ≥ 0, received ${v}`);
  if (o.concurrency < 1 || o.perHost < 1 || o.retries < 1) throw new ConfigError('download options concurrency, perHost and retries must be ≥ 1');
  const urls = [...new Set(rows.map((r) => r.url).filter((u): u is string => !!u))];
  if (urls.length < rows.filter((r) => r.url).length) {
    const labels = new Map<string, Set<number>>();
    for (const r of rows) if (r.url) (labels.get(r.url) ?? labels.set(r.url, new Set()).get(r.url)!).add(r.weak_label ?? r.label);
    const ambiguous = [...labels.values()].filter((s) => s.size > 1).length;
    if (ambiguous) log.warn(`pool download: ${ambiguous} URL(s) appear with different weak labels; the first row's label is kept (\`dcd pool search\` drops such URLs)`);
  }
  if (!urls.length) throw new ConfigError('pool download: no row has a url; pass the output of `dcd pool search` or a weak-pool list with a url column');
  const out = path.resolve(outDir);
  await ensureDir(path.join(out, 'images'));
  const journal = path.join(out, 'downloads.jsonl');
  const done = new Map<string, DownloadRecord>();
  if (existsSync(journal)) {
    const text = await readFile(journal, 'utf8');
    // a killed run may leave a torn last line: end it so the next record starts cleanly
    if (text.length && !text.endsWith('\n')) await appendFile(journal, '\n');
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const r = JSON.parse(line) as DownloadRecord;
        // a record whose file has gone missing is fetched again
        if (r.file && !existsSync(path.join(out, r.file))) continue;
        done.set(r.url, r);
      } catch {
        // a torn last line from a killed run: that URL is simply fetched again
      }
    }
  }
  const todo = urls.filter((u) => {
    const r = done.get(u);
    if (!r) return true;
    if (isTransient(r.status)) return true;
    return !!opts.retryFailed && r.status !== 'ok' && r.status !== 'duplicate';
  });
  const bySha = new Map<string, string>();
  for (const r of done.values()) if (r.status === 'ok' && r.sha256 && r.file) bySha.set(r.sha256, r.url);
  const global = pLimit(o.concurrency);
  const hosts = new Map<string, ReturnType<typeof pLimit>>();
  const hostOf = (u: string) => {
    try {
      return new URL(u).host;
    } catch {
      return '';
    }
  };
  const bar = progress('download', todo.length, 'url');
  let journalChain = Promise.resolve();
  const record = (r: DownloadRecord) => {
    done.set(r.url, r);
    journalChain = journalChain.then(() => appendFile(journal, JSON.stringify(r) + '\n'));
    bar.tick();
  };
  const one = async (url: string): Promise<void> => {
    let attempts = 0;
    let last: Fail | undefined;
    while (attempts < o.retries) {
      if (attempts) await sleep(o.backoffMs * 2 ** (attempts - 1) * (0.75 + 0.5 * Math.random()));
      attempts++;
      try {
        const body = await fetchOnce(url, o);
        const fmt = sniffImage(body);
        if (!fmt) {
          const head = Buffer.from(body.subarray(0, 64)).toString('latin1').replace(/\s+/g, ' ').trim();
          throw new Fail('not-image', `content is not an image (starts "${head.slice(0, 40)}")`);
        }
        await checkDecodes(body, o.maxPixels);
        const h = sha256(body);
        const rel = path.posix.join('images', h.slice(0, 2), `${h}.${EXT[fmt]}`);
        const first = bySha.get(h);
        if (first !== undefined && first !== url) {
          record({ url, status: 'duplicate', file: rel, sha256: h, bytes: body.length, format: fmt, attempts, error: `same content as ${first}` });
          return;
        }
        bySha.set(h, url);
        const abs = path.join(out, rel);
        if (!existsSync(abs)) {
          await ensureDir(path.dirname(abs));
          const tmp = tempPathFor(abs);
          try {
            await writeFile(tmp, body);
            await rename(tmp, abs);
          } catch (e) {
            await rm(tmp, { force: true });
            throw e;
          }
        }
        record({ url, status: 'ok', file: rel, sha256: h, bytes: body.length, format: fmt, attempts });
        return;
      } catch (e) {
        if (!(e instanceof Fail)) throw e;
        last = e;
        if (!isTransient(e.status)) break;
      }
    }
    record({ url, status: last!.status, attempts, error: last!.message });
  };
  // queued in chunks, so a list of a million URLs does not hold a million pending closures
  const CHUNK = 5000;
  for (let c = 0; c < todo.length; c += CHUNK)
    await Promise.all(
      todo.slice(c, c + CHUNK).map((u) => {
        const h = hostOf(u);
        let hl = hosts.get(h);
        if (!hl) hosts.set(h, (hl = pLimit(o.perHost)));
        return hl(() => global(() => one(u)));
      }),
    );
  bar.stop();
  await journalChain;

  const records = urls.map((u) => done.get(u)!);
  const counts: Record<string, number> = {};
  for (const r of records) counts[r.status] = (counts[r.status] ?? 0) + 1;
  const rowByUrl = new Map<string, ManifestRow>();
  for (const r of rows) if (r.url && !rowByUrl.has(r.url)) rowByUrl.set(r.url, r);
  const all: ManifestRow[] = [];
  const pool: ManifestRow[] = [];
  for (const rec of records) {
    const base = rowByUrl.get(rec.url)!;
    let ctx: Record<string, unknown> = {};
    try {
      ctx = base.context ? (JSON.parse(base.context) as Record<string, unknown>) : {};
    } catch {
      ctx = { note: base.context };
    }
    const file = rec.file ? path.join(out, rec.file) : '';
    all.push({ ...base, id: rec.url, path: file, url: rec.url, sha256: rec.sha256, context: JSON.stringify({ ...ctx, status: rec.status, ...(rec.error ? { error: rec.error } : {}) }) });
    if (rec.status === 'ok') pool.push({ ...base, id: rec.file!, path: file, url: rec.url, sha256: rec.sha256, set: base.set || 'pool' });
  }
  const meta = { 'dcd.source': 'pool-download', 'dcd.out': out };
  const downloadsManifest = path.join(out, 'downloads.arrow');
  const poolManifest = path.join(out, 'pool.arrow');
  await writeManifest(downloadsManifest, all, meta);
  await writeManifest(poolManifest, pool, meta);
  log.info(`pool download: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')} (${todo.length} fetched this run)`);
  return { records, counts, fetched: todo.length, poolManifest, downloadsManifest };
}
