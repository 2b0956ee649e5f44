import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildTable, int32Column, metadataOf, readArrowFile, stringColumn, writeArrowFile } from '../src/core/arrow.js';
import { writeManifest } from '../src/data/manifest.js';
import { main } from '../src/cli/main.js';

const dir = mkdtempSync(path.join(tmpdir(), 'dcd-slices-cli-'));
const f = (n: string) => path.join(dir, n);
const META = { 'dcd.backbone': 'toy', 'dcd.weights_sha256': 'abc' };

function emb(ids: string[], labels: number[], rows: number[][]) {
  return buildTable(
    {
      id: { kind: 'utf8', values: ids },
      label: { kind: 'int32', values: labels },
      embedding: { kind: 'embedding', values: Float32Array.from(rows.flat()), dim: rows[0]!.length },
    },
    META,
  );
}

const manifestRows = (ids: string[], labels: number[], context: (i: number) => string) =>
  ids.map((id, i) => ({ id, path: `pixels:${i}`, label: labels[i]!, wnid: '', class_name: '', set: 'x', context: context(i) }));

async function cli(args: string[]): Promise<number> {
  return main([...args, '--backend', process.env.DCD_BACKEND ?? 'wasm']);
}

// seeds: four images in each of three directions; class = direction, context waves / dots / snow
const dirs = [
  [1, 0, 0],
  [0, 1, 0],
  [0, 0, 1],
];
const seedIds = Array.from({ length: 12 }, (_, i) => `s${i}`);
const seedLabels = seedIds.map((_, i) => i % 3);
const seedRows = seedIds.map((_, i) => dirs[i % 3]!.map((v, c) => (1 + i) * (v + 0.01 * ((i + c) % 3))));
const heldIds = ['h0', 'h1', 'h2', 'h3'];
const heldRows = [
  [5, 0.1, 0],
  [0, 3, 0.2],
  [0.1, 0, 2],
  [4, 0, 0.3],
];

// pool of the cleaning case (see test/clean.test.ts): x is labelled 0 but sits among class 1
const poolIds = ['a1', 'a2', 'a3', 'a4', 'a5', 'b1', 'b2', 'b3', 'b4', 'x'];
const poolPts = [[0.2, 0], [0, 0.2], [-0.2, 0], [0, -0.2], [0.3, 0.3], [1, 0.05], [1.05, 0], [1, -0.05], [0.95, 0], [0.9, 0]];
const poolLabels = [0, 0, 0, 0, 0, 1, 1, 1, 1, 0];

beforeAll(async () => {
  await writeArrowFile(f('seed-emb.arrow'), emb(seedIds, seedLabels, seedRows));
  await writeArrowFile(f('heldout-emb.arrow'), emb(heldIds, [0, 1, 2, 0], heldRows));
  await writeArrowFile(f('narrow.arrow'), emb(['n0'], [0], [[1, 0]]));
  await writeManifest(f('seed.arrow'), manifestRows(seedIds, seedLabels, (i) => JSON.stringify({ context: ['waves', 'dots', 'snow'][i % 3] })));
  await writeArrowFile(
    f('pred.arrow'),
    buildTable({ id: { kind: 'utf8', values: ['h0', 'h1', 'h2', 'h3', 's0'] }, label: { kind: 'int32', values: [0, 1, 2, 0, 0] }, pred: { kind: 'int32', values: [0, 2, 2, 1, 0] } }),
  );
  await writeArrowFile(f('pool-emb.arrow'), emb(poolIds, poolLabels, poolPts));
  await writeArrowFile(f('cseed-emb.arrow'), emb(['q0'], [0], [[0.6, 0]]));
  await writeManifest(f('pool.arrow'), manifestRows(poolIds, poolLabels, (i) => JSON.stringify({ true_label: poolIds[i] === 'x' ? 1 : poolLabels[i] })));
});

