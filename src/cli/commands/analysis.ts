import type { CommandModule } from 'yargs';
import { ConfigError } from '../../core/errors.js';
import { initBackend } from '../../core/backend.js';
import { log } from '../../core/log.js';
import { retentionCsv, retentionMarkdown, retentionTable, writeRetentionOutputs } from '../../analysis/retention.js';

function parseKs(s: string): number[] {
  const ks = String(s)
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)
    .map(Number);
  if (!ks.length || ks.some((k) => !Number.isInteger(k) || k < 1))
    throw new ConfigError(`--k: expected a comma-separated list of positive integers such as 1,5,10,20; received "${s}"`);
  return [...new Set(ks)].sort((a, b) => a - b);
}

function parseList(flag: string, s: string): string[] {
  const v = String(s)
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  if (!v.length) throw new ConfigError(`--${flag}: expected a comma-separated list; received "${s}"`);
  return v;
}

interface RetentionArgs {
  backbones: string;
  data: string;
  k: string;
  embeddings: string;
  out: string;
  strict: boolean;
  normalize: boolean;
  format: string;
  backend?: string;
}

const retention: CommandModule<object, RetentionArgs> = {
  command: 'retention',
  describe: 'Class and context retention of k nearest neighbours per backbone (paper Figure 7)',
  builder: (y) =>
    y
      .option('backbones', { type: 'string', demandOption: true, describe: 'comma-separated backbone names, e.g. dino_vits8,resnet50' })
      .option('data', { type: 'string', demandOption: true, describe: 'manifest Arrow file with id, label/class_name and context columns' })
      .option('k', { type: 'string', default: '1,5,10,20', describe: 'comma-separated neighbour counts' })
      .option('embeddings', { type: 'string', demandOption: true, describe: 'folder of cached embeddings from dcd embed / dcd run (<dir>/<backbone>.arrow or <dir>/**/<backbone>/*.arrow)' })
      .option('out', { type: 'string', default: 'retention', describe: 'output folder for retention.{md,csv,json,svg,png}' })
      .option('strict', { type: 'boolean', default: false, describe: 'a neighbour keeps the context only when every context attribute is equal' })
      .option('normalize', { type: 'boolean', default: false, describe: 'L2-normalise features before the neighbour search' })
      .option('format', { type: 'string', choices: ['md', 'csv', 'json'], default: 'md', describe: 'table format printed on stdout' })
      .example('dcd retention --backbones dino_vits16,resnet50 --data focus.arrow --embeddings runs/focus/embed --k 1,5,10,20', ''),
  handler: async (argv) => {
    await initBackend(argv.backend);
    const ks = parseKs(argv.k);
    const backbones = parseList('backbones', argv.backbones);
    const rule = argv.strict ? 'strict' : 'lenient';
    const rows = await retentionTable(
      { manifest: argv.data, backbones, embeddings: argv.embeddings, ks },
      { rule, normalize: argv.normalize },
    );
    const files = await writeRetentionOutputs(rows, argv.out, { manifest: argv.data, rule, normalize: argv.normalize, ks });
    const out = argv.format === 'csv' ? retentionCsv(rows) : argv.format === 'json' ? JSON.stringify(rows, null, 2) + '\n' : retentionMarkdown(rows, rule);
    process.stdout.write(out);
    log.info(`wrote ${Object.values(files).join(', ')}`);
  },
};

/** yargs command modules of this area (see src/cli/main.ts). */
export const commands: CommandModule<object, any>[] = [retention];
