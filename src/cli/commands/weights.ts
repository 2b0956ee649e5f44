import type { CommandModule } from 'yargs';
import { log } from '../../core/log.js';
import { convertCheckpoint, formatInspect, inspectCheckpoint } from '../../models/convert.js';
import { fetchWeights } from '../../models/fetch.js';
import { getModelSpec, MODEL_SPECS } from '../../models/registry.js';
import { seeDocs } from '../usage.js';

const fetchCmd: CommandModule<object, any> = {
  command: 'fetch <name>',
  describe: 'Download the official weights of a backbone into the cache ($DCD_CACHE, default ~/.cache/dcd), resuming and verifying sha256',
  builder: (y) =>
    y
      .positional('name', { type: 'string', describe: 'registry name (dcd weights list)' })
      .option('url', { type: 'string', describe: 'download from this URL instead of the official one' })
      .option('sha256', { type: 'string', describe: 'expected sha256 (overrides the registry)' })
      .example('$0 weights fetch dino_vits16', '')
      .epilogue(seeDocs('src/models/README.md')),
  handler: async (a) => {
    const r = await fetchWeights(a.name, { url: a.url, sha256: a.sha256 });
    log.info(`${r.downloaded ? 'downloaded' : 'cached'} ${r.file} (sha256 ${r.verified === 'none' ? 'not published, not checked' : `checked (${r.verified})`})`);
    process.stdout.write(`${r.file}\n`);
  },
};

const inspectCmd: CommandModule<object, any> = {
  command: 'inspect <file>',
  describe: 'List the tensors of a checkpoint (PyTorch zip or legacy, safetensors, tfjs): names, dtypes, shapes',
  builder: (y) => y.positional('file', { type: 'string' }).example('$0 weights inspect imagenet_l2_3_0.pt', '')
      .epilogue(seeDocs('src/models/README.md')),
  handler: async (a) => {
    process.stdout.write(formatInspect(a.file, await inspectCheckpoint(a.file)) + '\n');
  },
};

const convertCmd: CommandModule<object, any> = {
  command: 'convert <file>',
  describe: 'Write a checkpoint as safetensors (a file) or tfjs (a folder with model.json + weights.bin)',
  builder: (y) =>
    y
      .positional('file', { type: 'string' })
      .option('to', { choices: ['safetensors', 'tfjs'] as const, demandOption: true })
      .option('out', { type: 'string', demandOption: true, describe: 'output file (safetensors) or folder (tfjs)' })
      .option('backbone', { type: 'string', describe: 'load strictly into this backbone first, so the output has its keys' })
      .example('$0 weights convert dino_deitsmall16_pretrain.pth --backbone dino_vits16 --to safetensors --out vits16.safetensors', '')
      .epilogue(seeDocs('src/models/README.md')),
  handler: async (a) => {
    const r = await convertCheckpoint(a.file, a.to, a.out, a.backbone);
    process.stdout.write(`wrote ${a.out} (${r.tensors} tensors, ${a.to})\n`);
  },
};

const listCmd: CommandModule<object, any> = {
  command: 'list',
  describe: 'List the registered backbones with their official weight files',
  builder: (y) =>
    y
      .example('$0 weights list', '')
      .epilogue(seeDocs('src/models/README.md')),
  handler: async () => {
    for (const name of Object.keys(MODEL_SPECS)) {
      const s = getModelSpec(name);
      const w = s.weights ? `${s.weights.file}${s.weights.url ? '' : ' (URL: give --url)'}` : '-';
      process.stdout.write(`${name.padEnd(24)} ${String(s.numFeatures).padStart(5)}  ${s.preprocess.resize}/${s.preprocess.crop}  ${w}\n`);
    }
  },
};

/** yargs command modules of this area (see src/cli/main.ts). */
export const commands: CommandModule<object, any>[] = [
  {
    command: 'weights <command>',
    describe: 'Official checkpoints: fetch, inspect, convert, list',
    builder: (y) => y.command(fetchCmd).command(inspectCmd).command(convertCmd).command(listCmd).demandCommand(1)
      .example('$0 weights fetch dino_vits16', '')
      .epilogue(seeDocs('src/models/README.md')),
    handler: () => undefined,
  },
];
