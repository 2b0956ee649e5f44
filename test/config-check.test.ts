/**
 * Every config error is raised before the first stage: through the real CLI (`dcd run`, with and
 * without --dry-run, `dcd sweep`, the Slurm driver), each bad config exits 2 with a message that
 * names the key and a fix, and the run folder holds no stage folder afterwards.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnAsync } from './spawn-async.js';
import { STAGE_KINDS } from '../src/pipeline/run.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const TINY = path.join(ROOT, 'test/fixtures/pipeline/tiny.yaml');
const ENV = { ...process.env, DCD_BACKEND: 'wasm', DCD_LOG: 'info' };

let work: string;
/** A folder dataset's layout (empty sets: the checks only look at what exists) and a config over it. */
let FOLDERS: string;

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'dcd-config-check-'));
  const data = path.join(work, 'folders');
  for (const d of ['train/cat', 'test/cat', 'mfreq/cat', 'complement/cat', 'other/cat']) mkdirSync(path.join(data, d), { recursive: true });
  writeFileSync(path.join(data, 'pool.csv'), 'path,weak_label\n');
  FOLDERS = path.join(data, 'folders.yaml');
  writeFileSync(
    FOLDERS,
    `experiment: { name: f }\ndata:\n  kind: folders\n  folders: { train: train, test: test, mfreq: mfreq, complement: complement, pool: pool.csv }\n  image_size: 16\n` +
      `backbones:\n  - { name: b, weights: demo, pretrain: { kind: broad_cnn, data: other } }\nfilter: { enabled: false }\ntrain: { model: 'small_cnn:4-8' }\n`,
  );
});

/** Stage folders under `out` (none when the run never started a stage). */
function stageFolders(out: string): string[] {
  if (!existsSync(out)) return [];
  return readdirSync(out).filter((e) => (STAGE_KINDS as readonly string[]).includes(e));
}

