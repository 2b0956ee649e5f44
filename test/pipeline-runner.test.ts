import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatPlan, runStages, stageDir, stageKey, type StageSpec } from '../src/pipeline/runner.js';
import { atomicWriteFile } from '../src/core/fsutil.js';

/** A toy DAG: numbers → squares → sum, plus an external file read by `numbers`. */
function toyGraph(opts: { n: number; power: number; ext: string; calls: string[] }): StageSpec {
  const numbers: StageSpec = {
    stage: 'numbers',
    label: 'n',
    version: 1,
    config: { n: opts.n },
    deps: {},
    externals: [opts.ext],
    async run(ctx) {
      opts.calls.push('numbers');
      const offset = Number(readFileSync(opts.ext, 'utf8'));
      const xs = Array.from({ length: opts.n }, (_, i) => i + offset);
      await atomicWriteFile(path.join(ctx.dir, 'numbers.json'), JSON.stringify(xs));
      return { files: { numbers: 'numbers.json' }, counts: { rows: xs.length } };
    },
  };
  const powers: StageSpec = {
    stage: 'powers',
    label: "p",
    version: 1,
    config: { power: opts.power },
    deps: { numbers },
    async run(ctx) {
      opts.calls.push('powers');
      const xs = JSON.parse(readFileSync(ctx.inputs.numbers!.file('numbers'), 'utf8')) as number[];
      await atomicWriteFile(path.join(ctx.dir, 'p.json'), JSON.stringify(xs.map((x) => x ** opts.power)));
      return { files: { p: 'p.json' }, counts: { rows: xs.length } };
    },
  };
  return {
    stage: 'sum',
    label: 'total',
    version: 1,
    config: {},
    deps: { powers },
    async run(ctx) {
      opts.calls.push('sum');
      const xs = JSON.parse(readFileSync(ctx.inputs.powers!.file('p'), 'utf8')) as number[];
      const total = xs.reduce((a, b) => a + b, 0);
      await atomicWriteFile(path.join(ctx.dir, 'sum.txt'), String(total));
      return { files: { sum: 'sum.txt' }, extra: { total } };
    },
  };
}

function setup() {
  const dir = mkdtempSync(path.join(tmpdir(), 'dcd-runner-'));
  const ext = path.join(dir, 'offset.txt');
  writeFileSync(ext, '1');
  return { dir, ext, runDir: path.join(dir, 'runs', 'toy') };
}

