/**
 * Collecting the weak pool (paper Section 3.2): class → search queries (every synonym of
 * its synset) → result URLs through a search provider → URLs under more than one class
 * dropped. Downloading is in src/data/download.ts.
 */
import pLimit from 'p-limit';
import { ConfigError, DataError, describeError } from '../core/errors.js';
import { log } from '../core/log.js';
import type { ManifestRow } from './manifest.js';
import type { Synset } from './synsets.js';

/** One search query for one class. */
export interface PoolQuery {
  /** Class index (the weak label of every result). */
  label: number;
  wnid: string;
  query: string;
}

/**
 * Every synonym of each class's synset as a query, in class order; a synonym repeated
 * within a class is asked once.
 */
export function poolQueries(classes: readonly number[], synsets: readonly Synset[]): PoolQuery[] {
  const out: PoolQuery[] = [];
  for (const c of classes) {
    const s = synsets[c];
    if (!s) throw new ConfigError(`pool queries: class ${c} is not in the synset list (0..${synsets.length - 1})`);
    const seen = new Set<string>();
    for (const n of s.names) {
      const q = n.trim();
      if (!q || seen.has(q.toLowerCase())) continue;
      seen.add(q.toLowerCase());
      out.push({ label: s.index, wnid: s.wnid, query: q });
    }
  }
  return out;
}

/** One search hit. */
export interface SearchHit {
  url: string;
  /** Provider's id of the item, when it has one. */
  id?: string;
  title?: string;
}

/** A source of image URLs for a text query. */
export interface SearchProvider {
  readonly name: string;
  /** Up to `n` result URLs for `query`, in the provider's ranking order. */
  search(query: string, n: number): Promise<SearchHit[]>;
}

/** Options of the Flickr provider. */
export interface FlickrOptions {
  /** API key; default env FLICKR_API_KEY. */
  apiKey?: string;
  /** REST endpoint; default https://api.flickr.com/services/rest/ (overridable for tests). */
  endpoint?: string;
  /** Results per page (Flickr allows up to 500). */
  perPage?: number;
  /** Size suffix of the image URL built from a photo (z = 640 px on the longer side). */
  size?: string;
  /** Seconds before a page request is abandoned. */
  timeoutS?: number;
  /** Attempts per page on network errors and 5xx. */
  retries?: number;
}

interface FlickrPhoto {
  id: string;
  secret: string;
  server: string;
  title?: string;
  [k: string]: unknown;
}

/**
 * Flickr `flickr.photos.search` (JSON, `nojsoncallback=1`), sorted by relevance,
 * paginated until `n` photos or the last page. Image URLs are
 * `https://live.staticflickr.com/{server}/{id}_{secret}_{size}.jpg`, or the `url_{size}`
 * extra when the API returns it.
 */
export class FlickrProvider implements SearchProvider {
  readonly name = 'flickr';
  private readonly key: string;
  private readonly endpoint: string;
  private readonly perPage: number;
  private readonly size: string;
  private readonly timeoutMs: number;
  private readonly retries: number;

  constructor(opts: FlickrOptions = {}) {
    const key = opts.apiKey ?? process.env.FLICKR_API_KEY;
    if (!key) throw new ConfigError('Flickr search needs an API key: set FLICKR_API_KEY (https://www.flickr.com/services/api/keys/)');
    this.key = key;
    this.endpoint = opts.endpoint ?? 'https://api.flickr.com/services/rest/';
    this.perPage = Math.min(500, Math.max(1, opts.perPage ?? 250));
    this.size = opts.size ?? 'z';
    this.timeoutMs = (opts.timeoutS ?? 30) * 1000;
    this.retries = opts.retries ?? 3;
  }

  async search(query: string, n: number): Promise<SearchHit[]> {
    const hits: SearchHit[] = [];
    const seen = new Set<string>();
    for (let page = 1; hits.length < n; page++) {
      const data = await this.page(query, page, Math.min(this.perPage, n));
      const photos = data.photos;
      const before = hits.length;
      for (const p of photos.photo) {
        const url = typeof p[`url_${this.size}`] === 'string' ? String(p[`url_${this.size}`]) : `https://live.staticflickr.com/${p.server}/${p.id}_${p.secret}_${this.size}.jpg`;
        if (seen.has(url)) continue;
        seen.add(url);
        hits.push({ url, id: p.id, title: p.title });
        if (hits.length >= n) break;
      }
      // Flickr serves at most ~4,000 distinct results per query and then repeats pages:
      // a page with nothing new ends the query
      if (photos.photo.length === 0 || hits.length === before || page >= Number(photos.pages)) break;
    }
    return hits;
  }

