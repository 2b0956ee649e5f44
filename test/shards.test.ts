/**
 * Row shards of a stage (what `--executor slurm --shards N` submits as job arrays):
 * `--stage ID --part I/N` for each part, then `--stage ID --merge N`, must leave the
 * stage's folder with exactly what one unsharded run writes: the embeddings (ids,
 * labels, features) of every set the leakage filter reads, the filter's kept pool,
 * removed list and per-class summary, and Algorithm 1's selections (its candidate
 * search split over pool shards). In-process, on the tiny config (filter enabled).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initBackend } from '../src/backends/chain.js';
import { loadConfig } from '../src/core/config.js';
import { buildGraph } from '../src/pipeline/experiment.js';
import { readImageSet } from '../src/pipeline/imagesets.js';
import { runExperiment } from '../src/pipeline/run.js';
import { stageDir, stageId, topoOrder, type StageSpec } from '../src/pipeline/runner.js';
import { EmbeddingStore } from '../src/retrieval/store.js';
import { partOfRow } from '../src/pipeline/shards.js';

const ROOT = path.resolve(__dirname, '..');
const TINY = path.join(ROOT, 'test/fixtures/pipeline/tiny.yaml');
// A pool large enough that the filter removes some images (near-copies of test images).
const SET = ['data.synthetic.pool.size=400'];

async function embeddings(file: string) {
  const st = await EmbeddingStore.open([file], { role: 'test' });
  const all = await st.readAll();
  return { ids: all.ids, labels: Array.from(all.labels ?? []), data: Buffer.from(all.data.buffer, all.data.byteOffset, all.data.byteLength) };
}

describe('row shards of embed and the leakage filter merge to the unsharded result', () => {
  let whole: string;
  let sharded: string;
  let filter: StageSpec;
  let embeds: StageSpec[];
  let select: StageSpec;

  beforeAll(async () => {
    await initBackend(undefined, { quiet: true });
    const cwdA = mkdtempSync(path.join(tmpdir(), 'dcd-shards-a-'));
    const cwdB = mkdtempSync(path.join(tmpdir(), 'dcd-shards-b-'));
    await runExperiment(TINY, { cwd: cwdA, set: SET, only: ['filter', 'select'] });
    whole = path.join(cwdA, 'runs/tiny');
    sharded = path.join(cwdB, 'runs/tiny');
    const g = buildGraph(loadConfig(TINY, { set: SET, cwd: cwdB }));
    filter = topoOrder(g.roots).find((s) => s.stage === 'filter')!;
    select = topoOrder(g.roots).find((s) => s.stage === 'select')!;
    embeds = Object.values(filter.deps).filter((d) => d.stage === 'embed');
    expect(embeds.length).toBe(5);
    // B: the data stage whole, then each embed in 3 parts, then the filter in 2 parts.
    await runExperiment(TINY, { cwd: cwdB, set: SET, only: ['data'] });
    for (const e of embeds) {
      for (let i = 0; i < 3; i++) await runExperiment(TINY, { cwd: cwdB, set: SET, stages: [stageId(e)], part: { index: i, count: 3 } });
      await runExperiment(TINY, { cwd: cwdB, set: SET, stages: [stageId(e)], merge: 3 });
    }
    for (let i = 0; i < 2; i++) await runExperiment(TINY, { cwd: cwdB, set: SET, stages: [stageId(filter)], part: { index: i, count: 2 } });
    await runExperiment(TINY, { cwd: cwdB, set: SET, stages: [stageId(filter)], merge: 2 });
    // The select stage's other inputs whole, then its candidate search in 3 pool shards.
    await runExperiment(TINY, { cwd: cwdB, set: SET, only: ['failures', 'backbone'] });
    for (const d of Object.values(select.deps).filter((d) => d.stage === 'embed')) await runExperiment(TINY, { cwd: cwdB, set: SET, stages: [stageId(d)] });
    for (let i = 0; i < 3; i++) await runExperiment(TINY, { cwd: cwdB, set: SET, stages: [stageId(select)], part: { index: i, count: 3 } });
    await runExperiment(TINY, { cwd: cwdB, set: SET, stages: [stageId(select)], merge: 3 });
  }, 300_000);

  it('Algorithm 1 with its candidate search over 3 pool shards: the same de-val and debug-train selections, byte for byte', () => {
    const ma = JSON.parse(readFileSync(path.join(stageDir(whole, select), 'manifest.json'), 'utf8'));
    const mb = JSON.parse(readFileSync(path.join(stageDir(sharded, select), 'manifest.json'), 'utf8'));
    expect(ma.counts.debug_train).toBeGreaterThan(0);
    expect(ma.counts.deval).toBeGreaterThan(0);
    expect(mb.counts).toEqual(ma.counts);
    expect(Object.keys(mb.outputs).sort()).toEqual(Object.keys(ma.outputs).sort());
    for (const k of Object.keys(ma.outputs)) expect(mb.outputs[k].sha256, k).toBe(ma.outputs[k].sha256);
    // each part searched a third of the pool
    const parts = readdirSync(path.join(stageDir(sharded, select), 'parts')).sort();
    expect(parts).toEqual(['0-of-3', '1-of-3', '2-of-3']);
  });

  it('each embedding file: same ids, labels and features in the same order', async () => {
    for (const e of embeds) {
      const set = (e.config as { set: string }).set;
      const a = await embeddings(path.join(stageDir(whole, e), `${set}.arrow`));
      const b = await embeddings(path.join(stageDir(sharded, e), `${set}.arrow`));
      expect(b.ids.length, set).toBeGreaterThan(0);
      expect(b.ids, set).toEqual(a.ids);
      expect(b.labels, set).toEqual(a.labels);
      expect(b.data.equals(a.data), `${set}: features differ`).toBe(true);
      // the parts really were parts: each holds a third of the rows
      const parts = readdirSync(path.join(stageDir(sharded, e), 'parts'));
      expect(parts.sort()).toEqual(['0-of-3', '1-of-3', '2-of-3']);
      const p0 = await embeddings(path.join(stageDir(sharded, e), 'parts/0-of-3', `${set}.arrow`));
      // contiguous blocks of whole embedding batches (so every batch is one of the unsharded run's)
      const partOf = partOfRow(e, a.ids.length, 3);
      expect(p0.ids).toEqual(a.ids.filter((_, j) => partOf(j) === 0));
      expect(p0.ids.length).toBeLessThan(a.ids.length);
      expect(p0.ids.length % 64).toBe(0);
    }
  });

  it('the filter: same kept pool, removed list and per-class summary; the stage is complete for a later run', async () => {
    const a = stageDir(whole, filter);
    const b = stageDir(sharded, filter);
    const removed = JSON.parse(readFileSync(path.join(a, 'removed.json'), 'utf8')) as unknown[];
    expect(removed.length, 'the test needs a filter that removes something').toBeGreaterThan(0);
    // Identical but for the run folder in each row's nearest-test-file path.
    const rel = (f: string, root: string) => readFileSync(f, 'utf8').split(root).join('RUN');
    expect(rel(path.join(b, 'removed.json'), sharded)).toBe(rel(path.join(a, 'removed.json'), whole));
    expect(readFileSync(path.join(b, 'summary.json'), 'utf8')).toBe(readFileSync(path.join(a, 'summary.json'), 'utf8'));
    const ka = await readImageSet(path.join(a, 'pool_filtered.arrow'));
    const kb = await readImageSet(path.join(b, 'pool_filtered.arrow'));
    expect(kb.rows).toEqual(ka.rows);
    expect(Buffer.from(kb.pixels!.data).equals(Buffer.from(ka.pixels!.data))).toBe(true);
    const ma = JSON.parse(readFileSync(path.join(a, 'manifest.json'), 'utf8'));
    const mb = JSON.parse(readFileSync(path.join(b, 'manifest.json'), 'utf8'));
    expect(mb.counts).toEqual(ma.counts);
    expect(mb.outputs.pool_filtered.sha256).toBe(ma.outputs.pool_filtered.sha256);
    // The merged stage is an ordinary completed stage: a plan of the sharded run folder finds it cached.
    const plan = await runExperiment(TINY, { cwd: path.dirname(path.dirname(sharded)), set: SET, only: ['filter'], dryRun: true });
    expect(plan.plan.every((s) => s.cached)).toBe(true);
  });

  it('--merge before every part is done, and --part of a stage that does not shard, fail with a clear error', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'dcd-shards-c-'));
    await runExperiment(TINY, { cwd, set: SET, only: ['data'] });
    const e = embeds[0]!;
    await runExperiment(TINY, { cwd, set: SET, stages: [stageId(e)], part: { index: 0, count: 2 } });
    await expect(runExperiment(TINY, { cwd, set: SET, stages: [stageId(e)], merge: 2 })).rejects.toThrow(/part 1\/2 .* is not done; run it first/);
    const data = topoOrder([filter]).find((s) => s.stage === 'data')!;
    await expect(runExperiment(TINY, { cwd, set: SET, stages: [stageId(data)], part: { index: 0, count: 2 } })).rejects.toThrow(/--part\/--merge need a stage that splits into row shards/);
  });
});
