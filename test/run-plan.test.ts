/**
 * `dcd run --dry-run` on the paper's ImageNet configs against a tiny fake tree, and
 * `dcd sweep --dry-run` sharing stages between variants. Real CLI, nothing trained.
 */
import { describe, expect, it } from 'vitest';
import { spawnAsync } from './spawn-async.js';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runExperiment, runSweep, type SweepOptions } from '../src/pipeline/run.js';
import { DcdError } from '../src/core/errors.js';
import { loadConfig } from '../src/core/config.js';
import { buildGraph } from '../src/pipeline/experiment.js';
import { stageId, topoOrder } from '../src/pipeline/runner.js';
import { worldNote } from '../src/pipeline/stages/report.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const ENV = { ...process.env, DCD_BACKEND: 'wasm', DCD_LOG: 'info' };

/** Same as the CLI's dry run, in-process (no process start-up): stdout text or the error message. */
async function dryRun(kind: 'run' | 'sweep', cfg: string, cwd: string, sets: string[], extra: Partial<SweepOptions> = {}) {
  const set = sets.filter((_, i) => i % 2 === 1).concat(extra.set ?? []);
  try {
    const opts = { ...extra, set, dryRun: true, cwd };
    const r = kind === 'run' ? await runExperiment(cfg, opts) : await runSweep(cfg, opts);
    return { code: 0, stdout: `${'variants' in r ? `sweep over ${(r as { variants: string[] }).variants.length} variants\n` : ''}plan for ${r.runDir}:\n${r.planText}\n`, stderr: '' };
  } catch (e) {
    if (!(e instanceof DcdError)) throw e;
    return { code: e.exitCode, stdout: '', stderr: `dcd: error: ${e.message}\n` };
  }
}