async function dcd(args: string[]) {
  const r = await spawnAsync('node', [CLI, ...args], { cwd: work, env: ENV, timeout: 120_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

interface Case {
  /** What is wrong. */
  name: string;
  /** The config file (default: the tiny synthetic experiment). */
  config?: () => string;
  /** `--set` overrides (a function: when they name files made in beforeAll). */
  set: string[] | (() => string[]);
  /** Also with --dry-run (the same pass; checked for a sample of cases to keep the test short). */
  dry?: boolean;
  /** The key the message names, and its fix (both must appear on the key's line). */
  key: string;
  fix: RegExp;
  /** Where the check ran before this pass, if elsewhere (kept as the table's record). */
  was?: string;
  /** The command (default `run`); extra arguments after the config. */
  command?: 'run' | 'sweep';
  extra?: string[];
}

const ssl = (pretrain: string) => `backbones=[{name: s, weights: ssl, pretrain: {method: simclr, ${pretrain}}}]`;

const CASES: Case[] = [
  // data.synthetic: refused by the typed schema (issue: --dry-run used to accept them)
  { name: 'a negative pool size', set: ['data.synthetic.pool.size=-5'], dry: true, key: 'config.data.synthetic.pool.size', fix: /change it to a value >= 0/, was: 'data stage' },
  { name: 'an image size of 0', set: ['data.synthetic.imageSize=0'], dry: true, key: 'config.data.synthetic.imageSize', fix: /change it to a value >= 8/, was: 'data stage' },
  { name: 'a rate above 1', set: ['data.synthetic.train.homeRate=1.5'], dry: true, key: 'config.data.synthetic.train.homeRate', fix: /change it to a value <= 1/, was: 'data stage' },
  { name: 'a misspelt synthetic key', set: ['data.synthetic.imagesize=32'], key: 'config.data.synthetic.imagesize', fix: /did you mean "imageSize"/, was: 'silently ignored' },
  // data.synthetic: rules between keys (the library's own check, with its defaults)
  { name: 'Y_sub larger than the classes', set: ['data.synthetic.subsetClasses=5'], dry: true, key: 'config.data.synthetic.subsetClasses', fix: /1\.\.numClasses \(4\).*change it in data\.synthetic/, was: 'data stage' },
  {
    name: 'pool noise rates above 1 together',
    set: ['data.synthetic.pool.wrongLabelRate=0.6', 'data.synthetic.pool.objectlessRate=0.6'],
    key: 'config.data.synthetic.pool.wrongLabelRate + pool.objectlessRate + pool.offTopicRate',
    fix: /at most 1.*change it in data\.synthetic/,
    was: 'data stage',
  },
  // data.fashion
  { name: 'repeated garment classes', set: ['data.kind=fashion-mnist', 'data.fashion.classes=[1, 1]'], key: 'config.data.fashion.classes', fix: /distinct.*remove the repeated one/, was: 'data stage (fashionObjects)' },
  { name: 'a Fashion-MNIST folder without the IDX files', set: ['data.kind=fashion-mnist', `data.fashion_dir=${tmpdir()}`], key: 'config.data.fashion_dir', fix: /lacks train-images-idx3-ubyte\.gz.*point it at/, was: 'data stage' },
  // sections of another data.kind
  { name: 'data.kind folders without its section', set: ['data.kind=folders'], key: 'config.data.folders', fix: /add data\.folders with train, test/, was: 'checkFoldersConfig' },
  { name: 'data.kind imagenet without its section', set: ['data.kind=imagenet'], key: 'config.data.imagenet', fix: /add data\.imagenet with train, val/, was: 'checkConfig' },
  // training
  { name: 'grad_accum that does not divide batch_size', set: ['train.grad_accum=3'], dry: true, key: 'config.train.grad_accum', fix: /pick a grad_accum that divides it/, was: 'train stage' },
  { name: 'an unknown model', set: ['train.model=small_cn:8-16'], key: 'config.train.model', fix: /unknown model .*did you mean|use one of/, was: 'checkConfig' },
  { name: 'a missing original checkpoint', set: ['original.checkpoint=nowhere.pth'], key: 'config.original.checkpoint', fix: /does not exist; fix the path/, was: 'checkConfig' },
  // backbones
  { name: 'official weights without a file', set: ['backbones=[{name: resnet_tiny, weights: official}]'], dry: true, key: 'config.backbones[0].weights', fix: /dcd weights fetch resnet_tiny.*give its path/, was: 'embed stage' },
  { name: 'official weights of the filter', set: ['filter.backbone={name: resnet_tiny}'], key: 'config.filter.backbone.weights', fix: /dcd weights fetch resnet_tiny/, was: 'embed stage' },
  { name: 'a missing backbone checkpoint', set: ['backbones=[{name: resnet_tiny, weights: nowhere.pth}]'], key: 'config.backbones[0].weights', fix: /does not exist; fix the path/, was: 'checkConfig' },
  { name: 'two backbones with one row label', set: ['backbones=[{name: a, weights: demo}, {name: a, weights: demo, pretrain: {kind: random_cnn}}]'], key: 'config.backbones', fix: /give one of them another \(label: NAME\)/, was: 'checkConfig' },
  { name: 'a demo backbone kind that does not exist', set: ['backbones=[{name: a, weights: demo, pretrain: {kind: broad_cn}}]'], key: 'config.backbones[0].pretrain.kind', fix: /expected one of "broad_cnn", "random_cnn", "self".*did you mean "broad_cnn"/, was: 'backbone stage (folders)' },
  { name: 'pretrain on given weights', set: ['backbones=[{name: small_cnn, weights: random, pretrain: {kind: broad_cnn}}]'], key: 'config.backbones[0].pretrain', fix: /only when it is "demo" or "ssl"; remove it/, was: 'not typed' },
  { name: 'a demo backbone learning from a folder on synthetic data', set: ['backbones=[{name: a, weights: demo, pretrain: {data: pool}}]'], key: 'config.backbones[0].pretrain.data', fix: /only used when data\.kind is folders.*remove it/ },
  // ssl pretraining
  { name: 'ssl pretraining on a debug set', set: [ssl('data: mfreq')], key: 'config.backbones[0].pretrain.data', fix: /is a debug or test set \(mfreq\).*use "pool"/, was: 'sslPretrain' },
  { name: 'ssl broadSize without data: broad', set: [ssl('data: pool, broadSize: 100')], key: 'config.backbones[0].pretrain.broadSize', fix: /remove it or set data: broad/, was: 'sslPretrain' },
  { name: 'an ssl method that does not exist', set: ['backbones=[{name: s, weights: ssl, pretrain: {method: byol}}]'], key: 'config.backbones[0].pretrain.method', fix: /expected one of "dino", "simclr"/, was: 'sslPretrain (dinoOptions)' },
  { name: 'an ssl batch larger than the pretraining set', set: [ssl('data: broad, broadSize: 50, batchSize: 64')], key: 'config.backbones[0].pretrain.batchSize', fix: /at most the 50 pretraining images.*lower it/, was: 'backbone stage (pretraining)' },
  { name: 'ssl pretraining on a missing folder', set: [ssl('data: /nowhere/images')], key: 'config.backbones[0].pretrain.data', fix: /is not a folder; give "pool", "broad" or a folder/, was: 'backbone stage' },
  // failures
  { name: 'multi-model failures without models', set: ['failures.mode=multi'], key: 'config.failures.models', fix: /list the models/, was: 'checkConfig' },
  {
    name: 'a multi-model failure model without a checkpoint',
    set: ['failures.mode=multi', 'failures.models=[{name: small_cnn:8-16, checkpoint: official}]'],
    key: 'config.failures.models[0].checkpoint',
    fix: /expected a checkpoint file, received "official"; give the path/,
    was: 'failures stage',
  },
  { name: 'a missing subset file', set: ['failures.subset=nowhere.txt'], key: 'config.failures.subset', fix: /does not exist; fix the path/, was: 'checkConfig' },
  // folders
  { name: 'a missing folder set', config: () => FOLDERS, set: ['data.folders.complement=nowhere'], key: 'config.data.folders.complement', fix: /does not exist; fix the path/, was: 'checkFoldersConfig' },
  { name: 'a demo backbone learning from a debug set', config: () => FOLDERS, set: () => [`backbones=[{name: b, weights: demo, pretrain: {data: ${path.join(path.dirname(FOLDERS), 'mfreq')}}}]`], dry: true, key: 'config.backbones[0].pretrain.data', fix: /is the mfreq set.*use "pool", the train folder/, was: 'checkFoldersConfig' },
  { name: 'ssl broad draw on folder data', config: () => FOLDERS, set: [ssl('data: broad')], key: 'config.backbones[0].pretrain.data', fix: /"broad" is a synthetic draw.*give "pool" or a folder/, was: 'ssl backbone stage' },
  // the other commands that run a config
  { name: 'a sweep variant with a bad value', command: 'sweep', set: [], extra: ['--grid', 'train.grad_accum=1,3'], key: 'config.train.grad_accum', fix: /pick a grad_accum that divides it/, was: 'train stage' },
  { name: 'the Slurm driver', set: ['train.grad_accum=3'], extra: ['--executor', 'slurm'], key: 'config.train.grad_accum', fix: /pick a grad_accum that divides it/, was: 'train stage' },
];

/** The line of `text` that names `key` (`key: ...`). */
function lineOf(text: string, key: string): string | undefined {
  return text.split('\n').find((l) => l.includes(`${key}: `));
}

describe('config errors are raised before the first stage (through the CLI)', () => {
  it('the tiny config and the folder config are valid as they are (so each case fails on its own --set)', async () => {
    for (const config of [TINY, FOLDERS]) {
      const out = path.join(work, `ok-${path.basename(config)}`);
      const r = await dcd(['run', config, '--dry-run', '--set', `experiment.out=${out}`]);
      expect(r.out).toMatch(/stages: \d+ to run/);
      expect(r.code).toBe(0);
    }
  });

  it('a run that starts does create stage folders (the check below can fail)', async () => {
    const out = path.join(work, 'control');
    const r = await dcd(['run', TINY, '--only', 'data', '--set', `experiment.out=${out}`]);
    expect(r.code).toBe(0);
    expect(stageFolders(out)).toEqual(['data']);
  });

  it.concurrent.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const out = path.join(work, `out-${CASES.indexOf(c)}`);
    const config = c.config?.() ?? TINY;
    const set = typeof c.set === 'function' ? c.set() : c.set;
    const args = [c.command ?? 'run', config, ...(c.extra ?? []), '--set', `experiment.out=${out}`, ...set.flatMap((s) => ['--set', s])];
    const runs = c.dry ? [args, [...args, '--dry-run']] : [args];
    for (const a of runs) {
      const r = await dcd(a);
      expect(r.code, r.out).toBe(2);
      expect(r.out).toContain('invalid config');
      const line = lineOf(r.out, c.key);
      expect(line, r.out).toBeDefined();
      expect(line).toMatch(c.fix);
      expect(r.out).not.toMatch(/internal error|\n\s+at /);
      expect(stageFolders(out)).toEqual([]);
    }
  }, 600_000); // a CLI start is about a second; the cases run five at a time, on a loaded machine much slower
});
