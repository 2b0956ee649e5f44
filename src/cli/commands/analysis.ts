import path from 'node:path';
import type { CommandModule } from 'yargs';
import { ConfigError, WeightsError } from '../../core/errors.js';
import { useBackend } from '../backend.js';
import { log } from '../../core/log.js';
import { benchSimilarity, similarityMarkdown } from '../../analysis/similarity.js';
import { retentionCsv, retentionMarkdown, retentionTable, writeRetentionOutputs } from '../../analysis/retention.js';
import { seeDocs } from '../usage.js';

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
  embeddings?: string;
  weights?: string;
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
      .option('embeddings', { type: 'string', describe: 'folder of cached embeddings from dcd embed / dcd run (<dir>/<backbone>.arrow, <dir>/**/<backbone>/*.arrow, or dcd.backbone metadata)' })
      .option('weights', { type: 'string', describe: 'for backbones without cached embeddings: backbone=checkpoint|random,...; they are embedded into <out>/embeddings/' })
      .option('out', { type: 'string', default: 'retention', describe: 'output folder for retention.{md,csv,json,svg,png}' })
      .option('strict', { type: 'boolean', default: false, describe: 'a neighbour keeps the context only when every context attribute is equal' })
      .option('normalize', { type: 'boolean', default: false, describe: 'L2-normalise features before the neighbour search' })
      .option('format', { type: 'string', choices: ['md', 'csv', 'json'], default: 'md', describe: 'table format printed on stdout' })
      .example('dcd retention --backbones dino_vits16,resnet50 --data focus.arrow --embeddings runs/focus/embed --k 1,5,10,20', '')
      .example('dcd retention --backbones resnet_tiny --data synthetic.arrow --weights resnet_tiny=random --out retention/', '')
      .epilogue(seeDocs('docs/method.md')),
  handler: async (argv) => {
    await useBackend(argv.backend);
    const ks = parseKs(argv.k);
    const backbones = parseList('backbones', argv.backbones);
    const rule = argv.strict ? 'strict' : 'lenient';
    const weights: Record<string, string> = {};
    for (const pair of argv.weights ? parseList('weights', argv.weights) : []) {
      const eq = pair.indexOf('=');
      if (eq <= 0 || eq === pair.length - 1) throw new ConfigError(`--weights: expected backbone=checkpoint (or backbone=random), received "${pair}"`);
      weights[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    if (!argv.embeddings && !Object.keys(weights).length)
      throw new ConfigError('give --embeddings DIR (cached embeddings from dcd embed / dcd run) or --weights backbone=checkpoint,... to embed the images here');
    const rows = await retentionTable(
      { manifest: argv.data, backbones, embeddings: argv.embeddings, ks, weights, embedOut: path.join(argv.out, 'embeddings') },
      { rule, normalize: argv.normalize },
    );
    const files = await writeRetentionOutputs(rows, argv.out, { manifest: argv.data, rule, normalize: argv.normalize, ks });
    const out = argv.format === 'csv' ? retentionCsv(rows) : argv.format === 'json' ? JSON.stringify(rows, null, 2) + '\n' : retentionMarkdown(rows, rule);
    process.stdout.write(out);
    log.info(`wrote ${Object.values(files).join(', ')}`);
  },
};

interface SimilarityArgs {
  backbones: string;
  'pool-sizes': string;
  'embed-pool-sizes': string;
  size: number;
  batch: number;
  repeats: number;
  k: number;
  'query-batch': number;
  'lpips-weights'?: string;
  out?: string;
  json?: string;
  backend?: string;
}

const similarity: CommandModule<object, SimilarityArgs> = {
  command: 'similarity',
  describe: 'Cost of LPIPS (AlexNet) against penultimate-embedding distance, measured and projected to the paper (Table 2)',
  builder: (y) =>
    y
      .option('backbones', { type: 'string', default: 'resnet50,dino_vits16', describe: 'comma-separated backbones to compare with LPIPS' })
      .option('pool-sizes', { type: 'string', default: '32,128,512', describe: 'pool sizes at which LPIPS ranking is timed (1.85 MiB per image in memory)' })
      .option('embed-pool-sizes', { type: 'string', default: '1024,4096,16384', describe: 'pool sizes at which embedding ranking is timed' })
      .option('size', { type: 'number', default: 224, describe: 'LPIPS input side in pixels' })
      .option('batch', { type: 'number', default: 4, describe: 'images per timed embedding batch' })
      .option('repeats', { type: 'number', default: 3, describe: 'least timed repetitions after a warm-up (fastest reported; short operations repeat for 0.3 s)' })
      .option('k', { type: 'number', default: 50, describe: 'neighbours kept per query' })
      .option('query-batch', { type: 'number', default: 32, describe: 'queries ranked together in the batched measurement (0: skip it)' })
      .option('lpips-weights', { type: 'string', describe: 'safetensors with torchvision AlexNet names (features.0.weight …) and optional LPIPS lin*.model.1.weight; default random' })
      .option('out', { type: 'string', describe: 'also write the Markdown table to this file' })
      .option('json', { type: 'string', describe: 'also write the raw measurements as JSON to this file' })
      .example('dcd bench similarity --backbones resnet50 --pool-sizes 64,256,1024', '')
      .epilogue(seeDocs('docs/benchmarks.md')),
  handler: async (argv) => {
    await useBackend(argv.backend);
    let lpipsWeights;
    if (argv['lpips-weights']) {
      const { readSafetensors } = await import('../../models/safetensors.js');
      const { tensors } = await readSafetensors(argv['lpips-weights']);
      lpipsWeights = new Map(
        [...tensors].map(([key, t]) => {
          if (!(t.data instanceof Float32Array))
            throw new WeightsError(`${argv['lpips-weights']}: tensor ${key} is ${t.dtype}; LPIPS weights must be floating point`);
          return [key, { shape: t.shape, data: t.data }];
        }),
      );
    }
    const result = await benchSimilarity({
      backbones: parseList('backbones', argv.backbones),
      poolSizes: parseKs(argv['pool-sizes']),
      embedPoolSizes: parseKs(argv['embed-pool-sizes']),
      size: argv.size,
      batch: argv.batch,
      repeats: argv.repeats,
      k: argv.k,
      queryBatch: argv['query-batch'],
      lpipsWeights,
    });
    const md = similarityMarkdown(result);
    const { atomicWriteFile, atomicWriteJson } = await import('../../core/fsutil.js');
    if (argv.out) await atomicWriteFile(argv.out, md);
    if (argv.json) await atomicWriteJson(argv.json, result);
    process.stdout.write(md);
  },
};

const bench: CommandModule<object, object> = {
  command: 'bench <measurement>',
  describe: 'Measurements on this machine (similarity: LPIPS against embedding distance)',
  builder: (y) => y.command(similarity).demandCommand(1, 'Name a measurement: similarity')
      .example('$0 bench similarity --backbones resnet50 --pool-sizes 64,256,1024', '')
      .epilogue(seeDocs('docs/benchmarks.md')),
  handler: () => undefined,
};

/** yargs command modules of this area (see src/cli/main.ts). */
export const commands: CommandModule<object, any>[] = [retention, bench];
