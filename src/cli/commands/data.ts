import type { CommandModule } from 'yargs';
import { buildManifestFile, checkManifestImages, MANIFEST_KINDS } from '../../data/build.js';
import { formatSummary, readManifest, summarizeManifest, writeManifest } from '../../data/manifest.js';
import { progress } from '../../core/log.js';
import { seeDocs } from '../usage.js';

const manifest: CommandModule<object, any> = {
  command: 'manifest <kind> <path>',
  describe: 'Build a manifest (Arrow) of a data set and print counts per set and class',
  builder: (y) =>
    y
      .positional('kind', { choices: MANIFEST_KINDS, describe: 'data set layout' })
      .positional('path', { type: 'string', describe: 'root folder (or list file for weak-pool, folder of IDX files for fashion-mnist)' })
      .option('out', { type: 'string', demandOption: true, describe: 'manifest file to write (.arrow)' })
      .option('set', { type: 'string', describe: 'set name for every row (default depends on kind)' })
      .option('classes', { type: 'string', describe: 'class-subset file (wnids or indices): keep only these classes' })
      .option('labels', { type: 'string', describe: 'ilsvrc-val: label file, LOC_val_solution.csv or devkit ground truth (by ending)' })
      .option('loc-solution', { type: 'string', describe: 'ilsvrc-val: LOC_val_solution.csv' })
      .option('ground-truth', { type: 'string', describe: 'ilsvrc-val: the devkit (ILSVRC2012_devkit_t12.tar.gz or its folder), or its ILSVRC2012_validation_ground_truth.txt with --id-map' })
      .option('id-map', { type: 'string', describe: 'ilsvrc-val: ILSVRC2012_ID → wnid map (the devkit, its data/meta.mat, map_clsloc.txt or CSV)' })
      .option('variant', { type: 'string', describe: 'v2: matched-frequency | threshold0.7 | top-images' })
      .option('threshold', { type: 'string', describe: 'v2-complement: Threshold0.7 folder' })
      .option('top-images', { type: 'string', describe: 'v2-complement: TopImages folder' })
      .option('hash', { type: 'boolean', default: false, describe: 'fill the sha256 column' })
      .option('max-classes', { type: 'number', default: 50, describe: 'classes shown in the summary' })
      .example('$0 data manifest v2 imagenetv2-matched-frequency-format-val --variant matched-frequency --out mfreq.arrow', '')
      .epilogue(seeDocs('src/data/README.md')),
  handler: async (a) => {
    const s = await buildManifestFile(a.kind, a.path, a.out, {
      set: a.set,
      classes: a.classes,
      labels: a.labels,
      locSolution: a.locSolution,
      groundTruth: a.groundTruth,
      idMap: a.idMap,
      variant: a.variant,
      threshold: a.threshold,
      topImages: a.topImages,
      hash: a.hash,
    });
    process.stdout.write(`wrote ${a.out}\n${formatSummary(s, a.maxClasses)}\n`);
  },
};

const summary: CommandModule<object, any> = {
  command: 'summary <manifest>',
  describe: 'Print counts per set and class of a manifest',
  builder: (y) => y.positional('manifest', { type: 'string' }).option('max-classes', { type: 'number', default: 50 })
      .example('$0 data summary mfreq.arrow', '')
      .epilogue(seeDocs('src/data/README.md')),
  handler: async (a) => {
    const m = await readManifest(a.manifest);
    process.stdout.write(formatSummary(summarizeManifest(m.rows), a.maxClasses) + '\n');
  },
};

const check: CommandModule<object, any> = {
  command: 'check <manifest>',
  describe: 'Decode every image of a manifest; list the ones that fail and write a manifest of the rest',
  builder: (y) =>
    y
      .positional('manifest', { type: 'string' })
      .option('out', { type: 'string', describe: 'manifest of the images that decode (.arrow)' })
      .option('concurrency', { type: 'number', default: 2 })
      .option('max-pixels', { type: 'number', describe: 'refuse images with more pixels (default 100M)' })
      .example('$0 data check pool/pool.arrow --out pool/pool-ok.arrow', '')
      .epilogue(seeDocs('src/data/README.md')),
  handler: async (a) => {
    const m = await readManifest(a.manifest);
    const bar = progress('check', m.rows.length);
    const r = await checkManifestImages(m.rows, { concurrency: a.concurrency, limitInputPixels: a.maxPixels, onProgress: (n) => bar.tick(n) });
    bar.stop();
    for (const b of r.bad) process.stdout.write(`bad\t${b.row.id}\t${b.row.path}\t${b.reason}\n`);
    const kinds: Record<string, number> = {};
    for (const b of r.bad) {
      const k = b.reason.split(/[:(]/)[0]!.trim();
      kinds[k] = (kinds[k] ?? 0) + 1;
    }
    process.stdout.write(`${r.good.length} of ${m.rows.length} images decode; ${r.bad.length} bad${r.bad.length ? ': ' + Object.entries(kinds).map(([k, v]) => `${k} ${v}`).join(', ') : ''}\n`);
    if (a.out) {
      await writeManifest(a.out, r.good, { ...m.meta, 'dcd.checked_from': a.manifest });
      process.stdout.write(`wrote ${a.out}\n`);
    }
  },
};

/** yargs command modules of this area (see src/cli/main.ts). */
export const commands: CommandModule<object, any>[] = [
  {
    command: 'data <command>',
    describe: 'Data sets: build and inspect manifests',
    builder: (y) => y.command(manifest).command(summary).command(check).demandCommand(1)
      .example('$0 data check pool/pool.arrow --out pool/pool-ok.arrow', '')
      .epilogue(seeDocs('src/data/README.md')),
    handler: () => undefined,
  },
];
