#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import yargs, { type CommandModule } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { DcdError } from '../core/errors.js';
import { diskFullMessage, isDiskFull } from '../core/fsutil.js';
import { setLogLevel } from '../core/log.js';
import { DCD_VERSION } from '../core/version.js';
import { commandPath, seeDocs, usageHint, UsageError } from './usage.js';
import { commands as weights } from './commands/weights.js';
import { commands as embed } from './commands/embed.js';
import { commands as data } from './commands/data.js';
import { commands as pool } from './commands/pool.js';
import { commands as retrieval } from './commands/retrieval.js';
import { commands as train } from './commands/train.js';
import { commands as evaluation } from './commands/eval.js';
import { commands as run } from './commands/run.js';
import { commands as analysis } from './commands/analysis.js';
import { commands as init } from './commands/init.js';
import { commands as slices } from './commands/slices.js';
import { commands as exportCmd } from './commands/export.js';

/** Every command module, grouped by the area that owns it. */
const ALL: CommandModule<object, any>[] = [...weights, ...embed, ...data, ...pool, ...retrieval, ...train, ...evaluation, ...run, ...analysis, ...init, ...slices, ...exportCmd];

/** Runs the dcd CLI on `argv` (without node and script). Only here are errors turned into exit codes. */
export async function main(argv: string[]): Promise<number> {
  let y = yargs(argv)
    .scriptName('dcd')
    .version(DCD_VERSION)
    .option('backend', {
      type: 'string',
      describe: 'tfjs backend: auto, tensorflow, webgpu, native, wasm, cpu (env DCD_BACKEND; a software WebGPU adapter only by name)',
      global: true,
    })
    .option('verbose', { type: 'boolean', global: true, describe: 'more on stderr: the backend chosen, debug lines (same as DCD_LOG=debug)' })
    .middleware((a) => void (a.verbose && setLogLevel('debug')))
    .strict()
    .demandCommand(1, 'Name a command; `dcd --help` lists them.')
    .recommendCommands()
    .example('$0 run configs/demo.yaml', 'the demo: the whole pipeline, then the result table')
    .epilogue(`Every command has its own help: dcd <command> --help.\n${seeDocs('README.md', 'docs/config.md')}`)
    .fail((msg, err, usage) => {
      if (err && !msg) throw err;
      throw new UsageError(msg ?? err.message, commandPath(usage));
    })
    .wrap(Math.min(110, process.stdout.columns ?? 100));
  for (const c of ALL) y = y.command(c);
  try {
    await y.parseAsync();
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`dcd: ${e.message}\n${usageHint(e.command)}\n`);
      return 2;
    }
    if (e instanceof DcdError) {
      process.stderr.write(`dcd: error: ${e.message}\n`);
      return e.exitCode;
    }
    if (isDiskFull(e)) {
      process.stderr.write(`dcd: error: ${diskFullMessage((e as NodeJS.ErrnoException).path, e)}\n`);
      return 1;
    }
    process.stderr.write(`dcd: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 70;
  }
}

/**
 * Whether node was started on this file: through any symlink (`npm link`, `npm install -g`,
 * `npx dcd`, node_modules/.bin), so both sides are compared as real paths.
 */
function isMain(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  main(hideBin(process.argv)).then((code) => {
    process.exitCode = code;
  });
}
