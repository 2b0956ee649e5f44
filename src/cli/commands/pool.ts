import type { CommandModule } from 'yargs';
import path from 'node:path';
import { ConfigError } from '../../core/errors.js';
import { readClassSubset, weakPool } from '../../data/adapters.js';
import { downloadPool } from '../../data/download.js';
import { readManifest, writeManifest, REQUIRED_COLUMNS } from '../../data/manifest.js';
import { readArrowFile } from '../../core/arrow.js';
import { FlickrProvider, poolQueries, readQueries, searchPool, writeQueries, type SearchProvider } from '../../data/pool.js';
import { loadSynsets } from '../../data/synsets.js';
import { seeDocs } from '../usage.js';

const queries: CommandModule<object, any> = {
  command: 'queries',
  describe: 'Turn classes into search queries: every synonym of each class synset (JSONL)',
  builder: (y) =>
    y
      .option('classes', { type: 'string', describe: 'class-subset file (wnids or indices); default all 1000 classes' })
      .option('out', { type: 'string', demandOption: true, describe: 'queries file to write (.jsonl)' })
      .example('$0 pool queries --classes ysub.txt --out queries.jsonl', '')
      .epilogue(seeDocs('src/data/README.md')),
  handler: async (a) => {
    const syn = loadSynsets();
    const classes = a.classes ? readClassSubset(a.classes, syn) : syn.map((s) => s.index);
    const q = poolQueries(classes, syn);
    await writeQueries(a.out, q);
    process.stdout.write(`wrote ${a.out}: ${q.length} queries for ${classes.length} classes\n`);
  },
};

const search: CommandModule<object, any> = {
  command: 'search <queries>',
  describe: 'Collect result URLs for every query; drop URLs found under more than one class',
  builder: (y) =>
    y
      .positional('queries', { type: 'string', describe: 'queries file from `dcd pool queries`' })
      .option('provider', { choices: ['flickr'], default: 'flickr' })
      .option('per-query', { type: 'number', default: 30000, describe: 'result URLs per query (the paper: 30,000)' })
      .option('endpoint', { type: 'string', describe: 'provider API endpoint (default: the public one)' })
      .option('concurrency', { type: 'number', default: 2, describe: 'queries in flight' })
      .option('out', { type: 'string', demandOption: true, describe: 'URL manifest to write (.arrow)' })
      .example('FLICKR_API_KEY=... $0 pool search queries.jsonl --per-query 1000 --out urls.arrow', '')
      .epilogue(seeDocs('src/data/README.md')),
  handler: async (a) => {
    if (!(a.perQuery > 0)) throw new ConfigError(`--per-query: expected a positive number, received ${a.perQuery}`);
    const provider: SearchProvider = new FlickrProvider({ endpoint: a.endpoint });
    const q = await readQueries(a.queries);
    const r = await searchPool(q, provider, a.perQuery, { concurrency: a.concurrency, synsets: loadSynsets() });
    await writeManifest(a.out, r.rows, { 'dcd.source': `pool-search:${provider.name}`, 'dcd.queries': path.resolve(a.queries) });
    process.stdout.write(`wrote ${a.out}: ${r.rows.length} URLs from ${q.length} queries; dropped ${r.dropped} URL(s) under more than one class\n`);
  },
};

const download: CommandModule<object, any> = {
  command: 'download <list>',
  describe: 'Download a URL list (manifest from `pool search`, or CSV/JSONL with url + weak label); resumable',
  builder: (y) =>
    y
      .positional('list', { type: 'string' })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder (images/, pool.arrow, downloads.arrow, downloads.jsonl)' })
      .option('concurrency', { type: 'number', default: 16 })
      .option('per-host', { type: 'number', default: 4 })
      .option('timeout', { type: 'number', default: 30, describe: 'seconds per request' })
      .option('stall', { type: 'number', default: 10, describe: 'seconds without body bytes before giving up' })
      .option('retries', { type: 'number', default: 3, describe: 'attempts for transient failures' })
      .option('max-mb', { type: 'number', default: 20, describe: 'size cap per image, MiB' })
      .option('retry-failed', { type: 'boolean', default: false, describe: 'also refetch URLs that failed permanently before' })
      .example('$0 pool download urls.arrow --out pool/', '')
      .epilogue(seeDocs('src/data/README.md')),
  handler: async (a) => {
    const rows = a.list.endsWith('.arrow') && (await isManifest(a.list)) ? (await readManifest(a.list)).rows : await weakPool(a.list);
    const r = await downloadPool(rows, a.out, {
      concurrency: a.concurrency,
      perHost: a.perHost,
      timeoutMs: a.timeout * 1000,
      stallMs: a.stall * 1000,
      retries: a.retries,
      maxBytes: Math.round(a.maxMb * 1024 * 1024),
      retryFailed: a.retryFailed,
    });
    const counts = Object.entries(r.counts).sort().map(([k, v]) => `  ${k}: ${v}`).join('\n');
    process.stdout.write(`${r.records.length} URLs (${r.fetched} fetched this run)\n${counts}\nwrote ${r.poolManifest}\nwrote ${r.downloadsManifest}\n`);
  },
};

/** True when an Arrow file has the manifest columns (else it is read as a weak-pool list). */
async function isManifest(file: string): Promise<boolean> {
  const t = await readArrowFile(file);
  const names = new Set(t.schema.fields.map((f) => f.name));
  return REQUIRED_COLUMNS.every((c) => names.has(c));
}

/** yargs command modules of this area (see src/cli/main.ts). */
export const commands: CommandModule<object, any>[] = [
  {
    command: 'pool <command>',
    describe: 'Collect the weak pool from the web: queries, search, download',
    builder: (y) => y.command(queries).command(search).command(download).demandCommand(1)
      .example('$0 pool download urls.arrow --out pool/', '')
      .epilogue(seeDocs('src/data/README.md')),
    handler: () => undefined,
  },
];