async function runCli(args: string[], cwd: string) {
  const r = await spawnAsync('node', [CLI, ...args], { cwd, env: ENV, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The layout the ImageNet configs expect, with empty stand-ins for the big files. */
function fakeTree(): { root: string; sets: string[] } {
  const root = mkdtempSync(path.join(tmpdir(), 'dcd-fake-inet-'));
  const dirs = [
    'ILSVRC2012/train/n01440764',
    'ILSVRC2012/train/n01443537',
    'ILSVRC2012/val',
    'imagenetv2/imagenetv2-matched-frequency-format-val/0',
    'imagenetv2/imagenetv2-threshold0.7-format-val/0',
    'imagenetv2/imagenetv2-top-images-format-val/0',
    'pool/images',
    'checkpoints',
  ];
  for (const d of dirs) mkdirSync(path.join(root, d), { recursive: true });
  const files: Record<string, string> = {
    'ILSVRC2012/LOC_val_solution.csv': 'ImageId,PredictionString\n',
    'pool/pool.csv': 'path,weak_label,query\n',
    'pool/classes-160.txt': 'n01440764\n',
  };
  for (const f of ['dino_deitsmall8_pretrain.pth', 'dino_deitsmall16_pretrain.pth', 'resnet50-0676ba61.pth', 'imagenet_l2_3_0.pt', 'imagenet_linf_4.pt'])
    files[`checkpoints/${f}`] = `fake ${f}`;
  for (const [f, text] of Object.entries(files)) writeFileSync(path.join(root, f), text);
  const sets = [
    `vars.imagenet=${root}/ILSVRC2012`,
    `vars.imagenet_v2=${root}/imagenetv2`,
    `vars.pool=${root}/pool`,
    `vars.checkpoints=${root}/checkpoints`,
  ].flatMap((s) => ['--set', s]);
  return { root, sets };
}

function stagesOf(plan: string): string[] {
  return plan
    .split('\n')
    .filter((l) => /^(run|cached) /.test(l))
    .map((l) => l.split(/\s+/)[1]!);
}

describe('dry-run plans of the paper configs (fake ImageNet tree)', () => {
  it('single-model: validates, and plans the Table 4 rows over the four backbones', async () => {
    const { root, sets } = fakeTree();
    const r = await runCli(['run', path.join(ROOT, 'configs/imagenet-single-model.yaml'), '--dry-run', ...sets], root);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const stages = stagesOf(r.stdout);
    expect(stages).toContain('data/imagenet');
    expect(stages).toContain('original/checkpoint');
    expect(stages).toContain('failures/single');
    expect(stages).toContain('filter/leakage');
    for (const b of ['dino_vits8', 'dino_vits16', 'resnet_standard', 'resnet_robust']) {
      expect(stages).toContain(`select/${b}`);
      expect(stages).toContain(`train/dcd-${b}-s0`);
      expect(stages).toContain(`evaluate/dcd-${b}-s0`);
    }
    for (const m of ['complete', 'random']) expect(stages).toContain(`train/${m}-s0`);
    // the robust backbone's pool embedding is the filter's: computed once
    expect(stages.filter((s) => s === 'embed/resnet50_robust-pool')).toHaveLength(1);
    expect(stages.filter((s) => s.startsWith('embed/'))).toHaveLength(5 + 2 * 3);
    expect(stages).toContain('gallery/retrievals');
    expect(r.stdout).toMatch(/36 stages: 36 to run, 0 cached/);
    expect(r.stdout).toContain(path.join(root, 'runs/imagenet-single-model'));
  });

  it('multi-model with 3 seeds and the fine-tune alternative: shared stages appear once', async () => {
    const { root, sets } = fakeTree();
    const r = await dryRun('run', path.join(ROOT, 'configs/imagenet-multi-model.yaml'), root, sets, { seeds: [0, 1, 2], set: ['train.init=finetune'] });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const stages = stagesOf(r.stdout);
    expect(stages).toContain('failures/multi');
    expect(stages.filter((s) => s.startsWith('data/'))).toHaveLength(1);
    expect(stages.filter((s) => s.startsWith('select/'))).toHaveLength(4);
    // 6 trained methods (complete, random, 4 × dcd) × 3 seeds
    expect(stages.filter((s) => s.startsWith('train/'))).toHaveLength(18);
    expect(stages).toContain('baseline/random-s2');
  });

  it('names the key and the fix when a path of the tree is missing or wrong', async () => {
    const { root, sets } = fakeTree();
    const noPool = await dryRun('run', path.join(ROOT, 'configs/imagenet-single-model.yaml'), root, sets, { set: ['data.imagenet.pool=missing.csv'] });
    expect(noPool.code).toBe(2);
    expect(noPool.stderr).toContain(`config.data.imagenet.pool: ${path.join(root, 'missing.csv')} does not exist`);
    const badTrain = await dryRun('run', path.join(ROOT, 'configs/imagenet-single-model.yaml'), root, sets, { set: [`data.imagenet.train=${root}/ILSVRC2012/val`] });
    expect(badTrain.code).toBe(2);
    expect(badTrain.stderr).toMatch(/config\.data\.imagenet\.train: .* has no wnid sub-folders/);
    const defaults = await dryRun('run', path.join(ROOT, 'configs/imagenet-single-model.yaml'), root, []);
    expect(defaults.code).toBe(2);
    expect(defaults.stderr).toMatch(/config\.data\.imagenet\.train: \/data\/ILSVRC2012\/train does not exist/);
  });
});

describe('dcd run --only embed --shard I/N (job arrays)', () => {
  it('splits the embed stages over the shards: disjoint, together all of them, each with the data stage it needs', async () => {
    const { root, sets } = fakeTree();
    const cfg = path.join(ROOT, 'configs/imagenet-single-model.yaml');
    const all = stagesOf((await dryRun('run', cfg, root, sets)).stdout).filter((s) => s.startsWith('embed/'));
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = i === 0 ? await runCli(['run', cfg, '--dry-run', '--only', 'embed', '--shard', `${i}/3`, ...sets], root) : await dryRun('run', cfg, root, sets, { only: ['embed'], shard: { index: i, count: 3 } });
      expect(r.code, r.stderr).toBe(0);
      const st = stagesOf(r.stdout);
      expect(st[0]).toBe('data/imagenet');
      seen.push(...st.filter((s) => s.startsWith('embed/')));
    }
    expect(seen.sort()).toEqual([...all].sort());
    expect((await runCli(['run', cfg, '--dry-run', '--shard', '3/3', ...sets], root)).stderr).toMatch(/--shard: expected I\/N/);
  });
});

describe('dcd sweep --dry-run', () => {
  it('shares every common stage between backbone and grid variants', async () => {
    const { root, sets } = fakeTree();
    const r = await dryRun('sweep', path.join(ROOT, 'configs/imagenet-single-model.yaml'), root, sets, { backbones: ['dino_vits8', 'resnet_robust'], grid: ['select.k_train=23,46'] });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/sweep over 4 variants/);
    const stages = stagesOf(r.stdout);
    expect(stages.filter((s) => s.startsWith('data/'))).toHaveLength(1);
    expect(stages.filter((s) => s === 'filter/leakage')).toHaveLength(1);
    expect(stages.filter((s) => s === 'train/complete-s0')).toHaveLength(1);
    // selection per (backbone, k_train)
    expect(stages.filter((s) => s.startsWith('select/'))).toHaveLength(4);
    expect(stages.filter((s) => s.startsWith('embed/dino_vits8-'))).toHaveLength(2);
    expect(stages.at(-1)).toBe('report/sweep');
  });

  it('rejects a sweep without axes and a malformed --grid', async () => {
    const { root, sets } = fakeTree();
    const cfg = path.join(ROOT, 'configs/imagenet-single-model.yaml');
    expect((await dryRun('sweep', cfg, root, sets)).stderr).toMatch(/give --backbones/);
    expect((await runCli(['sweep', cfg, '--dry-run', '--grid', 'select.k_train', ...sets], root)).stderr).toMatch(/expected KEY=V1,V2/);
  });
});

describe('world_seed: one world for every seed', () => {
  // configs/demo.yaml without its world_seed line: each seed redraws everything
  const perSeed = path.join(mkdtempSync(path.join(tmpdir(), 'dcd-world-')), 'demo.yaml');
  writeFileSync(perSeed, readFileSync(path.join(ROOT, 'configs/demo.yaml'), 'utf8').replace(/^world_seed: 0\n/m, ''));
  const ids = (set: string[]) => {
    const g = buildGraph(loadConfig(perSeed, { set }));
    return { g, ids: topoOrder(g.roots).map((s) => stageId(s)) }; // stage/label-key
  };
  const kind = (xs: string[], k: string) => xs.filter((x) => x.startsWith(`${k}/`));

  it('shares the world (data, original, failures, backbones, selections) and varies the training per seed', () => {
    const per = ids([]).ids;
    const { g, ids: one } = ids(['world_seed=0']);
    expect(kind(per, 'data')).toHaveLength(3);
    expect(kind(one, 'data')).toHaveLength(1);
    for (const k of ['original', 'failures', 'baseline/complete']) expect(one.filter((x) => x.startsWith(`${k}`))).toHaveLength(1);
    expect(kind(one, 'select')).toHaveLength(3); // one per backbone, not per seed
    expect(kind(per, 'select')).toHaveLength(9);
    // the methods' randomness stays per seed: Random draws and fine-tunes (complete, random, 3 × dcd)
    expect(one.filter((x) => x.startsWith('baseline/random-'))).toHaveLength(3);
    expect(kind(one, 'train')).toHaveLength(15);
    expect(g.rows.map((r) => r.seed).filter((s, i, a) => a.indexOf(s) === i)).toEqual([0, 1, 2]);
    // world 0's stages are the per-seed run's seed-0 stages (same keys: one cache), and its
    // seed-1 fine-tunes are new stages (same labels, other inputs)
    for (const x of one.filter((x) => !/-s[12]-[0-9a-f]+$/.test(x) && !x.startsWith('report/'))) expect(per).toContain(x);
    const s1 = one.find((x) => x.startsWith('train/dcd-ssl-s1-'))!;
    expect(per.find((x) => x.startsWith('train/dcd-ssl-s1-'))).not.toBe(s1);
    // another world: world 1's data draw, and the caption says what the seeds vary
    expect(kind(ids(['world_seed=1']).ids, 'data')[0]).toMatch(/^data\/synthetic-s1-/);
    expect(worldNote(loadConfig(path.join(ROOT, 'configs/demo.yaml'), { set: ['world_seed=2'] }))).toMatch(/world_seed 2\).*vary only the Random draw and the methods' training/);
    expect(worldNote(loadConfig(perSeed, { set: [] }))).toBeUndefined();
    expect(readFileSync(perSeed, 'utf8')).not.toMatch(/^world_seed/m);
    // configs/demo.yaml sets world_seed: 0; `--set world_seed=null` (README) redraws per seed again
    const shipped = buildGraph(loadConfig(path.join(ROOT, 'configs/demo.yaml'), { set: [] }));
    expect(kind(topoOrder(shipped.roots).map(stageId), 'data')).toHaveLength(1);
    const unset = buildGraph(loadConfig(path.join(ROOT, 'configs/demo.yaml'), { set: ['world_seed=null'] }));
    expect(topoOrder(unset.roots).map(stageId).sort()).toEqual([...per].sort());
  });

  it('on ImageNet data (no seeded draw): one original model for every seed, or nothing to say when the original is a checkpoint', () => {
    const { root, sets } = fakeTree();
    const set = sets.filter((_, i) => i % 2 === 1);
    const cfg = path.join(ROOT, 'configs/imagenet-single-model.yaml');
    expect(worldNote(loadConfig(cfg, { set: [...set, 'world_seed=0'], cwd: root }))).toBeUndefined();
    const trained = loadConfig(cfg, { set: [...set, 'world_seed=3', 'original.checkpoint=null', 'seeds=[0,1]'], cwd: root });
    expect(worldNote(trained)).toMatch(/^One original model for every seed \(world_seed 3\): the original model is trained once with seed 3/);
    const stages = topoOrder(buildGraph(trained).roots).map(stageId);
    expect(stages.filter((x) => x.startsWith('original/'))).toEqual([expect.stringMatching(/^original\/train-s3-/)]);
    expect(stages.filter((x) => x.startsWith('train/random-'))).toHaveLength(2);
  });

  it('rejects a world_seed that is not a non-negative integer, naming the key', () => {
    expect(() => loadConfig(path.join(ROOT, 'configs/demo.yaml'), { set: ['world_seed=-1'] })).toThrow(/world_seed/);
    expect(() => loadConfig(path.join(ROOT, 'configs/demo.yaml'), { set: ['world_seed=0.5'] })).toThrow(/world_seed/);
  });
});
