import { describe, expect, it, beforeAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { buildTable, embeddingMatrix, readArrowFile, stringColumn, writeArrowFile } from '../src/core/arrow.js';
import { type ManifestRow, writeManifest } from '../src/data/manifest.js';
import { initBackend } from '../src/backends/chain.js';
import { keepsContext, parseContext } from '../src/analysis/context.js';
import { type KnnFn, neighboursExcludingSelf, retentionCurve, retentionTable, writeRetentionOutputs } from '../src/analysis/retention.js';
import { main } from '../src/cli/main.js';

/**
 * Hand-made set: 7 images on a line (x = 0, 1, 3, 10, 11, 13, 100), so the neighbours
 * are known by hand:
 *   0 → [1, 2]   1 → [0, 2]   2 → [1, 0]   3 → [4, 5]   4 → [3, 5]   5 → [4, 3]   6 → [5, 4]
 */
const XS = [0, 1, 3, 10, 11, 13, 100];
const IDS = ['i0', 'i1', 'i2', 'i3', 'i4', 'i5', 'i6'];
const LABELS = [0, 0, 1, 1, 1, 0, -1]; // i6 has no class
const CLASS_NAMES = ['cat', 'cat', 'dog', 'dog', 'dog', 'cat', ''];
const CONTEXTS = [
  'time=day;weather=sunny;locations=grass|street',
  'time=day;locations=street', // weather not annotated
  'time=night;weather=sunny;locations=grass',
  'time=day;weather=snowing;locations=snow|forest',
  '{"time":"Day","weather":"snowing","locations":["forest","snow"]}', // same as i3, other spelling
  'none', // no context: not a query, never kept
  'time=day',
];

// Hand-computed (see the neighbour lists above):
// class, queries i0..i5: k=1 hits i0,i1,i3,i4 → 4/6; k=2 hits 1+1+0+1+1+0 → 4/12.
// context lenient, queries i0..i4,i6: k=1 hits i0,i1,i3,i4 → 4/6; k=2 adds i6→i4 (time agrees) → 5/12.
// context strict: only i3↔i4 are identical → k=1 2/6, k=2 2/12.
const EXPECT = {
  lenient: [
    { k: 1, cls: (100 * 4) / 6, ctx: (100 * 4) / 6 },
    { k: 2, cls: (100 * 4) / 12, ctx: (100 * 5) / 12 },
  ],
  strict: [
    { k: 1, cls: (100 * 4) / 6, ctx: (100 * 2) / 6 },
    { k: 2, cls: (100 * 4) / 12, ctx: (100 * 2) / 12 },
  ],
};

/** Exact brute-force reference search (ties: lower index first). */
const refKnn: KnnFn = (q, dim, pool, k) => {
  const nq = q.length / dim;
  const np = pool.length / dim;
  const indices = new Int32Array(nq * k);
  const distances = new Float32Array(nq * k);
  for (let i = 0; i < nq; i++) {
    const d = Array.from({ length: np }, (_, j) => {
      let s = 0;
      for (let c = 0; c < dim; c++) s += (q[i * dim + c]! - pool[j * dim + c]!) ** 2;
      return [s, j] as const;
    }).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (let r = 0; r < k; r++) {
      indices[i * k + r] = d[r]![1];
      distances[i * k + r] = d[r]![0];
    }
  }
  return { indices, distances };
};

function embedding(): Float32Array {
  // dim 3: (x, 0, 0); the zero columns keep the test honest about dim handling.
  const e = new Float32Array(XS.length * 3);
  XS.forEach((x, i) => (e[i * 3] = x));
  return e;
}

beforeAll(async () => {
  await initBackend(undefined, { quiet: true });
});

describe('context rule', () => {
  it('parses the three spellings and applies lenient and strict rules', () => {
    const a = parseContext('time=day;weather=sunny;locations=grass|street')!;
    const b = parseContext('{"time":"day","locations":["street"]}')!;
    const c = parseContext('time=night;locations=street')!;
    expect(keepsContext(a, b)).toBe(true); // weather unannotated in b; locations share street
    expect(keepsContext(a, b, 'strict')).toBe(false);
    expect(keepsContext(a, c)).toBe(false); // time differs
    expect(keepsContext(parseContext('snow'), parseContext('Snow '))).toBe(true);
    expect(keepsContext(parseContext('snow'), parseContext('desert'))).toBe(false);
    expect(parseContext('none')).toBeNull();
    // As src/data/focus.ts writes FOCUS contexts: JSON, 'none' = not annotated.
    const f1 = parseContext('{"time":"day","weather":"none","locations":["street","grass"]}')!;
    const f2 = parseContext('{"time":"day","weather":"partly cloudy","locations":["grass"]}')!;
    expect([...f1.keys()]).toEqual(['time', 'locations']);
    expect(keepsContext(f1, f2)).toBe(true);
    expect(keepsContext(f2, parseContext('{"time":"day","weather":"cloudy","locations":["grass"]}'))).toBe(false);
    expect(parseContext('{"time":"none","weather":"none","locations":["none"]}')).toBeNull();
    // As the synthetic benchmark writes them.
    expect(keepsContext(parseContext('{"context":"context3"}'), parseContext('context3'))).toBe(true);
    expect(keepsContext(parseContext('time=day'), parseContext('weather=sunny'))).toBe(false); // nothing compared
    expect(() => parseContext('{bad json', 'm.arrow row 3')).toThrow(/m\.arrow row 3.*not valid JSON/);
    expect(() => parseContext('time=day;oops', 'm.arrow row 4')).toThrow(/m\.arrow row 4.*key=value/);
  });
});

describe('retention on a hand-made set', () => {
  const classes = CLASS_NAMES.map((c) => c || null);
  const contexts = CONTEXTS.map((c) => parseContext(c));
  for (const rule of ['lenient', 'strict'] as const) {
    it(`matches hand-computed percentages (${rule})`, async () => {
      const rows = await retentionCurve('line', embedding(), 3, classes, contexts, [2, 1], { rule, knn: refKnn, queryChunk: 3 });
      expect(rows.map((r) => r.k)).toEqual([1, 2]);
      rows.forEach((r, i) => {
        expect(r.classRetention).toBeCloseTo(EXPECT[rule][i]!.cls, 10);
        expect(r.contextRetention).toBeCloseTo(EXPECT[rule][i]!.ctx, 10);
        expect(r.classQueries).toBe(6);
        expect(r.contextQueries).toBe(6);
      });
    });
  }

  it('searches L2-normalised features with normalize', async () => {
    // Raw: (1,0) is nearest to (0,1); by direction it is nearest to (10,0.5).
    const e = Float32Array.from([1, 0, 0, 1, 10, 0.5]);
    expect((await neighboursExcludingSelf(e, 2, 1, { knn: refKnn }))[0]).toBe(1);
    expect((await neighboursExcludingSelf(e, 2, 1, { knn: refKnn, normalize: true }))[0]).toBe(2);
    expect(Array.from(e)).toEqual([1, 0, 0, 1, 10, 0.5]); // the caller's array is untouched
  });

  it('drops the image itself even when a duplicate comes first, and checks k', async () => {
    // Rows 0 and 1 are identical; a search that lists 1 before 0 for query 0 must still drop 0.
    const e = Float32Array.from([5, 5, 9, 20]);
    const swapped: KnnFn = () => ({ indices: Int32Array.from([1, 0, 0, 1, 2, 1, 3, 2]), distances: new Float32Array(8) });
    const nb = await neighboursExcludingSelf(e, 1, 1, { knn: swapped });
    expect(Array.from(nb)).toEqual([1, 0, 1, 2]);
    await expect(neighboursExcludingSelf(e, 1, 4, { knn: refKnn })).rejects.toThrow(/1 ≤ k ≤ 3/);
  });

  it('gives the same numbers with the retrieval knn, without leaking tensors', async () => {
    const before = tf.memory().numTensors;
    const rows = await retentionCurve('line', embedding(), 3, classes, contexts, [1, 2]);
    expect(tf.memory().numTensors).toBe(before);
    rows.forEach((r, i) => {
      expect(r.classRetention).toBeCloseTo(EXPECT.lenient[i]!.cls, 6);
      expect(r.contextRetention).toBeCloseTo(EXPECT.lenient[i]!.ctx, 6);
    });
  });
});

async function writeFixture(dir: string, withContext = true): Promise<string> {
  const manifest = path.join(dir, 'manifest.arrow');
  const cols: Parameters<typeof buildTable>[0] = {
    id: { kind: 'utf8', values: IDS },
    path: { kind: 'utf8', values: IDS.map((i) => `${i}.png`) },
    label: { kind: 'int32', values: LABELS },
    class_name: { kind: 'utf8', values: CLASS_NAMES },
  };
  if (withContext) cols.context = { kind: 'utf8', values: CONTEXTS };
  await writeArrowFile(manifest, buildTable(cols));
  // Embeddings in another order, split over two files, plus an id not in the manifest.
  const e = embedding();
  const rowsOf = (idx: number[]) => {
    const out = new Float32Array(idx.length * 3);
    idx.forEach((i, r) => out.set(e.subarray(i * 3, i * 3 + 3), r * 3));
    return out;
  };
  const part = async (file: string, idx: number[], extra = false) => {
    const ids = idx.map((i) => IDS[i]!);
    let emb = rowsOf(idx);
    if (extra) {
      ids.push('stranger');
      emb = Float32Array.from([...emb, 2, 0, 0]);
    }
    await writeArrowFile(file, buildTable({ id: { kind: 'utf8', values: ids }, embedding: { kind: 'embedding', values: emb, dim: 3 } }, { 'dcd.backbone': 'resnet_tiny' }));
  };
  await part(path.join(dir, 'emb', 'resnet_tiny', 'test.arrow'), [6, 2, 4], true);
  await part(path.join(dir, 'emb', 'resnet_tiny', 'train.arrow'), [5, 0, 3, 1]);
  return manifest;
}

describe('retention from files', () => {
  it('joins cached embeddings by id and writes the table and the plot', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-retention-'));
    const manifest = await writeFixture(dir);
    const rows = await retentionTable({ manifest, backbones: ['resnet_tiny'], embeddings: path.join(dir, 'emb'), ks: [1, 2] }, { knn: refKnn, rule: 'strict' });
    expect(rows.map((r) => +r.contextRetention.toFixed(6))).toEqual(EXPECT.strict.map((x) => +x.ctx.toFixed(6)));
    expect(rows.map((r) => +r.classRetention.toFixed(6))).toEqual(EXPECT.strict.map((x) => +x.cls.toFixed(6)));
    const out = path.join(dir, 'out');
    await writeRetentionOutputs(rows, out, { manifest, rule: 'strict', normalize: false, ks: [1, 2] });
    const json = JSON.parse(readFileSync(path.join(out, 'retention.json'), 'utf8'));
    expect(json.rule).toBe('strict');
    expect(json.rows).toHaveLength(2);
    expect(readFileSync(path.join(out, 'retention.csv'), 'utf8').split('\n')[1]).toBe('resnet_tiny,1,66.67,33.33,6,6');
    expect(readFileSync(path.join(out, 'retention.md'), 'utf8')).toContain('| resnet_tiny | 2 | 33.33 | 16.67 | 6 | 6 |');
    expect(readFileSync(path.join(out, 'retention.svg'), 'utf8')).toContain('<svg');
    expect(readFileSync(path.join(out, 'retention.png')).subarray(1, 4).toString()).toBe('PNG');
  });

  it('runs end to end through the CLI with the retrieval knn', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-retention-'));
    const manifest = await writeFixture(dir);
    const out = path.join(dir, 'out');
    const code = await main(['retention', '--backbones', 'resnet_tiny', '--data', manifest, '--embeddings', path.join(dir, 'emb'), '--k', '2,1', '--out', out]);
    expect(code).toBe(0);
    const json = JSON.parse(readFileSync(path.join(out, 'retention.json'), 'utf8'));
    expect(json.rule).toBe('lenient');
    expect(json.rows.map((r: { contextRetention: number }) => +r.contextRetention.toFixed(6))).toEqual(EXPECT.lenient.map((x) => +x.ctx.toFixed(6)));
    expect(json.rows.map((r: { classRetention: number }) => +r.classRetention.toFixed(6))).toEqual(EXPECT.lenient.map((x) => +x.cls.toFixed(6)));
    expect(existsSync(path.join(out, 'retention.png'))).toBe(true);
  });

  it('names the file and the fix for bad input', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-retention-'));
    const manifest = await writeFixture(dir, false);
    await expect(retentionTable({ manifest, backbones: ['resnet_tiny'], embeddings: path.join(dir, 'emb'), ks: [1] }, { knn: refKnn })).rejects.toThrow(/manifest\.arrow: no context column/);
    const m2 = await writeFixture(mkdtempSync(path.join(tmpdir(), 'dcd-retention-')));
    await expect(retentionTable({ manifest: m2, backbones: ['dino_vits8'], embeddings: path.join(dir, 'emb'), ks: [1] }, { knn: refKnn })).rejects.toThrow(/dino_vits8: no cached embeddings under/);
    await expect(
      retentionTable({ manifest: m2, backbones: ['resnet_tiny'], embeddings: { resnet_tiny: [path.join(dir, 'emb', 'resnet_tiny', 'test.arrow')] }, ks: [1] }, { knn: refKnn }),
    ).rejects.toThrow(/resnet_tiny: 4 of 7 manifest images have no embedding.*run `dcd embed`/);
    // Two files of one backbone from different weights: ambiguous, refused.
    const d3 = mkdtempSync(path.join(tmpdir(), 'dcd-retention-'));
    const m3 = await writeFixture(d3);
    const other = path.join(d3, 'emb', 'resnet_tiny', 'other.arrow');
    await writeArrowFile(other, buildTable({ id: { kind: 'utf8', values: ['i0'] }, embedding: { kind: 'embedding', values: Float32Array.from([0, 0, 0]), dim: 3 } }, { 'dcd.backbone': 'resnet_tiny', 'dcd.weights_sha256': 'b'.repeat(64) }));
    const first = path.join(d3, 'emb', 'resnet_tiny', 'test.arrow');
    await writeArrowFile(first, buildTable({ id: { kind: 'utf8', values: ['i1'] }, embedding: { kind: 'embedding', values: Float32Array.from([1, 0, 0]), dim: 3 } }, { 'dcd.backbone': 'resnet_tiny', 'dcd.weights_sha256': 'a'.repeat(64) }));
    await expect(retentionTable({ manifest: m3, backbones: ['resnet_tiny'], embeddings: path.join(d3, 'emb'), ks: [1] }, { knn: refKnn })).rejects.toThrow(/different weights/);
    expect(await main(['retention', '--backbones', 'resnet_tiny', '--data', m2, '--embeddings', path.join(dir, 'emb'), '--k', '0'])).toBe(2);
    // One id embedded in two files (as two seeds of one run do): refused, never mixed.
    const d4 = mkdtempSync(path.join(tmpdir(), 'dcd-retention-'));
    const m4 = await writeFixture(d4);
    const dup = path.join(d4, 'emb', 'resnet_tiny', 'seed1.arrow');
    await writeArrowFile(dup, buildTable({ id: { kind: 'utf8', values: ['i0'] }, embedding: { kind: 'embedding', values: Float32Array.from([9, 9, 9]), dim: 3 } }, { 'dcd.backbone': 'resnet_tiny' }));
    await expect(retentionTable({ manifest: m4, backbones: ['resnet_tiny'], embeddings: path.join(d4, 'emb'), ks: [1] }, { knn: refKnn })).rejects.toThrow(/id "i0" has embeddings in both .*seed1\.arrow/);
  });

  it('embeds images itself when a backbone has weights and no cache, leaving out an unreadable image', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-retention-'));
    const colours: Record<string, [number, number, number]> = { red: [200, 30, 30], green: [30, 180, 40], blue: [20, 40, 200] };
    const rows: ManifestRow[] = [];
    let i = 0;
    for (const [ctx, rgb] of Object.entries(colours))
      for (let j = 0; j < 4; j++, i++) {
        const file = path.join(dir, `img${i}.png`);
        const px = Buffer.alloc(32 * 32 * 3);
        for (let p = 0; p < 32 * 32; p++) for (let c = 0; c < 3; c++) px[p * 3 + c] = Math.min(255, rgb[c]! + ((p * (j + 1) * 7 + c * 13) % 40));
        await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(file);
        rows.push({ id: `img${i}`, path: file, label: j % 2, wnid: '', class_name: j % 2 ? 'b' : 'a', set: 'test', context: JSON.stringify({ context: ctx }) });
      }
    writeFileSync(path.join(dir, 'broken.png'), 'not a png');
    rows.push({ id: 'broken', path: path.join(dir, 'broken.png'), label: 0, wnid: '', class_name: 'a', set: 'test', context: '{"context":"red"}' });
    const manifest = path.join(dir, 'm.arrow');
    await writeManifest(manifest, rows);
    const out = path.join(dir, 'out');
    const code = await main(['retention', '--backbones', 'resnet_tiny', '--data', manifest, '--weights', 'resnet_tiny=random', '--k', '1,3', '--out', out]);
    expect(code).toBe(0);
    const json = JSON.parse(readFileSync(path.join(out, 'retention.json'), 'utf8'));
    expect(json.rows.map((r: { classQueries: number }) => r.classQueries)).toEqual([12, 12]); // 'broken' left out
    // The same numbers from the embeddings it wrote, through the reference search.
    const t = await readArrowFile(path.join(out, 'embeddings', 'resnet_tiny.arrow'));
    const ids = stringColumn(t, 'id');
    const m = embeddingMatrix(t);
    const byId = new Map(rows.map((r) => [r.id, r]));
    const ref = await retentionCurve(
      'resnet_tiny',
      m.data,
      m.dim,
      ids.map((id) => byId.get(id)!.class_name),
      ids.map((id) => parseContext(byId.get(id)!.context)),
      [1, 3],
      { knn: refKnn },
    );
    expect(json.rows.map((r: { classRetention: number }) => r.classRetention)).toEqual(ref.map((r) => r.classRetention));
    expect(json.rows.map((r: { contextRetention: number }) => r.contextRetention)).toEqual(ref.map((r) => r.contextRetention));
    // Neither a cache nor weights: a clear usage error.
    expect(await main(['retention', '--backbones', 'resnet_tiny', '--data', manifest, '--out', out])).toBe(2);
  });
});
