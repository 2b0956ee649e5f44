import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTable, float32Column, int32Column, metadataOf, readArrowFile, stringColumn, embeddingMatrix, writeArrowFile } from '../src/core/arrow.js';
import { main } from '../src/cli/main.js';
import { EmbeddingStore, mulberry32, openArrowSink } from '../src/retrieval/index.js';

const dir = mkdtempSync(path.join(tmpdir(), 'dcd-retrieval-cli-'));
const f = (n: string) => path.join(dir, n);
const DIM = 6;
const META = { 'dcd.backbone': 'toy_backbone', 'dcd.weights_sha256': 'abc' };

function table(prefix: string, n: number, classes: number, seed: number, extra = false) {
  const rnd = mulberry32(seed);
  return buildTable(
    {
      id: { kind: 'utf8', values: Array.from({ length: n }, (_, i) => `${prefix}${i}`) },
      embedding: { kind: 'embedding', values: Float32Array.from({ length: n * DIM }, () => Math.floor(rnd() * 5)), dim: DIM },
      label: { kind: 'int32', values: Array.from({ length: n }, (_, i) => i % classes) },
      ...(extra ? { path: { kind: 'utf8' as const, values: Array.from({ length: n }, (_, i) => `/img/${prefix}${i}.jpg`) } } : {}),
    },
    META,
  );
}

/** Writes `t` as several record batches of `rows` rows (the store streams them). */
async function writeBatched(file: string, t: ReturnType<typeof table>, rows: number) {
  const sink = await openArrowSink(file, t.schema, META);
  for (let s = 0; s < t.numRows; s += rows) for (const b of t.slice(s, s + rows).batches) sink.write(b);
  await sink.close();
}

async function cli(args: string[]): Promise<number> {
  return main([...args, '--backend', process.env.DCD_BACKEND ?? 'wasm']);
}

beforeAll(async () => {
  const pool = table('w', 400, 4, 1, true);
  await writeBatched(f('pool-0.arrow'), pool.slice(0, 250), 60);
  await writeBatched(f('pool-1.arrow'), pool.slice(250, 400), 70);
  await writeArrowFile(f('train.arrow'), table('t', 80, 4, 2));
  await writeArrowFile(f('val.arrow'), table('v', 20, 4, 3));
  await writeArrowFile(f('seed.arrow'), table('s', 8, 4, 4));
  await writeArrowFile(f('heldout.arrow'), table('h', 8, 4, 5));
});

