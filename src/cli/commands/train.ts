import type { CommandModule } from 'yargs';
import { useBackend } from '../backend.js';
import { ConfigError } from '../../core/errors.js';
import { log } from '../../core/log.js';
import { trainFromFiles, type ManifestPart } from '../../train/manifest-training.js';
import type { Schedule } from '../../train/schedule.js';
import { seeDocs } from '../usage.js';

/** `FILE` or `FILE:WEIGHT` (the weight multiplies the part's per-row weights). */
function parsePart(s: string, flag: string): ManifestPart {
  const m = /^(.*):([0-9.eE+-]+)$/.exec(s);
  if (!m) return { file: s };
  const w = Number(m[2]);
  if (!(Number.isFinite(w) && w >= 0)) throw new ConfigError(`${flag} ${s}: weight after ':' must be a number ≥ 0`);
  return { file: m[1]!, weight: w };
}

function parseSchedule(a: { schedule: string; milestones?: (number | string)[]; gamma: number }): Schedule {
  switch (a.schedule) {
    case 'cosine':
      return { kind: 'cosine' };
    case 'constant':
      return { kind: 'constant' };
    case 'step': {
      const ms = (a.milestones ?? []).flatMap((v) => String(v).split(',')).map(Number);
      if (!ms.length || ms.some((v) => !(Number.isInteger(v) && v > 0))) throw new ConfigError('--schedule step needs --milestones E1,E2,... (positive epochs)');
      return { kind: 'step', milestones: ms, gamma: a.gamma };
    }
    default:
      throw new ConfigError(`--schedule: expected cosine, step or constant, received "${a.schedule}"`);
  }
}

const train: CommandModule<object, any> = {
  command: 'train',
  describe: 'Train (or fine-tune) a classifier on a manifest plus added sets, with per-sample weights; resumable',
  builder: (y) =>
    y
      .option('model', { type: 'string', demandOption: true, describe: 'registry name: resnet50, resnet_tiny, ...' })
      .option('train', { type: 'string', demandOption: true, describe: 'base training manifest (.arrow), optionally FILE:WEIGHT' })
      .option('add', { type: 'array', string: true, default: [], describe: 'added set(s) FILE[:WEIGHT]; a `weight` column gives per-row weights' })
      .option('out', { type: 'string', demandOption: true, describe: 'run folder: checkpoints, metrics.jsonl, model.safetensors' })
      .option('init', { type: 'string', describe: 'fine-tune from this checkpoint (new head when the class count differs)' })
      .option('num-classes', { type: 'number', describe: 'default: the manifest\'s dcd.classes, else 1 + largest label' })
      .option('epochs', { type: 'number', default: 1 })
      .option('batch-size', { type: 'number', default: 32, describe: 'effective batch (images per optimiser step)' })
      .option('micro-batch', { type: 'number', describe: 'images per forward pass; gradients accumulate over batch-size/micro-batch' })
      .option('lr', { type: 'number', default: 0.1 })
      .option('momentum', { type: 'number', default: 0.9 })
      .option('nesterov', { type: 'boolean', default: true })
      .option('weight-decay', { type: 'number', default: 1e-4 })
      .option('decay-bn-bias', { type: 'boolean', default: false, describe: 'apply weight decay to BN weights and biases too' })
      .option('schedule', { type: 'string', default: 'cosine', choices: ['cosine', 'step', 'constant'] })
      .option('milestones', { type: 'array', describe: 'epochs of the step schedule, e.g. 30,60' })
      .option('gamma', { type: 'number', default: 0.1 })
      .option('warmup-epochs', { type: 'number', default: 0 })
      .option('label-smoothing', { type: 'number', default: 0 })
      .option('class-balance', { type: 'boolean', default: false, describe: 're-weight classes to equal total weight' })
      .option('seed', { type: 'number', default: 0 })
      .option('augment', { type: 'boolean', default: true, describe: 'random-resized crop + flip' })
      .option('resize', { type: 'number' })
      .option('crop', { type: 'number' })
      .option('checkpoint-every', { type: 'number', describe: 'also checkpoint every N steps' })
      .option('resume', { type: 'boolean', default: true, describe: 'continue from the run folder\'s last checkpoint' })
      .option('max-steps', { type: 'number', describe: 'stop after N optimiser steps' })
      .example('$0 train --model resnet_tiny --train train.arrow --add debug-train.arrow:1 --out runs/dcd --epochs 5 --batch-size 64 --lr 0.05', '')
      .epilogue(seeDocs('docs/method.md')),
  handler: async (a) => {
    await useBackend(a.backend);
    const r = await trainFromFiles({
      modelName: a.model,
      parts: [parsePart(a.train, '--train'), ...(a.add as string[]).map((s) => parsePart(s, '--add'))],
      outDir: a.out,
      init: a.init,
      numClasses: a.numClasses,
      epochs: a.epochs,
      batchSize: a.batchSize,
      microBatch: a.microBatch,
      lr: a.lr,
      momentum: a.momentum,
      nesterov: a.nesterov,
      weightDecay: a.weightDecay,
      decayNormAndBias: a.decayBnBias,
      schedule: parseSchedule({ schedule: a.schedule, milestones: a.milestones, gamma: a.gamma } as { schedule: string; milestones?: (number | string)[]; gamma: number }),
      warmupEpochs: a.warmupEpochs,
      labelSmoothing: a.labelSmoothing,
      classBalance: a.classBalance,
      seed: a.seed,
      augment: a.augment,
      resize: a.resize,
      crop: a.crop,
      checkpointEvery: a.checkpointEvery,
      resume: a.resume,
      maxSteps: a.maxSteps,
    });
    log.info(`trained ${r.steps} steps${r.resumedFrom ? ` (resumed at ${r.resumedFrom})` : ''}, last loss ${r.lastLoss.toFixed(4)} → ${r.weightsFile}`);
    process.stdout.write(r.weightsFile + '\n');
  },
};

/** yargs command modules of this area (see src/cli/main.ts). */
export const commands: CommandModule<object, any>[] = [train];
