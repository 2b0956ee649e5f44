import type { Argv, CommandModule } from 'yargs';
import { parseRange, parseSliceCount, slicesFiles } from '../../analysis/slices-files.js';
import { seeDocs } from '../usage.js';

const slices: CommandModule<object, any> = {
  command: 'slices',
  describe: 'Failure slices: cluster the debug-seed failures in a backbone\'s space (seeded k-means++), assign heldout images, per-slice accuracy',
  builder: (y: Argv) =>
    y
      .option('seed', { type: 'string', array: true, demandOption: true, describe: 'seed embeddings (id, label, embedding) of one backbone' })
      .option('heldout', { type: 'string', array: true, describe: 'heldout embeddings of the same backbone: each image goes to its nearest slice' })
      .option('manifest', { type: 'string', array: true, describe: 'manifests with a context column (seed and heldout): each slice names its dominant context' })
      .option('predictions', { type: 'string', array: true, describe: 'METHOD=predictions.arrow (id, label, pred): heldout accuracy per slice' })
      .option('k', { type: 'string', default: 'auto', describe: 'number of slices, or auto: the best mean silhouette over --k-range (config slices.k)' })
      .option('k-range', { type: 'string', default: '2,8', describe: 'min,max slices tried by --k auto (config slices.k_range)' })
      .option('random-seed', { type: 'number', default: 0, describe: 'seed of the k-means++ starts (config slices.seed)' })
      .option('restarts', { type: 'number', default: 5, describe: 'k-means++ starts; the lowest inertia is kept' })
      .option('central', { type: 'number', default: 6, describe: 'most central seed images listed per slice' })
      .option('normalize', { type: 'boolean', default: true, describe: 'L2-normalise features first (--no-normalize: raw features)' })
      .option('out', { type: 'string', demandOption: true, describe: 'slices.arrow (id, set, label, slice, distance); also .csv and .json (the slices described)' })
      .example('dcd slices --seed emb/ssl-seed.arrow --heldout emb/ssl-heldout.arrow --manifest seed.arrow heldout.arrow --predictions dcd-ssl=pred.arrow --out slices.arrow', '')
      .epilogue(seeDocs('docs/slices-and-cleaning.md')),
  handler: async (a) => {
    const r = await slicesFiles({
      seed: a.seed,
      heldout: a.heldout,
      manifest: a.manifest,
      predictions: a.predictions,
      options: { k: parseSliceCount(a.k), range: parseRange(a.kRange), seed: a.randomSeed, restarts: a.restarts, central: a.central, normalize: a.normalize },
      out: a.out,
    });
    const sizes = r.slices.slices.map((s) => s.members.length).join(', ');
    process.stderr.write(`dcd: ${r.slices.slices.length} slice(s) of ${r.seedIds.length} seed image(s) (sizes ${sizes}); ${r.heldoutIds.length} heldout image(s) assigned\n`);
    for (const f of r.files) process.stdout.write(`${f}\n`);
  },
};

/** yargs command modules of this area (see src/cli/main.ts). */
export const commands: CommandModule<object, any>[] = [slices];
