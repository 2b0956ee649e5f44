import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { ConfigError } from '../../core/errors.js';
import { readExport } from '../../export/rows.js';
import { EXPORT_FORMATS, writeExport, type ExportFormat } from '../../export/write.js';
import { seeDocs } from '../usage.js';

interface ExportArgs {
  run: string;
  format: ExportFormat;
  out?: string;
}

const exportRun: CommandModule<object, any> = {
  command: 'export <run>',
  describe: 'Write a finished run\'s picks and seed/heldout sets as CSV, Parquet or a FiftyOne dataset folder',
  builder: (y) =>
    y
      .positional('run', { type: 'string', demandOption: true, describe: 'run folder dcd run wrote (runs/<experiment.name>)' })
      .option('format', { type: 'string', choices: EXPORT_FORMATS, default: 'csv' as ExportFormat, describe: 'csv: picks.csv + sets.csv; parquet: picks.parquet + sets.parquet; fiftyone: fiftyone/ (FiftyOneImageClassificationDataset)' })
      .option('out', { type: 'string', describe: 'output folder (default: RUN/export)' })
      .example('$0 export runs/demo --format parquet', 'picks.parquet and sets.parquet under runs/demo/export/')
      .example('$0 export runs/demo --format fiftyone --out /tmp/demo-fo', 'then in Python: fo.Dataset.from_dir("/tmp/demo-fo/fiftyone", fo.types.FiftyOneImageClassificationDataset)')
      .epilogue(
        'picks.*: one row per pick of every DCD selection (de-val and debug-train): pool id, path/url, weak label, the seed image it was picked for, distance, rank, backbone, true label and context where the pool records them. sets.*: the debug-seed and debug-heldout images with the original model\'s prediction.\n\n' +
          seeDocs('docs/export.md'),
      ),
  handler: async (argv) => {
    const a = argv as unknown as ExportArgs;
    const out = path.resolve(a.out ?? path.join(a.run, 'export'));
    if (a.format === 'fiftyone') {
      const dir = path.join(out, 'fiftyone');
      if (existsSync(dir) && readdirSync(dir).length) throw new ConfigError(`--out: ${dir} exists and is not empty; remove it or give another --out`);
    }
    const data = await readExport(a.run);
    const files = await writeExport(data, a.format, out);
    process.stdout.write(`${data.picks.length} picks, ${data.sets.length} seed/heldout images → ${files.join(', ')}\n`);
  },
};

export const commands = [exportRun];
