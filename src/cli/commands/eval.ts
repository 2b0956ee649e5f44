import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { useBackend } from '../backend.js';
import { log } from '../../core/log.js';
import { evalFromFiles, failuresFromFiles } from '../../eval/jobs.js';
import { readReportInput, writeReport } from '../../eval/report.js';
import { seeDocs } from '../usage.js';

const pct = (v: number) => (Number.isNaN(v) ? 'n/a' : `${(100 * v).toFixed(2)}%`);

const evaluate: CommandModule<object, any> = {
  command: 'eval',
  describe: 'Evaluate a checkpoint on a manifest: predictions Arrow (id, label, top-5) + accuracies JSON',
  builder: (y) =>
    y
      .option('model', { type: 'string', demandOption: true, describe: 'registry name of the checkpoint\'s architecture' })
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'weights (safetensors, PyTorch, tfjs)' })
      .option('data', { type: 'string', demandOption: true, describe: 'manifest .arrow to evaluate on' })
      .option('out', { type: 'string', demandOption: true, describe: 'predictions .arrow (metrics go to the same name .json)' })
      .option('classes', { type: 'string', describe: 'class-subset file (wnids or indices) for the restricted accuracy' })
      .option('num-classes', { type: 'number', describe: 'head size (default: read from the checkpoint)' })
      .option('batch-size', { type: 'number', default: 32 })
      .option('resize', { type: 'number' })
      .option('crop', { type: 'number' })
      .example('$0 eval --model resnet50 --checkpoint runs/dcd/model.safetensors --data mfreq.arrow --out preds/mfreq.arrow --classes subset.txt', '')
      .epilogue(seeDocs('docs/method.md')),
  handler: async (a) => {
    await useBackend(a.backend);
    const r = await evalFromFiles({ modelName: a.model, checkpoint: a.checkpoint, manifest: a.data, out: a.out, classes: a.classes, numClasses: a.numClasses, batchSize: a.batchSize, resize: a.resize, crop: a.crop });
    process.stdout.write(`images ${r.all.n}  top-1 ${pct(r.all.top1)}  top-5 ${pct(r.all.top5)}`);
    if (r.subset) process.stdout.write(`  subset (${r.subset.perClass.size} classes, ${r.subset.n} images) top-1 ${pct(r.subset.top1)}`);
    process.stdout.write('\n');
    log.info(`predictions → ${a.out}, metrics → ${r.metricsFile}`);
  },
};

const failures: CommandModule<object, any> = {
  command: 'failures',
  describe: 'Debug-seed / debug-heldout sets: MFreq / Complement images of the subset classes that every model gets wrong',
  builder: (y) =>
    y
      .option('mfreq', { type: 'string', demandOption: true, describe: 'MFreq manifest' })
      .option('complement', { type: 'string', demandOption: true, describe: 'Complement manifest' })
      .option('pred-mfreq', { type: 'array', string: true, default: [], describe: 'predictions on MFreq, one file per model' })
      .option('pred-complement', { type: 'array', string: true, default: [], describe: 'predictions on Complement, same model order' })
      .option('checkpoint', { type: 'array', string: true, default: [], describe: 'or checkpoints to evaluate (with --model)' })
      .option('model', { type: 'string', describe: 'registry name of --checkpoint files' })
      .option('classes', { type: 'string', describe: 'class subset (wnids or indices)' })
      .option('discover', { type: 'number', describe: 'discover the subset: classes with ≥ t MFreq images wrong for every model' })
      .option('batch-size', { type: 'number', default: 32 })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder: seed.arrow, heldout.arrow, classes.txt, per-class CSV' })
      .example('$0 failures --mfreq mfreq.arrow --complement compl.arrow --pred-mfreq p/mf.arrow --pred-complement p/co.arrow --classes subset.txt --out failures/', '')
      .epilogue(seeDocs('docs/method.md')),
  handler: async (a) => {
    if ((a.checkpoint as string[]).length) await useBackend(a.backend);
    const f = await failuresFromFiles({
      mfreq: a.mfreq,
      complement: a.complement,
      predMfreq: a.predMfreq,
      predComplement: a.predComplement,
      checkpoints: a.checkpoint,
      modelName: a.model,
      classes: a.classes,
      discover: a.discover,
      out: a.out,
      batchSize: a.batchSize,
    });
    process.stdout.write(`models ${f.models}  classes ${f.classes.length}  seed ${f.seed.length}  heldout ${f.heldout.length}\n`);
    log.info(`failure sets → ${a.out}`);
  },
};

const report: CommandModule<object, any> = {
  command: 'report',
  describe: 'Paper-layout report (Markdown, CSV, JSON, HTML, Figure-10 plots) from a results JSON file',
  builder: (y) =>
    y
      .option('results', { type: 'string', demandOption: true, describe: 'JSON: {title?, runs: [{method, seed?, seedAcc, heldoutAcc, subset, all, perClass?}], retrieval?, retention?} (accuracies as fractions)' })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder' })
      .example('$0 report --results runs/demo/results.json --out runs/demo/report', '')
      .epilogue(seeDocs('README.md (Quick start)')),
  handler: async (a) => {
    const files = await writeReport(await readReportInput(a.results), a.out);
    // the same table `dcd run` prints (runs of several seeds: with their paired differences)
    process.stdout.write(readFileSync(path.join(a.out, files.markdown), 'utf8'));
    log.info(`report → ${[files.markdown, files.csv, files.json, files.html].filter(Boolean).map((f) => path.join(a.out, f!)).join(', ')}`);
  },
};

/** yargs command modules of this area (see src/cli/main.ts). */
export const commands: CommandModule<object, any>[] = [evaluate, failures, report];