  private async page(query: string, page: number, perPage: number): Promise<{ photos: { page: number; pages: number; photo: FlickrPhoto[] } }> {
    const u = new URL(this.endpoint);
    const params: Record<string, string> = {
      method: 'flickr.photos.search',
      api_key: this.key,
      text: query,
      sort: 'relevance',
      content_type: '1',
      media: 'photos',
      extras: `url_${this.size}`,
      per_page: String(perPage),
      page: String(page),
      format: 'json',
      nojsoncallback: '1',
    };
    for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
    const where = `Flickr search "${query}" page ${page}`;
    let lastErr = '';
    for (let attempt = 0; attempt < this.retries; attempt++) {
      if (attempt) await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      let res: Response;
      try {
        res = await fetch(u, { signal: AbortSignal.timeout(this.timeoutMs) });
      } catch (e) {
        lastErr = describeError(e);
        continue;
      }
      if (res.status >= 500 || res.status === 429) {
        lastErr = `HTTP ${res.status}`;
        continue;
      }
      if (!res.ok) throw new DataError(`${where}: HTTP ${res.status} from ${this.endpoint}`);
      let body: { stat?: string; code?: number; message?: string; photos?: { page: number; pages: number; photo: FlickrPhoto[] } };
      try {
        body = (await res.json()) as typeof body;
      } catch (e) {
        throw new DataError(`${where}: the answer is not JSON (${describeError(e)})`);
      }
      if (body.stat !== 'ok' || !body.photos || !Array.isArray(body.photos.photo))
        throw new DataError(`${where}: Flickr says ${body.stat ?? 'nothing'}${body.code !== undefined ? ` (code ${body.code}: ${body.message})` : ''}; check FLICKR_API_KEY`);
      return body as { photos: { page: number; pages: number; photo: FlickrPhoto[] } };
    }
    throw new DataError(`${where}: failed after ${this.retries} attempts (${lastErr})`);
  }
}

/** Result of {@link searchPool}. */
export interface PoolSearchResult {
  /** One row per kept URL: label -1, weak label = the class searched, path '' (not downloaded), context {query}. */
  rows: ManifestRow[];
  /** URLs found under more than one class, dropped. */
  dropped: number;
  /** Hits per query before de-duplication. */
  perQuery: { label: number; query: string; hits: number }[];
}

/**
 * Runs every query through `provider` (up to `n` hits each, `concurrency` queries at a
 * time), keeps each URL once per class, and drops URLs that occur under more than one
 * class (their weak label is ambiguous).
 */
export async function searchPool(queries: readonly PoolQuery[], provider: SearchProvider, n: number, opts: { concurrency?: number; synsets: readonly Synset[] }): Promise<PoolSearchResult> {
  const limit = pLimit(opts.concurrency ?? 2);
  const results = await Promise.all(queries.map((q) => limit(async () => ({ q, hits: await provider.search(q.query, n) }))));
  const classesOf = new Map<string, Set<number>>();
  for (const { q, hits } of results) for (const h of hits) (classesOf.get(h.url) ?? classesOf.set(h.url, new Set()).get(h.url)!).add(q.label);
  const rows: ManifestRow[] = [];
  const kept = new Set<string>();
  let dropped = 0;
  for (const { q, hits } of results)
    for (const h of hits) {
      if (kept.has(h.url)) continue;
      if (classesOf.get(h.url)!.size > 1) continue;
      kept.add(h.url);
      const s = opts.synsets[q.label]!;
      rows.push({ id: h.url, path: '', label: -1, wnid: s.wnid, class_name: s.names[0]!, set: 'pool', weak_label: q.label, url: h.url, context: JSON.stringify({ query: q.query, provider: provider.name }) });
    }
  for (const c of classesOf.values()) if (c.size > 1) dropped++;
  if (dropped) log.info(`pool search: dropped ${dropped} URL(s) found under more than one class`);
  return { rows, dropped, perQuery: results.map(({ q, hits }) => ({ label: q.label, query: q.query, hits: hits.length })) };
}

/** Writes queries as JSONL (`{"label":..,"wnid":..,"query":..}` per line), atomically. */
export async function writeQueries(file: string, queries: readonly PoolQuery[]): Promise<void> {
  const { atomicWriteFile } = await import('../core/fsutil.js');
  await atomicWriteFile(file, queries.map((q) => JSON.stringify(q)).join('\n') + '\n');
}

/** Reads a JSONL query file written by {@link writeQueries}; errors name the line. */
export async function readQueries(file: string): Promise<PoolQuery[]> {
  const { readFile } = await import('node:fs/promises');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new DataError(`${file}: cannot read the query list (${(e as NodeJS.ErrnoException).code ?? describeError(e)})`);
  }
  const out: PoolQuery[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    let q: Partial<PoolQuery>;
    try {
      q = JSON.parse(line) as Partial<PoolQuery>;
    } catch (e) {
      throw new DataError(`${file}:${i + 1}: not valid JSON (${describeError(e)})`);
    }
    if (!Number.isInteger(q.label) || typeof q.query !== 'string' || !q.query.trim())
      throw new DataError(`${file}:${i + 1}: expected {"label": <class index>, "wnid": "...", "query": "..."}`);
    out.push({ label: q.label!, wnid: q.wnid ?? '', query: q.query });
  });
  return out;
}
