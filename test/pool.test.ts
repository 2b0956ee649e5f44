import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { createServer, type Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, existsSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { createHash } from 'node:crypto';
import { FlickrProvider, poolQueries, readQueries, searchPool, writeQueries, type SearchProvider } from '../src/data/pool.js';
import { downloadPool, sniffImage } from '../src/data/download.js';
import { loadSynsets } from '../src/data/synsets.js';
import { readManifest, type ManifestRow } from '../src/data/manifest.js';
import { imageBatches } from '../src/data/images.js';
import { ConfigError, DataError } from '../src/core/errors.js';

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void;

async function serve(h: Handler): Promise<{ server: Server; base: string; hits: Map<string, number> }> {
  const hits = new Map<string, number>();
  const server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    hits.set(url.pathname + url.search, (hits.get(url.pathname + url.search) ?? 0) + 1);
    h(req, res, url);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { server, base: `http://127.0.0.1:${port}`, hits };
}

const syn = loadSynsets();

describe('pool queries', () => {
  it('asks every synonym of each class once, and round-trips through JSONL', async () => {
    const q = poolQueries([1, 999], syn);
    expect(q).toEqual([
      { label: 1, wnid: 'n01443537', query: 'goldfish' },
      { label: 1, wnid: 'n01443537', query: 'Carassius auratus' },
      { label: 999, wnid: 'n15075141', query: 'toilet tissue' },
      { label: 999, wnid: 'n15075141', query: 'toilet paper' },
      { label: 999, wnid: 'n15075141', query: 'bathroom tissue' },
    ]);
    const f = path.join(mkdtempSync(path.join(tmpdir(), 'dcd-pool-')), 'q.jsonl');
    await writeQueries(f, q);
    expect(await readQueries(f)).toEqual(q);
    writeFileSync(f, '{"label":1}\n');
    await expect(readQueries(f)).rejects.toThrow(/q\.jsonl:1: expected/);
    expect(() => poolQueries([1000], syn)).toThrow(ConfigError);
  });
});

describe('Flickr search against a loopback server', () => {
  let srv: Awaited<ReturnType<typeof serve>>;
  const seen: URLSearchParams[] = [];
  beforeAll(async () => {
    // 7 photos per query, 3 per page; "tench" and "goldfish" share photo 100 (must be dropped)
    srv = await serve((req, res, url) => {
      const p = url.searchParams;
      seen.push(p);
      res.setHeader('content-type', 'application/json');
      if (p.get('api_key') !== 'KEY') return res.end(JSON.stringify({ stat: 'fail', code: 100, message: 'Invalid API Key (Key has invalid format)' }));
      if (p.get('method') !== 'flickr.photos.search' || p.get('format') !== 'json' || p.get('nojsoncallback') !== '1') return res.end('{"stat":"fail","code":112}');
      const text = p.get('text')!;
      const page = Number(p.get('page'));
      const per = Number(p.get('per_page'));
      if (text === 'repeat') {
        // like Flickr past its ~4,000-result cap: claims 100 pages, serves the same photos on each
        const photo = [1, 2, 3].map((id) => ({ id: String(id), secret: 's', server: '1' }));
        return res.end(JSON.stringify({ photos: { page, pages: 100, perpage: per, total: 300, photo }, stat: 'ok' }));
      }
      const ids = Array.from({ length: 7 }, (_, i) => (i === 0 ? 100 : text.length * 1000 + i));
      const photo = ids.slice((page - 1) * per, page * per).map((id) => ({ id: String(id), owner: 'o', secret: 's' + id, server: '65535', farm: 66, title: `${text} ${id}`, ispublic: 1 }));
      res.end(JSON.stringify({ photos: { page, pages: Math.ceil(ids.length / per), perpage: per, total: ids.length, photo }, stat: 'ok' }));
    });
  });
  afterAll(() => srv.server.close());

  it('paginates to N per query and builds static image URLs', async () => {
    const f = new FlickrProvider({ apiKey: 'KEY', endpoint: srv.base + '/services/rest/', perPage: 3 });
    const hits = await f.search('tench', 5);
    expect(hits).toHaveLength(5);
    expect(hits[0]!.url).toBe('https://live.staticflickr.com/65535/100_s100_z.jpg');
    expect(new Set(seen.filter((p) => p.get('text') === 'tench').map((p) => p.get('page')))).toEqual(new Set(['1', '2']));
    expect(await f.search('tench', 50)).toHaveLength(7); // stops at the last page
    expect(await f.search('repeat', 50)).toHaveLength(3);
    expect(seen.filter((p) => p.get('text') === 'repeat')).toHaveLength(2); // stops at the first page with nothing new
  });
  it('drops URLs that occur under more than one class', async () => {
    const f = new FlickrProvider({ apiKey: 'KEY', endpoint: srv.base + '/services/rest/', perPage: 4 });
    const q = [
      { label: 0, wnid: 'n01440764', query: 'tench' },
      { label: 0, wnid: 'n01440764', query: 'Tinca tinca' },
      { label: 1, wnid: 'n01443537', query: 'goldfish' },
    ];
    const r = await searchPool(q, f, 7, { synsets: syn });
    expect(r.dropped).toBe(1);
    expect(r.rows.map((x) => x.url)).not.toContain('https://live.staticflickr.com/65535/100_s100_z.jpg');
    // 'tench' (5 chars) and 'goldfish' (8) give distinct ids; 'Tinca tinca' (11) too: 3 × 6 unique
    expect(r.rows).toHaveLength(18);
    expect(r.rows.filter((x) => x.weak_label === 1)).toHaveLength(6);
    expect(r.rows.every((x) => x.label === -1 && x.set === 'pool')).toBe(true);
    expect(JSON.parse(r.rows[0]!.context!)).toMatchObject({ query: 'tench', provider: 'flickr' });
  });
  it('reports a bad key with the API message, and a missing key before any request', async () => {
    const f = new FlickrProvider({ apiKey: 'WRONG', endpoint: srv.base + '/services/rest/' });
    await expect(f.search('tench', 3)).rejects.toThrow(/code 100: Invalid API Key/);
    const old = process.env.FLICKR_API_KEY;
    delete process.env.FLICKR_API_KEY;
    expect(() => new FlickrProvider()).toThrow(/FLICKR_API_KEY/);
    if (old !== undefined) process.env.FLICKR_API_KEY = old;
  });
});

describe('pool download against a loopback server', () => {
  let srv: Awaited<ReturnType<typeof serve>>;
  let jpg: Buffer;
  let png: Buffer;
  let flaky = 0;
  let dir: string;
  const pending: ServerResponse[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'dcd-dl-'));
    jpg = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 10, b: 10 } } }).jpeg().toBuffer();
    png = await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 0, g: 0, b: 255 } } }).png().toBuffer();
    srv = await serve((req, res, url) => {
      const p = url.pathname;
      if (p === '/good.jpg') return res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpg);
      if (p === '/octet.png') return res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(png);
      if (p === '/copy-of-good') return res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpg);
      if (p === '/missing.jpg') return res.writeHead(404, { 'content-type': 'text/html' }).end('<html>404</html>');
      if (p === '/moved.jpg') return res.writeHead(302, { location: '/octet.png' }).end();
      if (p === '/loop') return res.writeHead(302, { location: '/loop' }).end();
      if (p === '/ftp') return res.writeHead(301, { location: 'file:///etc/passwd' }).end();
      if (p === '/error-page.jpg') return res.writeHead(200, { 'content-type': 'image/jpeg' }).end('<!DOCTYPE html><html><body>Service unavailable</body></html>');
      if (p === '/huge-declared.jpg') return res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': String(5_000_000) }).end();
      if (p === '/huge-chunked.jpg') {
        res.writeHead(200, { 'content-type': 'image/jpeg' });
        res.write(jpg.subarray(0, 3));
        res.end(Buffer.alloc(300_000));
        return;
      }
      if (p === '/slow.jpg') return void setTimeout(() => res.writeHead(200).end(jpg), 300);
      if (p === '/stall.jpg') {
        res.writeHead(200, { 'content-type': 'image/jpeg' });
        res.write(jpg.subarray(0, 100));
        pending.push(res); // never ends
        return;
      }
      if (p === '/hang.jpg') return void pending.push(res); // never answers
      if (p === '/flaky.jpg') {
        flaky++;
        if (flaky === 1) return res.writeHead(503).end();
        return res.writeHead(200).end(png.subarray(0, png.length)); // same bytes as octet.png → duplicate
      }
      if (p.endsWith('escape.jpg')) return res.writeHead(200).end(jpg); // the URL parser resolves the dot segments
      res.writeHead(500).end();
    });
  });
  afterAll(() => {
    for (const r of pending) r.destroy();
    srv.server.close();
  });

  const rowsFor = (names: string[]): ManifestRow[] =>
    names.map((n, i) => ({ id: n, path: '', label: -1, wnid: syn[i % 3]!.wnid, class_name: syn[i % 3]!.names[0]!, set: 'pool', weak_label: i % 3, url: n.startsWith('/') ? srv.base + n : n, context: JSON.stringify({ query: 'q' + i }) }));

  it('fetches good images, classifies every failure, dedupes by content, and never writes outside the folder', async () => {
    const names = [
      '/good.jpg',
      '/octet.png',
      '/copy-of-good',
      '/missing.jpg',
      '/moved.jpg',
      '/loop',
      '/ftp',
      '/error-page.jpg',
      '/huge-declared.jpg',
      '/huge-chunked.jpg',
      '/slow.jpg',
      '/stall.jpg',
      '/hang.jpg',
      '/flaky.jpg',
      '/%2e%2e/%2e%2e/escape.jpg',
      'not a url',
    ];
    const out = path.join(dir, 'pool');
    const t0 = Date.now();
    const r = await downloadPool(rowsFor(names), out, { concurrency: 8, perHost: 8, timeoutMs: 2500, stallMs: 800, retries: 2, backoffMs: 20, maxBytes: 100_000 });
    const took = Date.now() - t0;
    const st = Object.fromEntries(r.records.map((x) => [x.url.replace(srv.base, ''), x.status]));
    expect(st).toEqual({
      '/good.jpg': 'ok',
      '/octet.png': st['/octet.png'] === 'ok' ? 'ok' : 'duplicate',
      '/copy-of-good': 'duplicate',
      '/missing.jpg': 'http-404',
      '/moved.jpg': st['/moved.jpg'] === 'ok' ? 'ok' : 'duplicate',
      '/loop': 'too-many-redirects',
      '/ftp': 'bad-url',
      '/error-page.jpg': 'not-image',
      '/huge-declared.jpg': 'too-large',
      '/huge-chunked.jpg': 'too-large',
      '/slow.jpg': 'duplicate',
      '/stall.jpg': 'stalled',
      '/hang.jpg': 'timeout',
      '/flaky.jpg': st['/flaky.jpg'] === 'ok' ? 'ok' : 'duplicate',
      '/%2e%2e/%2e%2e/escape.jpg': 'duplicate',
      'not a url': 'bad-url',
    });
    // octet.png, moved.jpg (→ octet.png) and flaky.jpg (2nd try) carry the same PNG: exactly one is ok
    expect(['/octet.png', '/moved.jpg', '/flaky.jpg'].filter((k) => st[k] === 'ok')).toHaveLength(1);
    expect(r.records.find((x) => x.url.endsWith('/flaky.jpg'))!.attempts).toBe(2);
    expect(srv.hits.get('/hang.jpg')).toBe(2); // transient: retried
    expect(srv.hits.get('/missing.jpg')).toBe(1); // permanent: not retried
    expect(took).toBeLessThan(20_000); // a stalled or hung server costs its timeout, not forever
    // only content-addressed files inside out/images
    const files = readdirSync(path.join(out, 'images'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(files.map((e) => e.name).sort()).toEqual(
      [`${sha(jpg)}.jpg`, `${sha(png)}.png`].sort(),
    );
    expect(readdirSync(dir)).toEqual(['pool']);
    const pool = await readManifest(r.poolManifest);
    expect(pool.rows).toHaveLength(2);
    expect(pool.rows.every((x) => x.path.startsWith(out) && existsSync(x.path) && x.sha256 && x.weak_label! >= 0)).toBe(true);
    const all = await readManifest(r.downloadsManifest);
    expect(all.rows).toHaveLength(names.length);
    expect(JSON.parse(all.rows.find((x) => x.url === srv.base + '/missing.jpg')!.context!)).toMatchObject({ query: 'q3', status: 'http-404' });
    // the pool decodes through the image pipeline
    const got: string[] = [];
    for await (const b of imageBatches(pool.rows, { resize: 16, crop: 16, mean: [0, 0, 0], std: [1, 1, 1] }, 4)) got.push(...b.ids, ...b.skipped.map((s) => 'SKIP ' + s.id));
    expect(got).toHaveLength(2);
    expect(got.some((g) => g.startsWith('SKIP'))).toBe(false);

    // rerun: nothing final is fetched again; transient failures are retried; a new URL is fetched
    const before = new Map(srv.hits);
    const r2 = await downloadPool(rowsFor([...names, '/good.jpg?v=2']), out, { concurrency: 8, timeoutMs: 2500, stallMs: 800, retries: 1, backoffMs: 20, maxBytes: 100_000 });
    expect(r2.fetched).toBe(3); // stall, hang, and the new URL
    for (const p of ['/good.jpg', '/octet.png', '/missing.jpg', '/error-page.jpg', '/huge-chunked.jpg', '/flaky.jpg'])
      expect(srv.hits.get(p), p).toBe(before.get(p));
    expect(srv.hits.get('/good.jpg?v=2')).toBe(1);
    expect(r2.records.find((x) => x.url.endsWith('?v=2'))!.status).toBe('duplicate');
    expect(statSync(path.join(out, 'downloads.jsonl')).size).toBeGreaterThan(0);
    expect(readFileSync(path.join(out, 'downloads.jsonl'), 'utf8').trim().split('\n').length).toBe(names.length + 3);
  });
  it('survives a torn journal line and refetches an image whose file was deleted', async () => {
    const out = path.join(dir, 'torn');
    const rows = rowsFor(['/good.jpg', '/octet.png']);
    await downloadPool(rows, out, { retries: 1 });
    const { appendFileSync, rmSync } = await import('node:fs');
    appendFileSync(path.join(out, 'downloads.jsonl'), '{"url":"http://half-writ');
    rmSync(path.join(out, 'images', sha(png).slice(0, 2), `${sha(png)}.png`));
    const r = await downloadPool(rows, out, { retries: 1 });
    expect(r.fetched).toBe(1);
    expect(r.counts).toEqual({ ok: 2 });
    expect(existsSync(path.join(out, 'images', sha(png).slice(0, 2), `${sha(png)}.png`))).toBe(true);
    expect((await downloadPool(rows, out, { retries: 1 })).fetched).toBe(0); // the record after the torn line is readable
  });
  it('keeps at most perHost requests in flight per host', async () => {
    let inflight = 0;
    let peak = 0;
    const s2 = await serve((req, res) => {
      inflight++;
      peak = Math.max(peak, inflight);
      setTimeout(() => {
        inflight--;
        res.writeHead(200).end(Buffer.concat([jpg, Buffer.from(req.url!)]));
      }, 60);
    });
    try {
      const rows = rowsFor([]).concat(
        Array.from({ length: 8 }, (_, i) => ({ id: `u${i}`, path: '', label: -1, wnid: '', class_name: '', set: 'pool', weak_label: 0, url: `${s2.base}/p${i}.jpg` })),
      );
      const r = await downloadPool(rows, path.join(dir, 'perhost'), { concurrency: 8, perHost: 2, retries: 1 });
      expect(r.counts).toEqual({ ok: 8 });
      expect(peak).toBe(2);
    } finally {
      s2.server.close();
    }
  });
  it('rejects a list without URLs and bad options', async () => {
    await expect(downloadPool([{ id: 'a', path: 'x', label: 0, wnid: '', class_name: '', set: 'p' }], path.join(dir, 'x'))).rejects.toThrow(/no row has a url/);
    await expect(downloadPool(rowsFor(['/good.jpg']), path.join(dir, 'y'), { concurrency: 0 })).rejects.toThrow(ConfigError);
  });
  it('sniffs image formats from bytes', () => {
    expect(sniffImage(jpg)).toBe('jpeg');
    expect(sniffImage(png)).toBe('png');
    expect(sniffImage(Buffer.from('GIF89a....'))).toBe('gif');
    expect(sniffImage(Buffer.from('RIFF\0\0\0\0WEBPVP8 '))).toBe('webp');
    expect(sniffImage(Buffer.from('<html>'))).toBeUndefined();
  });
});

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