describe('dcd filter / select / baseline through the CLI', () => {
  it('streams sharded multi-batch pools and keeps every column', async () => {
    const store = await EmbeddingStore.open([f('pool-0.arrow'), f('pool-1.arrow')], { role: 'pool', requireLabel: true });
    const starts: number[] = [];
    for await (const ch of store.chunks(50)) starts.push(ch.start);
    expect(starts[0]).toBe(0);
    expect(starts.length).toBeGreaterThanOrEqual(9);
    const all = await store.readAll();
    expect(all.ids.length).toBe(400);
    expect(all.ids[399]).toBe('w399');
  });

  it('runs the pipeline: filter → select (de-val, debug-train) → random and complete baselines', async () => {
    expect(
      await cli(['filter', '--pool', f('pool-0.arrow'), f('pool-1.arrow'), '--test', f('seed.arrow'), f('heldout.arrow'), f('val.arrow'), '--train', f('train.arrow'), '--val', f('val.arrow'), '--out', f('filtered.arrow')]),
    ).toBe(0);
    const filtered = await readArrowFile(f('filtered.arrow'));
    const removed = readFileSync(f('filtered.removed.csv'), 'utf8').trim().split('\n');
    expect(removed[0]).toBe('id,label,reason,nearest_test_id,nearest_test_file,distance,tau');
    expect(filtered.numRows + removed.length - 1).toBe(400);
    expect(removed.length - 1).toBeGreaterThan(0);
    expect(filtered.schema.fields.map((x) => x.name)).toEqual(['id', 'embedding', 'label', 'path']);
    expect(metadataOf(filtered)['dcd.backbone']).toBe('toy_backbone');
    const ids = stringColumn(filtered, 'id');
    const paths = stringColumn(filtered, 'path');
    ids.forEach((id, i) => expect(paths[i]).toBe(`/img/${id}.jpg`));
    expect(embeddingMatrix(filtered).dim).toBe(DIM);
    expect(existsSync(f('filtered.summary.csv'))).toBe(true);

    expect(await cli(['select', '--seed', f('seed.arrow'), '--pool', f('filtered.arrow'), '--k-train', '3', '--k-val', '2', '--out', f('debug-train.arrow')])).toBe(0);
    const dt = await readArrowFile(f('debug-train.arrow'));
    const dv = await readArrowFile(f('debug-train.deval.arrow'));
    expect(dt.schema.fields.map((x) => `${x.name}:${x.type}`)).toEqual(['id:Utf8', 'label:Int32', 'seed_id:Utf8', 'distance:Float32', 'rank:Int32']);
    expect(dt.numRows).toBe(8 * 3);
    expect(dv.numRows).toBe(8 * 2);
    const dvIds = new Set(stringColumn(dv, 'id'));
    for (const id of stringColumn(dt, 'id')) expect(dvIds.has(id)).toBe(false);
    expect(readFileSync(f('debug-train.csv'), 'utf8').split('\n')[0]).toBe('id,label,seed_id,distance,rank');
    expect(readFileSync(f('debug-train.summary.csv'), 'utf8').split('\n')[0]).toBe('label,seeds,candidates,selected,exhausted');

    // Same debug-train in two calls: de-val first, then --exclude it.
    expect(await cli(['select', '--seed', f('seed.arrow'), '--pool', f('filtered.arrow'), '-k', '2', '--k-val', '0', '--out', f('deval2.arrow')])).toBe(0);
    expect(await cli(['select', '--seed', f('seed.arrow'), '--pool', f('filtered.arrow'), '--k-train', '3', '--k-val', '0', '--exclude', f('deval2.arrow'), '--out', f('dt2.arrow')])).toBe(0);
    const dt2 = await readArrowFile(f('dt2.arrow'));
    expect(stringColumn(dt2, 'id')).toEqual(stringColumn(dt, 'id'));
    expect(Array.from(float32Column(dt2, 'distance'))).toEqual(Array.from(float32Column(dt, 'distance')));

    expect(await cli(['baseline', 'random', '--pool', f('filtered.arrow'), '--counts', f('debug-train.arrow'), '--seed', '3', '--out', f('random.arrow')])).toBe(0);
    const rnd = await readArrowFile(f('random.arrow'));
    const count = (l: Int32Array) => [0, 1, 2, 3].map((y) => l.filter((v) => v === y).length);
    expect(count(int32Column(rnd, 'label'))).toEqual(count(int32Column(dt, 'label')));

    expect(await cli(['baseline', 'complete', '--pool', f('filtered.arrow'), '--train', f('train.arrow'), '--out', f('complete.arrow')])).toBe(0);
    const cmp = await readArrowFile(f('complete.arrow'));
    expect(cmp.numRows).toBe(filtered.numRows);
    const m0 = int32Column(filtered, 'label').filter((y) => y === 0).length;
    expect(float32Column(cmp, 'weight')[int32Column(cmp, 'label').indexOf(0)]).toBeCloseTo(20 / (20 + m0), 6);
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('exits non-zero with a message naming the file on bad input', async () => {
    await writeArrowFile(f('wide.arrow'), buildTable({ id: { kind: 'utf8', values: ['a'] }, embedding: { kind: 'embedding', values: new Float32Array(8), dim: 8 }, label: { kind: 'int32', values: [0] } }, META));
    const code = await cli(['select', '--seed', f('seed.arrow'), '--pool', f('wide.arrow'), '--k-train', '2', '--out', f('x.arrow')]);
    expect(code).toBe(1);
    expect(existsSync(f('x.arrow'))).toBe(false);
  });
});
