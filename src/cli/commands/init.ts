import { existsSync } from 'node:fs';
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { ConfigError } from '../../core/errors.js';
import { atomicWriteFile } from '../../core/fsutil.js';
import { progress } from '../../core/log.js';
import { loadConfig } from '../../core/config.js';
import { detectFolderLayout, inspectFolderDataset } from '../../data/folder-layout.js';
import { initConfigYaml, sizeFromData } from '../../pipeline/init-config.js';
import { checkConfig } from '../../pipeline/config-check.js';
import { seeDocs } from '../usage.js';

const init: CommandModule<object, any> = {
  command: 'init <dir>',
  describe: 'Scan a folder dataset (train/ test/ mfreq/ complement/ + pool.csv), print what it holds, write a config that runs as it is',
  builder: (y) =>
    y
      .positional('dir', { type: 'string', describe: 'folder with the sets named by role, pool.csv (and classes.txt, subset.txt, contexts.csv) beside them' })
      .option('out', { type: 'string', describe: 'config file to write (default: DIR/dcd.yaml)' })
      .option('name', { type: 'string', describe: 'experiment name (default: the folder\'s name)' })
      .option('force', { type: 'boolean', default: false, describe: 'overwrite an existing config' })
      .option('train', { type: 'string', describe: 'train set folder when it is not DIR/train' })
      .option('test', { type: 'string', describe: 'test set folder when it is not DIR/test' })
      .option('mfreq', { type: 'string', describe: 'debug-seed deployment set when it is not DIR/mfreq' })
      .option('complement', { type: 'string', describe: 'debug-heldout deployment set when it is not DIR/complement' })
      .option('pool', { type: 'string', describe: 'pool list when it is not DIR/pool.csv (.tsv, .jsonl, .arrow)' })
      .option('concurrency', { type: 'number', default: 4, describe: 'images decoded at a time' })
      .option('max-listed', { type: 'number', default: 20, describe: 'unreadable images listed one by one' })
      .example('$0 init data/ --out dcd.yaml && dcd run dcd.yaml', '')
      .epilogue(seeDocs('README.md (Your own data)', 'docs/config.md')),
  handler: async (a) => {
    const layout = detectFolderLayout(a.dir, { train: a.train, test: a.test, mfreq: a.mfreq, complement: a.complement, pool: a.pool });
    const out = path.resolve(a.out ?? path.join(layout.dir, 'dcd.yaml'));
    if (existsSync(out) && !a.force) throw new ConfigError(`${out} exists; pass --force to overwrite it, or --out another file`);
    const w = (s: string) => process.stdout.write(s + '\n');
    w(`folder dataset ${layout.dir}`);
    for (const k of ['train', 'test', 'mfreq', 'complement', 'pool', 'classes', 'contexts'] as const) if (layout.spec[k]) w(`  ${k.padEnd(10)} ${layout.spec[k]}`);
    if (layout.subset) w(`  ${'subset'.padEnd(10)} ${layout.subset}`);
    let bar: ReturnType<typeof progress> | undefined;
    const ins = await inspectFolderDataset(layout, { concurrency: a.concurrency, onTotal: (n) => (bar = progress('init: decoding', n)), onProgress: (n) => bar?.tick(n) });
    bar?.stop();
    // folders that hold pool images belong to the pool
    const poolDirs = new Set(ins.data.pool.filter((r) => r.path).map((r) => path.relative(layout.dir, r.path).split(path.sep)[0]));
    for (const o of layout.others.filter((x) => !poolDirs.has(x)))
      w(`  other folder ${o}/: not a role; if it is one, rerun with --train/--test/--mfreq/--complement ${o} (or set data.folders.<role> in the config)`);
    const c = ins.counts;
    w(`${ins.data.classes.length} classes (${layout.spec.classes ? 'order of classes.txt' : 'sorted class folders of train'}):`);
    w(`  ${'class'.padEnd(24)} ${['train', 'test', 'mfreq', 'complement', 'pool'].map((s) => s.padStart(11)).join('')}`);
    for (const [i, pc] of ins.perClass.entries())
      w(`  ${(pc.name + (ins.subset.includes(i) ? ' *' : '')).padEnd(24)} ${[pc.train, pc.test, pc.mfreq, pc.complement, pc.pool].map((n) => String(n).padStart(11)).join('')}`);
    w(`  ${'total'.padEnd(24)} ${[c.train, c.test, c.mfreq, c.complement, c.pool].map((n) => String(n ?? 0).padStart(11)).join('')}`);
    w(`  * subset class (${layout.subset ? 'subset.txt' : 'the pool\'s weak labels'})`);
    const withTruth = ins.data.pool.filter((r) => r.context?.includes('"true_label"')).length;
    const withCtx = ins.data.pool.filter((r) => r.context?.includes('"context"')).length;
    w(`pool: ${ins.data.pool.length} images${withTruth ? `, ${withTruth} with true_label` : ''}${withCtx ? `, ${withCtx} with context` : ''}`);
    if (ins.data.stray.length) w(`ignored ${ins.data.stray.length} file(s) outside class folders, e.g. ${ins.data.stray[0]!.role}/${ins.data.stray[0]!.file}`);
    if (ins.unreadable.length) {
      w(`${ins.unreadable.length} image(s) could not be read (the run skips and lists them):`);
      for (const u of ins.unreadable.slice(0, a.maxListed)) w(`  ${u.set}\t${u.path}\t${u.reason}`);
      if (ins.unreadable.length > a.maxListed) w(`  ... and ${ins.unreadable.length - a.maxListed} more`);
    } else w('every image could be read');
    const sizing = sizeFromData(ins);
    const name = (a.name ?? path.basename(layout.dir)).replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'folders';
    await atomicWriteFile(out, initConfigYaml(layout, ins, sizing, out, name));
    // the written config must load and pass the run's checks
    checkConfig(loadConfig(out), out);
    for (const x of sizing.warnings) w(`warning: ${x}`);
    w(`wrote ${out} (image_size ${sizing.imageSize}, model ${sizing.model}, ${sizing.epochs} epochs, k_train sized by the run to ${sizing.poolShare} of the pool, ssl backbone ${sizing.sslSteps} steps, seeds ${sizing.seeds.join(',')} in world ${sizing.seeds[0]})`);
    w(`next: dcd run ${path.relative(process.cwd(), out) || out}`);
  },
};

export const commands = [init];