void DataError;
void ({} as SearchProvider);

describe('dcd pool CLI', () => {
  it('runs queries → search → download end to end through the real CLI', async () => {
    const { main } = await import('../src/cli/main.js');
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-poolcli-'));
    const jpg = await sharp({ create: { width: 24, height: 24, channels: 3, background: { r: 9, g: 99, b: 199 } } }).jpeg().toBuffer();
    const srv = await serve((req, res, url) => {
      if (url.pathname === '/services/rest/') {
        const text = url.searchParams.get('text')!;
        const photo = [1, 2].map((i) => ({ id: `${text.length}${i}`, secret: 'x', server: 's', url_z: `http://127.0.0.1:${(srv.server.address() as { port: number }).port}/img/${encodeURIComponent(text)}/${i}.jpg` }));
        return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ stat: 'ok', photos: { page: 1, pages: 1, perpage: 2, total: 2, photo } }));
      }
      if (url.pathname.endsWith('/2.jpg')) return res.writeHead(404).end();
      return res.writeHead(200).end(Buffer.concat([jpg, Buffer.from(url.pathname)])); // distinct bytes per URL
    });
    const subset = path.join(dir, 'ysub.txt');
    writeFileSync(subset, 'n01443537\n');
    const cap: string[] = [];
    const orig = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => (cap.push(String(s)), true)) as typeof process.stdout.write;
    const old = process.env.FLICKR_API_KEY;
    process.env.FLICKR_API_KEY = 'k';
    const codes: number[] = [];
    try {
      codes.push(await main(['pool', 'queries', '--classes', subset, '--out', path.join(dir, 'q.jsonl')]));
      codes.push(await main(['pool', 'search', path.join(dir, 'q.jsonl'), '--per-query', '2', '--endpoint', `${srv.base}/services/rest/`, '--out', path.join(dir, 'urls.arrow')]));
      codes.push(await main(['pool', 'download', path.join(dir, 'urls.arrow'), '--out', path.join(dir, 'pool'), '--retries', '1']));
    } finally {
      process.stdout.write = orig;
      if (old === undefined) delete process.env.FLICKR_API_KEY;
      else process.env.FLICKR_API_KEY = old;
      srv.server.close();
    }
    expect(codes).toEqual([0, 0, 0]);
    const text = cap.join('');
    expect(text).toMatch(/2 queries for 1 classes/);
    expect(text).toMatch(/4 URLs from 2 queries/);
    expect(text).toMatch(/http-404: 2/);
    expect(text).toMatch(/ok: 2/);
    const pool = await readManifest(path.join(dir, 'pool', 'pool.arrow'));
    expect(pool.rows.map((r) => r.weak_label)).toEqual([1, 1]);
    expect(pool.rows.map((r) => JSON.parse(r.context!).query).sort()).toEqual(['Carassius auratus', 'goldfish']);
  });
});