describe('stage runner', () => {
  it('runs a DAG once, then skips every stage; writes manifests with hashes, counts, timings', async () => {
    const { ext, runDir } = setup();
    const calls: string[] = [];
    const root = toyGraph({ n: 4, power: 2, ext, calls });
    const r1 = await runStages(runDir, [root]);
    expect(calls).toEqual(['numbers', 'powers', 'sum']);
    expect(r1.results.get(root)!.manifest.extra.total).toBe(1 + 4 + 9 + 16);
    const m = JSON.parse(readFileSync(path.join(stageDir(runDir, root.deps.powers!), 'manifest.json'), 'utf8'));
    expect(m.stage).toBe('powers');
    expect(m.counts).toEqual({ rows: 4 });
    expect(m.outputs.p.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(Object.keys(m.inputs)).toEqual(['stage:numbers']);
    expect(m.timings.seconds).toBeGreaterThanOrEqual(0);
    expect(m.config).toEqual({ power: 2 });

    const calls2: string[] = [];
    const r2 = await runStages(runDir, [toyGraph({ n: 4, power: 2, ext, calls: calls2 })]);
    expect(calls2).toEqual([]);
    expect(r2.plan.every((s) => s.cached)).toBe(true);
  });

  it('reruns only what a config change or an input change touches, and says why in the dry-run plan', async () => {
    const { ext, runDir } = setup();
    await runStages(runDir, [toyGraph({ n: 3, power: 2, ext, calls: [] })]);

    // power 3: numbers is shared (same key), powers and sum run in new folders.
    const calls: string[] = [];
    const dry = await runStages(runDir, [toyGraph({ n: 3, power: 3, ext, calls })], { dryRun: true });
    expect(calls).toEqual([]);
    expect(dry.plan.map((s) => [s.spec.stage, s.cached])).toEqual([
      ['numbers', true],
      ['powers', false],
      ['sum', false],
    ]);
    expect(dry.plan[1]!.reason).toBe('config changed since the last run: power 2 → 3');
    expect(dry.plan[2]!.reason).toBe('an upstream stage changed since the last run');
    expect(formatPlan(dry.plan, runDir)).toMatch(/3 stages: 2 to run, 1 cached/);
    const r = await runStages(runDir, [toyGraph({ n: 3, power: 3, ext, calls })]);
    expect(calls).toEqual(['powers', 'sum']);
    expect(r.results.get(r.plan[2]!.spec)!.manifest.extra.total).toBe(1 + 8 + 27);

    // The external file changes: numbers reruns in its folder, and so does everything downstream.
    writeFileSync(ext, '2');
    const calls2: string[] = [];
    const g = toyGraph({ n: 3, power: 3, ext, calls: calls2 });
    const dry2 = await runStages(runDir, [g], { dryRun: true });
    expect(dry2.plan[0]!.reason).toMatch(/input changed: .*offset\.txt/);
    await runStages(runDir, [g]);
    expect(calls2).toEqual(['numbers', 'powers', 'sum']);
  });

  it('reruns a stage whose output file was deleted, and a stage whose manifest is missing (killed before finishing)', async () => {
    const { ext, runDir } = setup();
    const root = toyGraph({ n: 2, power: 1, ext, calls: [] });
    await runStages(runDir, [root]);
    rmSync(path.join(stageDir(runDir, root.deps.powers!), 'p.json'));
    const calls: string[] = [];
    const plan = await runStages(runDir, [toyGraph({ n: 2, power: 1, ext, calls })], { dryRun: true });
    expect(plan.plan[1]!.reason).toMatch(/output p \(p\.json\) is missing/);
    await runStages(runDir, [toyGraph({ n: 2, power: 1, ext, calls })]);
    // powers recomputes identical content, so sum stays cached.
    expect(calls).toEqual(['powers']);

    rmSync(path.join(stageDir(runDir, root), 'manifest.json'));
    const calls2: string[] = [];
    const p2 = await runStages(runDir, [toyGraph({ n: 2, power: 1, ext, calls: calls2 })], { dryRun: true });
    expect(p2.plan[2]!.reason).toMatch(/interrupted/);
  });

  it('shares common stages between variants (a sweep) and keys folders by config', async () => {
    const { ext, runDir } = setup();
    const calls: string[] = [];
    const a = toyGraph({ n: 3, power: 1, ext, calls });
    const b = toyGraph({ n: 3, power: 2, ext, calls });
    expect(stageKey(a.deps.powers!.deps.numbers!)).toBe(stageKey(b.deps.powers!.deps.numbers!));
    expect(stageKey(a)).not.toBe(stageKey(b));
    const r = await runStages(runDir, [a, b]);
    expect(calls.filter((c) => c === 'numbers')).toHaveLength(1);
    expect(calls).toHaveLength(5);
    expect(r.results.get(a)!.manifest.extra.total).toBe(6);
    expect(r.results.get(b)!.manifest.extra.total).toBe(14);
    expect(readdirSync(path.join(runDir, 'sum'))).toHaveLength(2);
    expect(existsSync(path.join(runDir, 'numbers'))).toBe(true);
  });

  it('propagates a stage error and leaves that stage incomplete', async () => {
    const { ext, runDir } = setup();
    const bad: StageSpec = {
      stage: 'boom',
      label: 'x',
      version: 1,
      config: {},
      deps: { n: toyGraph({ n: 1, power: 1, ext, calls: [] }) },
      async run() {
        throw new Error('stage failed on purpose');
      },
    };
    await expect(runStages(runDir, [bad])).rejects.toThrow(/on purpose/);
    expect(existsSync(path.join(stageDir(runDir, bad), 'manifest.json'))).toBe(false);
    const again = await runStages(runDir, [bad.deps.n!], { dryRun: true });
    expect(again.plan.every((s) => s.cached)).toBe(true);
  });
});
