/**
 * Every `dcd ...` line in README.md's fenced code blocks (after any `VAR=value` in front) runs as shown, through the real CLI,
 * in a scratch folder that holds what the examples assume (configs/, a small folder dataset
 * in data/, a finished small run in runs/demo). Each example is in exactly one of three lists:
 *
 * - AS_IS: run exactly as written, exit code 0 (and a check of what it printed or wrote);
 * - DRY_RUN: a full run takes minutes to hours, so `--dry-run` is appended: the config loads,
 *   every check before the first stage passes and the plan prints (the full demo run is what
 *   `npm test`'s end-to-end tests and the set-up command cover);
 * - HELP: needs data, checkpoints or network this test does not have (ImageNet, a web pool,
 *   official weights, Arrow files of a real run); `--help` is appended: the command and its
 *   subcommand exist and document themselves (ending with the doc link).
 *
 * An example in none of the lists fails the test: a new README example must be classified here.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnAsync } from './spawn-async.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const ENV = { ...process.env, DCD_LOG: 'quiet' };

/** The `dcd ...` commands of README.md's fenced blocks: continuation lines joined, comments dropped. */
function readmeExamples(text: string): string[] {
  const out: string[] = [];
  let inBlock = false;
  let pending = '';
  for (const raw of text.split('\n')) {
    if (raw.startsWith('```')) {
      inBlock = !inBlock;
      continue;
    }
    if (!inBlock) continue;
    const line = pending + raw.trim();
    if (line.endsWith('\\')) {
      pending = line.slice(0, -1).trimEnd() + ' ';
      continue;
    }
    pending = '';
    // environment assignments in front (FLICKR_API_KEY=... dcd pool search) are dropped
    const cmd = line.replace(/\s+#.*$/, '').replace(/^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+/, '').trim();
    if (cmd.startsWith('dcd ')) out.push(cmd);
  }
  return out;
}

/** Examples run exactly as written, with what their output must show. */
const AS_IS: Record<string, (out: string, cwd: string) => void> = {
  'dcd run configs/demo.yaml --dry-run': (out) => expect(out).toMatch(/\d+ stages: \d+ to run/),
  'dcd init data/ --out dcd.yaml': (out, cwd) => {
    expect(out).toMatch(/pool: \d+ images/);
    expect(existsSync(path.join(cwd, 'dcd.yaml'))).toBe(true);
  },
  'dcd export runs/demo --format parquet': (out, cwd) => {
    expect(out).toMatch(/\d+ picks, \d+ seed\/heldout images/);
    expect(existsSync(path.join(cwd, 'runs/demo/export/picks.parquet'))).toBe(true);
  },
  'dcd export runs/demo --format csv': (out, cwd) => {
    expect(out).toMatch(/\d+ picks/);
    expect(readFileSync(path.join(cwd, 'runs/demo/export/picks.csv'), 'utf8')).toMatch(/^variant,world_seed,backbone,selection,pool_id/);
  },
  'dcd weights list': (out) => expect(out).toMatch(/dino_vits16/),
};

/** Examples whose full run is too long here: run with --dry-run appended (after `dcd init`, for dcd.yaml). */
const DRY_RUN = new Set([
  'dcd run configs/demo.yaml',
  'dcd run configs/demo.yaml --seeds 0 --set select.pool_share=0.02',
  'dcd sweep configs/demo.yaml --grid select.pool_share=0.02,0.05',
  'dcd sweep configs/demo.yaml --backbones ssl,supervised',
  'dcd run dcd.yaml',
]);

/** Examples that need external data, checkpoints or network: their --help is run instead. */
const HELP = new Set([
  'dcd slices --seed emb/ssl-seed.arrow --heldout emb/ssl-heldout.arrow --manifest seed.arrow heldout.arrow --predictions dcd-ssl=pred.arrow --out slices.arrow',
  'dcd select --seed dino/seed.arrow --pool dino/pool.arrow --k-train 46 --k-val 5 --clean knn --out debug-train.arrow',
  'dcd weights fetch dino_vits16',
  'dcd weights inspect imagenet_l2_3_0.pt',
  'dcd weights convert imagenet_l2_3_0.pt --backbone resnet50_robust --to safetensors --out robust.safetensors',
  'dcd embed --backbone dino_vits16 --weights dino_deitsmall16_pretrain.pth --images pool/ --out pool.arrow',
  'dcd embed merge pool.part*.arrow --out pool.arrow',
  'dcd data manifest fashion-mnist /usr/share/datasets/fashion-mnist --out fmnist.arrow',
  'dcd data summary fmnist.arrow',
  'dcd data check pool/pool.arrow --out pool/pool-ok.arrow',
  'dcd pool queries --classes ysub.txt --out queries.jsonl',
  'dcd pool search queries.jsonl --per-query 30000 --out urls.arrow',
  'dcd pool download urls.arrow --out pool/',
  'dcd filter --pool robust/pool.arrow --test robust/mfreq.arrow robust/complement.arrow robust/test.arrow --train robust/train.arrow --val robust/test.arrow --out pool-filtered.arrow',
  'dcd select --seed dino/seed.arrow --pool dino/pool.arrow --only pool-filtered.arrow --k-train 46 --k-val 5 --out debug-train.arrow',
  'dcd baseline random --pool pool-filtered.arrow --counts debug-train.arrow --seed 0 --out random.arrow',
  'dcd train --model resnet_tiny --train train.arrow --add debug-train.arrow:1 --out runs/dcd --epochs 5 --batch-size 64 --lr 0.05',
  'dcd eval --model resnet_tiny --checkpoint runs/dcd/model.safetensors --data test.arrow --out preds/test.arrow',
  'dcd failures --mfreq mfreq.arrow --complement compl.arrow --pred-mfreq a.arrow --pred-complement ac.arrow --classes subset.txt --out failures/',
  'dcd report --results results.json --out report/',
  'dcd retention --backbones dino_vits16,resnet50 --data focus.arrow --embeddings runs/focus --k 1,5,10,20 --out retention/',
  'dcd bench similarity --backbones resnet50,dino_vits16 --pool-sizes 32,128,512 --out similarity.md',
]);

/** Splits a command line into arguments (no quoting in README's examples; a quote would need handling). */
function argsOf(cmd: string): string[] {
  if (/["']/.test(cmd)) throw new Error(`README example with quotes; teach argsOf to split it: ${cmd}`);
  return cmd.split(/\s+/).slice(1);
}

// an example shown twice (Your own data, Commands) runs once
const examples = [...new Set(readmeExamples(readFileSync(path.join(ROOT, 'README.md'), 'utf8')))];
let cwd: string;
const cli = (args: string[]) => spawnAsync('node', [CLI, ...args], { cwd, env: ENV, timeout: 300_000 });

beforeAll(async () => {
  cwd = mkdtempSync(path.join(tmpdir(), 'dcd-readme-'));
  symlinkSync(path.join(ROOT, 'configs'), path.join(cwd, 'configs'));
  // a small folder dataset for `dcd init data/` (the generator is sharp only, not dcd)
  const g = await spawnAsync('node', [path.join(ROOT, 'scripts/make-folder-dataset.mjs'), 'data', '--train', '240', '--test', '120', '--shifted', '96', '--pool', '480', '--size', '16'], { cwd });
  expect(g.status, g.stderr).toBe(0);
  // a finished small run named demo for `dcd export runs/demo` (the demo itself takes minutes)
  const r = await cli(['run', path.join(ROOT, 'test/fixtures/pipeline/tiny.yaml'), '--set', 'experiment.name=demo']);
  expect(r.status, r.stderr).toBe(0);
}, 400_000);

describe('README examples', () => {
  it('README has dcd examples, and every one is classified here', () => {
    expect(examples.length).toBeGreaterThan(15);
    const unknown = examples.filter((e) => !(e in AS_IS) && !DRY_RUN.has(e) && !HELP.has(e));
    expect(unknown, 'classify these README examples in test/readme-examples.test.ts').toEqual([]);
    // the README still shows the examples this test knows how to run
    for (const e of Object.keys(AS_IS)) expect(examples).toContain(e);
  });

  // in README order, so `dcd init` writes dcd.yaml before `dcd run dcd.yaml` reads it
  it('each runs as shown (as is, with --dry-run, or its --help)', async () => {
    const failures: string[] = [];
    const ordered = [...examples].sort((a, b) => Number(b.startsWith('dcd init')) - Number(a.startsWith('dcd init')));
    for (const e of ordered) {
      const args = argsOf(e);
      const mode = e in AS_IS ? 'as is' : DRY_RUN.has(e) ? 'dry run' : 'help';
      const r = await cli(mode === 'dry run' ? [...args, '--dry-run'] : mode === 'help' ? [...args, '--help'] : args);
      if (r.status !== 0) {
        failures.push(`${e} (${mode}): exit ${r.status}\n${r.stderr.slice(-500)}`);
        continue;
      }
      if (mode === 'as is') AS_IS[e]!(r.stdout, cwd);
      if (mode === 'dry run') expect(r.stdout, e).toMatch(/stages: \d+ to run|plan for/);
      if (mode === 'help') expect(r.stdout, e).toMatch(/Examples:[\s\S]*Documentation: \S+/);
    }
    expect(failures).toEqual([]);
  }, 600_000);
});
