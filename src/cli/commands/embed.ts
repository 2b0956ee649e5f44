import type { CommandModule } from 'yargs';
import { useBackend } from '../backend.js';
import { log } from '../../core/log.js';
import { checkImagesInput } from '../../data/adapters.js';
import { setComputePrecision, type Precision } from '../../backends/precision.js';
import { embedImages, mergeEmbeddings, parseShard } from '../../infer/embed.js';
import { seeDocs } from '../usage.js';

const run: CommandModule<object, any> = {
  command: '$0',
  describe: 'Embed images with a backbone into an Arrow file (id, embedding, label)',
  builder: (y) =>
    y
      .option('backbone', { type: 'string', demandOption: true, describe: 'registry name, e.g. dino_vits16, resnet50_robust' })
      .option('weights', { type: 'string', demandOption: true, describe: 'checkpoint file (PyTorch, safetensors, tfjs) or "random"' })
      .option('images', { type: 'string', demandOption: true, describe: 'folder of images (recursive) or manifest .arrow' })
      .option('out', { type: 'string', demandOption: true, describe: 'output Arrow file' })
      .option('batch-size', { type: 'number', default: 32 })
      .option('resize', { type: 'number', describe: 'shorter side to N (default: the backbone\'s)' })
      .option('crop', { type: 'number', describe: 'centre crop N (default: the backbone\'s)' })
      .option('shard', { type: 'string', describe: 'I/N: embed the I-th of N disjoint parts (by sorted id, index ≡ I mod N)' })
      .option('seed', { type: 'number', default: 0, describe: 'seed of --weights random' })
      .option('precision', { type: 'string', choices: ['fp32', 'bf16'], default: 'fp32', describe: 'bf16: bf16 convolutions/matmuls with fp32 accumulation (native backend; fp32 elsewhere, with a notice)' })
      .example('$0 embed --backbone dino_vits16 --weights dino_deitsmall16_pretrain.pth --images pool/ --out pool.arrow', '')
      .epilogue(seeDocs('src/infer/README.md')),
  handler: async (a) => {
    checkImagesInput(a.images); // before the backend and the weights load
    await useBackend(a.backend);
    const p = setComputePrecision(a.precision as Precision);
    if (p.notice) log.warn(p.notice);
    else if (p.precision === 'bf16') log.info('precision bf16 (convolutions and matmuls: bf16 inputs, fp32 accumulation)');
    const s = await embedImages({
      backbone: a.backbone,
      weights: a.weights,
      images: a.images,
      out: a.out,
      batchSize: a.batchSize,
      resize: a.resize,
      crop: a.crop,
      shard: a.shard ? parseShard(a.shard) : undefined,
      seed: a.seed,
    });
    const rate = s.rows / Math.max(1e-3, s.seconds);
    log.info(
      `embedded ${s.rows} images (${s.dim}-d), skipped ${s.skipped.length}${s.skippedFile ? ` (listed in ${s.skippedFile})` : ''}, in ${s.seconds.toFixed(1)} s (${rate.toFixed(1)} img/s) → ${s.out}`,
    );
  },
};

const merge: CommandModule<object, any> = {
  command: 'merge <shards..>',
  describe: 'Concatenate `dcd embed --shard` outputs into one file (sorted by id)',
  builder: (y) =>
    y
      .positional('shards', { type: 'string', array: true })
      .option('out', { type: 'string', demandOption: true })
      .example('$0 embed merge pool.*.arrow --out pool.arrow', '')
      .epilogue(seeDocs('src/infer/README.md')),
  handler: async (a) => {
    const r = await mergeEmbeddings(a.shards, a.out);
    process.stdout.write(`wrote ${a.out} (${r.rows} rows from ${a.shards.length} shards)\n`);
  },
};

/** yargs command modules of this area (see src/cli/main.ts). */
export const commands: CommandModule<object, any>[] = [
  {
    command: 'embed',
    describe: 'Embed images with a backbone (dcd embed --help); `dcd embed merge` joins shards',
    builder: (y) => y.command(merge).command(run)
      .example('$0 embed --backbone resnet50 --weights resnet50.pth --images pool/ --out pool.arrow', '')
      .epilogue(seeDocs('src/infer/README.md')),
    handler: () => undefined,
  },
];
