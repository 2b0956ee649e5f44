/**
 * data.kind folders: the folder dataset reader (sets, pool list, contexts, subset), its bad
 * inputs, the config checks, and the Arrow embedding checks that guard `dcd select`.
 */
import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { Field, FixedSizeList, Float32, makeData, RecordBatch, Schema, Struct, Table, Utf8, vectorFromArray, tableFromIPC, tableToIPC } from 'apache-arrow';
import { checkSubsetInPool, decodeFolderRows, readClassList, readContexts, readFolderDataset, readPoolList, readSubsetNames, scanFolderSet } from '../src/data/folders.js';
import { detectFolderLayout } from '../src/data/folder-layout.js';
import { buildTable, embeddingMatrix, writeArrowFile } from '../src/core/arrow.js';
import { EmbeddingStore } from '../src/retrieval/store.js';
import { loadConfig, pretrainOf } from '../src/core/config.js';
import { checkConfig } from '../src/pipeline/config-check.js';
import { poolReference, selectionQuality } from '../src/eval/selection-quality.js';

const CLASSES = ['cat', 'dog', 'fox'];

function tmp(): string {
  return mkdtempSync(path.join(tmpdir(), 'dcd-folders-'));
}

async function png(file: string, rgb: [number, number, number] = [200, 30, 30], size = 8): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  await sharp({ create: { width: size, height: size, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toFile(file);
}

/** A complete tiny folder dataset: 3 classes in every set, a pool of 2 classes. */
async function makeDataset(root: string): Promise<void> {
  for (const set of ['train', 'test', 'mfreq', 'complement'])
    for (const [i, c] of CLASSES.entries()) for (let k = 0; k < 2; k++) await png(path.join(root, set, c, `${k}.png`), [i * 80, k * 100, 50]);
  for (let k = 0; k < 4; k++) await png(path.join(root, 'pool', `p${k}.png`), [k * 60, 10, 10]);
  writeFileSync(path.join(root, 'pool.csv'), 'path,weak_label,true_label,context\npool/p0.png,cat,cat,snow\npool/p1.png,dog,fox,grass\npool/p2.png,0,none,snow\npool/p3.png,dog,dog,\n');
}

describe('folder dataset reader', () => {
  it('reads the sets (classes in sorted folder order), the pool (names or indices) and contexts', async () => {
    const root = tmp();
    await makeDataset(root);
    writeFileSync(path.join(root, 'contexts.csv'), 'path,context\nmfreq/cat/0.png,snow\n"test/dog/1.png",grass\n');
    const ds = await readFolderDataset({
      train: path.join(root, 'train'),
      test: path.join(root, 'test'),
      mfreq: path.join(root, 'mfreq'),
      complement: path.join(root, 'complement'),
      pool: path.join(root, 'pool.csv'),
      contexts: path.join(root, 'contexts.csv'),
    });
    expect(ds.classes).toEqual(CLASSES);
    expect(ds.sets.train.map((r) => `${r.id}:${r.label}`)).toEqual(['cat/0.png:0', 'cat/1.png:0', 'dog/0.png:1', 'dog/1.png:1', 'fox/0.png:2', 'fox/1.png:2']);
    expect(ds.sets.mfreq[0]!.context).toBe('{"context":"snow"}');
    expect(ds.sets.mfreq[1]!.context).toBeUndefined();
    expect(ds.sets.test.find((r) => r.id === 'dog/1.png')!.context).toBe('{"context":"grass"}');
    expect(ds.pool.map((r) => [r.id, r.weak_label, r.label])).toEqual([
      ['pool/p0.png', 0, -1],
      ['pool/p1.png', 1, -1],
      ['pool/p2.png', 0, -1],
      ['pool/p3.png', 1, -1],
    ]);
    // true_label by name; a name outside the classes is "none of them" (-1); empty = unknown
    expect(ds.pool.map((r) => r.context)).toEqual(['{"context":"snow","true_label":0}', '{"context":"grass","true_label":2}', '{"context":"snow","true_label":-1}', '{"true_label":1}']);
    expect(ds.pool[0]!.path).toBe(path.join(root, 'pool/p0.png'));
  });

  it('follows classes.txt for the class order and finds images in nested folders', async () => {
    const root = tmp();
    await png(path.join(root, 'train/zebra/a/b/deep.png'));
    await png(path.join(root, 'train/ant/x.png'));
    writeFileSync(path.join(root, 'classes.txt'), 'zebra\n\nant\n');
    const classes = readClassList(path.join(root, 'classes.txt'));
    expect(classes).toEqual(['zebra', 'ant']);
    const { rows } = scanFolderSet(path.join(root, 'train'), 'train', classes);
    expect(rows.map((r) => [r.id, r.label])).toEqual([
      ['ant/x.png', 1],
      ['zebra/a/b/deep.png', 0],
    ]);
  });

  it('refuses a missing set, an empty set, and a class that train lacks, naming the key and folder', async () => {
    const root = tmp();
    expect(() => scanFolderSet(path.join(root, 'nope'), 'test', CLASSES)).toThrow(/data\.folders\.test: .*nope not found/);
    mkdirSync(path.join(root, 'empty/cat'), { recursive: true });
    expect(() => scanFolderSet(path.join(root, 'empty'), 'mfreq', CLASSES)).toThrow(/data\.folders\.mfreq: .*empty holds no images in its 1 class folder/);
    await png(path.join(root, 'compl/wolf/1.png'));
    expect(() => scanFolderSet(path.join(root, 'compl'), 'complement', CLASSES, { trainRoot: '/data/train' })).toThrow(
      /data\.folders\.complement: .*compl\/wolf is class "wolf", which train \(\/data\/train\) lacks/,
    );
    writeFileSync(path.join(root, 'classes.txt'), 'cat\ndog\ncat\n');
    expect(() => readClassList(path.join(root, 'classes.txt'))).toThrow(/classes\.txt:3: class "cat" is listed twice \(first on line 1\)/);
  });

  it('pool list: a label that is no class, a path that escapes, duplicates and a missing path, each with its line', async () => {
    const root = tmp();
    const list = (name: string, text: string) => {
      const f = path.join(root, name);
      writeFileSync(f, text);
      return f;
    };
    await expect(readPoolList(list('a.csv', 'path,weak_label\nx.png,cat\ny.png,wolf\n'), CLASSES)).rejects.toThrow(/a\.csv:3: weak_label "wolf" is no class; expected a class name \(cat, dog, fox\) or an index 0\.\.2/);
    await expect(readPoolList(list('b.csv', 'path,weak_label\nx.png,cat\n../../etc/passwd,dog\n'), CLASSES)).rejects.toThrow(/b\.csv:3: path "\.\.\/\.\.\/etc\/passwd" leaves the list's folder/);
    await expect(readPoolList(list('b2.csv', 'path,weak_label\n/etc/passwd,dog\n'), CLASSES)).rejects.toThrow(/b2\.csv:2: path "\/etc\/passwd" leaves/);
    await expect(readPoolList(list('c.csv', 'path,weak_label\nx.png,cat\nsub/../x.png,dog\n'), CLASSES)).rejects.toThrow(/c\.csv:3: duplicate id "x\.png" \(first at .*c\.csv:2\)/);
    await expect(readPoolList(list('d.csv', 'path,url,weak_label\n,,cat\n'), CLASSES)).rejects.toThrow(/d\.csv:2: needs a path/);
    await expect(readPoolList(list('e.csv', 'path,label\nx.png,cat\n'), CLASSES)).rejects.toThrow(/e\.csv: no weak_label column \(has: path, label\)/);
    await expect(readPoolList(list('f.csv', 'path,weak_label\n'), CLASSES)).rejects.toThrow(/lists no images/);
    // a quoted field with a newline: the line number of the next record still counts it
    await expect(readPoolList(list('g.csv', 'path,weak_label,query\nx.png,cat,"two\nlines"\ny.png,7,q\n'), CLASSES)).rejects.toThrow(/g\.csv:4: weak_label "7" is no class/);
    // JSONL: line numbers, ids
    await expect(readPoolList(list('h.jsonl', '{"path":"x.png","weak_label":"cat"}\n\n{"path":"y.png","weak_label":5}\n'), CLASSES)).rejects.toThrow(/h\.jsonl:3: weak_label 5 is no class/);
    await expect(readPoolList(list('i.jsonl', '{"id":"a","url":"http://x/1.jpg","weak_label":1}\n{"id":"a","url":"http://x/2.jpg","weak_label":1}\n'), CLASSES)).rejects.toThrow(/i\.jsonl:2: duplicate id "a" \(first at .*i\.jsonl:1\)/);
    await expect(readPoolList(list('j.txt', 'x'), CLASSES)).rejects.toThrow(/unknown pool list format "\.txt"/);
  });

  it('pool list as Arrow, and url-only rows listed as unreadable by the decoder', async () => {
    const root = tmp();
    await png(path.join(root, 'imgs/a.png'));
    const f = path.join(root, 'pool.arrow');
    await writeArrowFile(f, buildTable({ path: { kind: 'utf8', values: ['imgs/a.png', null] }, url: { kind: 'utf8', values: [null, 'http://example.org/b.jpg'] }, weak_label: { kind: 'utf8', values: ['dog', 'fox'] } }));
    const rows = await readPoolList(f, CLASSES);
    expect(rows.map((r) => [r.id, r.weak_label])).toEqual([
      ['imgs/a.png', 1],
      ['http://example.org/b.jpg', 2],
    ]);
    const d = await decodeFolderRows(rows, 4);
    expect(d.rows.map((r) => r.id)).toEqual(['imgs/a.png']);
    expect(d.skipped).toEqual([{ id: 'http://example.org/b.jpg', path: 'http://example.org/b.jpg', reason: expect.stringMatching(/no path \(a url only/) }]);
  });

  it('decodes once to uint8 at the size (exact pixels), skipping and listing unreadable images', async () => {
    const root = tmp();
    await png(path.join(root, 'train/cat/a.png'), [10, 20, 250], 8);
    mkdirSync(path.join(root, 'train/cat'), { recursive: true });
    writeFileSync(path.join(root, 'train/cat/broken.png'), Buffer.from('not a png at all'));
    writeFileSync(path.join(root, 'train/cat/empty.jpg'), Buffer.alloc(0));
    const { rows } = scanFolderSet(path.join(root, 'train'), 'train', ['cat']);
    const d = await decodeFolderRows(rows, 4);
    expect(d.rows.map((r) => r.id)).toEqual(['cat/a.png']);
    expect(d.pixels.length).toBe(4 * 4 * 3);
    expect([...d.pixels.subarray(0, 3)]).toEqual([10, 20, 250]);
    expect(d.skipped.map((s) => s.id).sort()).toEqual(['cat/broken.png', 'cat/empty.jpg']);
    expect(d.skipped.find((s) => s.id === 'cat/empty.jpg')!.reason).toMatch(/empty file/);
  });

  it('contexts.csv and subset files: errors with lines', () => {
    const root = tmp();
    writeFileSync(path.join(root, 'ctx.csv'), 'file,ctx\n');
    expect(() => readContexts(path.join(root, 'ctx.csv'))).toThrow(/ctx\.csv:1: expected a header "path,context"/);
    writeFileSync(path.join(root, 'ctx2.csv'), 'path,context\na.png,x\n../b.png,y\n');
    expect(() => readContexts(path.join(root, 'ctx2.csv'))).toThrow(/ctx2\.csv:3: path "\.\.\/b\.png" leaves/);
    writeFileSync(path.join(root, 'sub.txt'), '# debug these\ncat\nfox # the rare one\nwolf\n');
    expect(() => readSubsetNames(path.join(root, 'sub.txt'), CLASSES)).toThrow(/sub\.txt:4: "wolf" is no class/);
    writeFileSync(path.join(root, 'sub2.txt'), 'cat\nfox\n');
    expect(readSubsetNames(path.join(root, 'sub2.txt'), CLASSES)).toEqual([0, 2]);
    const pool = [{ id: 'a', path: '', label: -1, wnid: '', class_name: 'cat', set: 'pool', weak_label: 0 }];
    expect(() => checkSubsetInPool([0, 2], pool, CLASSES, 'sub2.txt')).toThrow(/sub2\.txt: subset class\(es\) "fox" have no pool images/);
  });
});

describe('dcd init layout detection', () => {
  it('names what is missing, the option to give it, and the other folders found', async () => {
    const root = tmp();
    for (const s of ['train', 'test', 'deploy_a', 'deploy_b']) mkdirSync(path.join(root, s, 'cat'), { recursive: true });
    writeFileSync(path.join(root, 'pool.csv'), 'path,weak_label\n');
    expect(() => detectFolderLayout(root)).toThrow(/no mfreq, complement found; .*--mfreq FOLDER \(data\.folders\.mfreq\), --complement FOLDER .*other folders here: deploy_a, deploy_b/);
    const l = detectFolderLayout(root, { mfreq: 'deploy_a', complement: 'deploy_b' });
    expect(l.spec.mfreq).toBe(path.join(root, 'deploy_a'));
    expect(l.spec.pool).toBe(path.join(root, 'pool.csv'));
    expect(l.others).toEqual([]);
  });
});

describe('folders config', () => {
  async function config(root: string, extra: string): Promise<string> {
    await makeDataset(root);
    const f = path.join(root, 'cfg.yaml');
    writeFileSync(
      f,
      `experiment: { name: t }\ndata:\n  kind: folders\n  folders: { train: train, test: test, mfreq: mfreq, complement: complement, pool: pool.csv }\n  image_size: 8\n` +
        `train: { model: 'small_cnn:4-8' }\nfilter: { enabled: false }\n${extra}`,
    );
    return f;
  }

  it('resolves pretrain.data against the config file and refuses a backbone that learns from a debug set', async () => {
    const root = tmp();
    const f = await config(root, `backbones:\n  - { name: b, weights: demo, pretrain: { kind: broad_cnn, data: mfreq } }\n`);
    const cfg = loadConfig(f);
    expect(pretrainOf(cfg.backbones[0]!)?.data).toBe(path.join(root, 'mfreq'));
    expect(() => checkConfig(cfg)).toThrow(/config\.backbones\[0\]\.pretrain\.data: .*mfreq is the mfreq set \(data\.folders\.mfreq\); a backbone must never learn from the sets DCD is evaluated on/);
    const withData = (d: string) => {
      const g = path.join(root, `cfg-${d.replace(/\W/g, '_')}.yaml`);
      writeFileSync(g, readFileSync(f, 'utf8').replace('data: mfreq', `data: ${d}`));
      return loadConfig(g);
    };
    expect(() => checkConfig(withData('test/cat'))).toThrow(/overlaps the test set/);
    expect(() => checkConfig(withData('.'))).toThrow(/overlaps the test set/);
    expect(() => checkConfig(withData('complement'))).toThrow(/is the complement set/);
    // the pool and the train folder are fine
    expect(() => checkConfig(withData('pool'))).not.toThrow();
    expect(() => checkConfig(withData('train'))).not.toThrow();
  });

  it('names a missing folder with its key', async () => {
    const root = tmp();
    const f = await config(root, `backbones:\n  - { name: b, weights: demo, pretrain: { kind: random_cnn } }\n`);
    expect(() => checkConfig(loadConfig(f, { set: ['data.folders.complement=nowhere'] }))).toThrow(/config\.data\.folders\.complement: .*nowhere does not exist/);
  });
});

describe('Arrow embedding files are checked before use', () => {
  /** An Arrow file with an `embedding` FixedSizeList<Float32>[width] column over `values`. */
  async function embeddingFile(file: string, ids: string[], width: number, values: Float32Array): Promise<void> {
    const type = new FixedSizeList(width, new Field('item', new Float32(), false));
    const child = makeData({ type: new Float32(), length: values.length, data: values });
    const emb = makeData({ type, length: ids.length, nullCount: 0, child });
    const idv = vectorFromArray(ids, new Utf8());
    const schema = new Schema([new Field('id', new Utf8()), new Field('embedding', type, false)]);
    const batch = new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: ids.length, nullCount: 0, children: [idv.data[0]!, emb] }));
    writeFileSync(file, tableToIPC(new Table([batch]), 'file'));
  }

  it('refuses empty child values (read as zeros before), NaN/Inf, and shards of different widths, naming file and column', async () => {
    const root = tmp();
    const empty = path.join(root, 'empty.arrow');
    await embeddingFile(empty, ['a', 'b', 'c'], 4, new Float32Array(0));
    const store = await EmbeddingStore.open([empty], { role: 'pool' });
    await expect(store.readAll()).rejects.toThrow(/empty\.arrow: column embedding: 0 child values for 3 rows × width 4 \(12 needed\)/);
    expect(() => embeddingMatrix(tableFromIPC(readFileSync(empty)), 'embedding', empty)).toThrow(/empty\.arrow: column embedding: 0 child values/);
    const nan = path.join(root, 'nan.arrow');
    await embeddingFile(nan, ['a', 'b'], 2, Float32Array.from([0, 1, 2, NaN]));
    await expect((await EmbeddingStore.open([nan], { role: 'pool' })).readAll()).rejects.toThrow(/nan\.arrow: column embedding: value NaN in row 1 \(element 1\)/);
    const inf = path.join(root, 'inf.arrow');
    await embeddingFile(inf, ['a'], 2, Float32Array.from([Infinity, 1]));
    await expect((await EmbeddingStore.open([inf], { role: 'pool' })).readAll()).rejects.toThrow(/inf\.arrow: column embedding: value Infinity in row 0/);
    const w2 = path.join(root, 'w2.arrow');
    const w3 = path.join(root, 'w3.arrow');
    await embeddingFile(w2, ['a'], 2, Float32Array.from([1, 2]));
    await embeddingFile(w3, ['b'], 3, Float32Array.from([1, 2, 3]));
    await expect(EmbeddingStore.open([w2, w3], { role: 'pool' })).rejects.toThrow(/w3\.arrow: column embedding has width 3, but .*w2\.arrow has 2/);
    // a well-formed file reads back exactly
    const ok = await (await EmbeddingStore.open([w2], { role: 'pool' })).readAll();
    expect([...ok.data]).toEqual([1, 2]);
  });
});

describe('selection quality', () => {
  it('noise rate and same-context share against hand-counted values; the pool reference averages per seed', () => {
    const ctx = (c: string | null, t?: number) => JSON.stringify({ ...(c ? { context: c } : {}), ...(t !== undefined ? { true_label: t } : {}) });
    const pool = new Map([
      ['p1', { context: ctx('snow', 0) }],
      ['p2', { context: ctx('grass', 1) }],
      ['p3', { context: ctx('snow', 0) }],
      ['p4', { context: ctx(null) }],
    ]);
    const seeds = new Map([
      ['s1', { context: ctx('snow') }],
      ['s2', { context: ctx('grass') }],
    ]);
    const q = selectionQuality('dcd-x', [
      { id: 'p1', label: 0, seedId: 's1' }, // right class, same context
      { id: 'p2', label: 0, seedId: 's1' }, // wrong class (1), other context
      { id: 'p3', label: 0, seedId: 's2' }, // right class, other context
      { id: 'p4', label: 0, seedId: 's2' }, // nothing known
    ], pool, seeds);
    expect(q).toEqual({ name: 'dcd-x', picks: 4, withTruth: 3, noise: (100 * 1) / 3, withContext: 3, sameContext: (100 * 1) / 3 });
    const rows = [...pool].map(([id, r]) => ({ id, path: '', label: -1, wnid: '', class_name: '', set: 'pool', weak_label: 0, context: r.context }));
    const ref = poolReference(rows, [
      { id: 's1', path: '', label: 0, wnid: '', class_name: '', set: 'mfreq', context: ctx('snow') },
      { id: 's2', path: '', label: 0, wnid: '', class_name: '', set: 'mfreq', context: ctx('grass') },
    ]);
    // class 0's pool: 3 with truth, 1 wrong; 3 with context: snow 2, grass 1 → seeds: 2/3 and 1/3
    expect(ref.noise).toBeCloseTo(100 / 3, 10);
    expect(ref.sameContext).toBeCloseTo(50, 10);
    expect(ref.picks).toBe(4);
  });
});


describe('Arrow manifest files are checked when read', () => {
  it('refuses a missing id, a repeated id and a label that is no integer, naming file, column and row', async () => {
    const { readManifest } = await import('../src/data/manifest.js');
    const root = tmp();
    const write = async (name: string, ids: (string | null)[], labels: number[]) => {
      const f = path.join(root, name);
      const s = (v: string) => ({ kind: 'utf8' as const, values: ids.map(() => v) });
      await writeArrowFile(f, buildTable({ id: { kind: 'utf8', values: ids }, path: s('p'), label: { kind: 'float32', values: labels }, wnid: s(''), class_name: s(''), set: s('pool') }));
      return f;
    };
    await expect(readManifest(await write('a.arrow', ['x', null], [0, 1]))).rejects.toThrow(/a\.arrow: column id: row 1 has no id/);
    await expect(readManifest(await write('b.arrow', ['x', 'y', 'x'], [0, 1, 2]))).rejects.toThrow(/b\.arrow: column id: "x" in rows 0 and 2/);
    await expect(readManifest(await write('c.arrow', ['x', 'y'], [0, 0.5]))).rejects.toThrow(/c\.arrow: column label: row 1 \(id y\) holds 0\.5/);
    expect((await readManifest(await write('d.arrow', ['x', 'y'], [0, -1]))).rows.map((r) => r.label)).toEqual([0, -1]);
  });
});