describe('dcd slices', () => {
  it('writes slices.arrow/.csv/.json with heldout assignment and per-slice accuracy', async () => {
    const out = f('slices.arrow');
    expect(
      await cli(['slices', '--seed', f('seed-emb.arrow'), '--heldout', f('heldout-emb.arrow'), '--manifest', f('seed.arrow'), '--predictions', `dcd-toy=${f('pred.arrow')}`, '--k-range', '2,5', '--central', '2', '--out', out]),
    ).toBe(0);
    const t = await readArrowFile(out);
    expect(stringColumn(t, 'set', out)).toEqual([...seedIds.map(() => 'seed'), ...heldIds.map(() => 'heldout')]);
    expect(Array.from(int32Column(t, 'slice', out))).toEqual([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, /* heldout */ 0, 1, 2, 0]);
    expect(metadataOf(t)).toMatchObject({ 'dcd.backbone': 'toy', 'dcd.slices.k': '3', 'dcd.slices.criterion': 'silhouette' });
    const j = JSON.parse(readFileSync(f('slices.json'), 'utf8'));
    expect(j.criterion.kind).toBe('silhouette');
    expect(j.slices[0]).toMatchObject({ slice: 0, seed_images: 4, heldout_images: 2, class_mix: [{ label: 0, count: 4, share: 1 }], context: { value: 'waves', count: 4, share: 1 } });
    expect(j.slices[0].central).toHaveLength(2);
    // h0 right, h3 wrong in slice 0; h1 wrong in slice 1; h2 right in slice 2
    expect(j.slices.map((s: any) => s.accuracy['dcd-toy'].accuracy)).toEqual([0.5, 0, 1]);
    expect(readFileSync(f('slices.csv'), 'utf8').split('\n')[0]).toBe('id,set,label,slice,distance');
  });

  it('refuses more slices than seeds, mismatched widths and bad flags with exit code 2 or 1', async () => {
    expect(await cli(['slices', '--seed', f('seed-emb.arrow'), '--k', '13', '--out', f('bad.arrow')])).toBe(2);
    expect(await cli(['slices', '--seed', f('seed-emb.arrow'), '--heldout', f('narrow.arrow'), '--k', '3', '--out', f('bad.arrow')])).toBe(1);
    expect(await cli(['slices', '--seed', f('seed-emb.arrow'), '--k', 'many', '--out', f('bad.arrow')])).toBe(2);
    expect(await cli(['slices', '--seed', f('seed-emb.arrow'), '--k-range', '2', '--out', f('bad.arrow')])).toBe(2);
    expect(await cli(['slices', '--seed', f('seed-emb.arrow'), '--predictions', `x=${f('pred.arrow')}`, '--out', f('bad.arrow')])).toBe(2);
    expect(await cli(['slices', '--seed', f('seed-emb.arrow'), '--heldout', f('heldout-emb.arrow'), '--predictions', f('pred.arrow'), '--out', f('bad.arrow')])).toBe(2);
  });
});

describe('dcd select --clean knn', () => {
  it('drops the mislabelled pick, refills, and reports the noise before/after', async () => {
    const out = f('picks.arrow');
    expect(
      await cli(['select', '--seed', f('cseed-emb.arrow'), '--pool', f('pool-emb.arrow'), '--k-train', '2', '--k-val', '0', '--clean', 'knn', '--clean-k', '3', '--clean-min-agreement', '0.5', '--truth', f('pool.arrow'), '--out', out]),
    ).toBe(0);
    expect(stringColumn(await readArrowFile(out), 'id', out)).toEqual(['a1', 'a5']);
    expect(metadataOf(await readArrowFile(out))).toMatchObject({ 'dcd.clean': 'knn', 'dcd.clean.k': '3', 'dcd.clean.rule': 'agreement' });
    const j = JSON.parse(readFileSync(f('picks.clean.json'), 'utf8'));
    expect(j.rounds).toBe(2);
    expect(j.dropped).toEqual({ train: 1, deval: 0 });
    expect(j.noise.train_before).toEqual({ known: 2, wrong: 1, rate: 0.5 });
    expect(j.noise.train_after).toEqual({ known: 2, wrong: 0, rate: 0 });
    expect(readFileSync(f('picks.dropped.csv'), 'utf8')).toBe('id,label,seed_id,set,agreement,round\nx,0,q0,train,0,0\n');
  });

  it('without --clean the selection is Algorithm 1\'s; bad clean options are refused', async () => {
    const out = f('plain.arrow');
    expect(await cli(['select', '--seed', f('cseed-emb.arrow'), '--pool', f('pool-emb.arrow'), '--k-train', '2', '--k-val', '0', '--out', out])).toBe(0);
    expect(stringColumn(await readArrowFile(out), 'id', out)).toEqual(['x', 'a1']);
    expect(await cli(['select', '--seed', f('cseed-emb.arrow'), '--pool', f('pool-emb.arrow'), '--k-train', '2', '--clean', 'knn', '--clean-k', '10', '--out', f('b.arrow')])).toBe(2);
    expect(await cli(['select', '--seed', f('cseed-emb.arrow'), '--pool', f('pool-emb.arrow'), '--k-train', '2', '--truth', f('pool.arrow'), '--out', f('b.arrow')])).toBe(2);
    expect(await cli(['select', '--seed', f('cseed-emb.arrow'), '--pool', f('pool-emb.arrow'), '--k-train', '2', '--clean', 'knn', '--clean-k', '3', '--truth', f('seed.arrow'), '--out', f('b.arrow')])).toBe(1);
  });
});
