import { describe, expect, it, beforeAll } from 'vitest';
import { mkdirSync, mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { readManifest, writeManifest, summarizeManifest, formatSummary, type ManifestRow } from '../src/data/manifest.js';
import {
  ilsvrcTrain,
  ilsvrcVal,
  imageFolder,
  imagenetV2,
  imagenetV2Complement,
  parseCsv,
  readClassSubset,
  subsetRows,
  weakPool,
} from '../src/data/adapters.js';
import { loadSynsets } from '../src/data/synsets.js';
import { focus } from '../src/data/focus.js';
import { DEBIAN_FASHION_MNIST, encodeIdx, fashionMnist, manifestItems } from '../src/data/idx.js';
import { imageBatches } from '../src/data/images.js';
import { buildManifest } from '../src/data/build.js';
import { DataError } from '../src/core/errors.js';
import { buildTable, writeArrowFile, metadataOf, readArrowFile } from '../src/core/arrow.js';

let dir: string;
const touch = (f: string, content = path.basename(f)) => {
  mkdirSync(path.dirname(f), { recursive: true });
  writeFileSync(f, content);
};

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'dcd-data-'));
});

describe('synsets', () => {
  it('ships the 1000 ImageNet classes in sorted-wnid order with synonyms', () => {
    const s = loadSynsets();
    expect(s).toHaveLength(1000);
    expect(s[0]).toEqual({ index: 0, wnid: 'n01440764', names: ['tench', 'Tinca tinca'] });
    expect(s[999]!.wnid).toBe('n15075141');
    const w = s.map((x) => x.wnid);
    expect([...w].sort()).toEqual(w);
  });
});

describe('manifest file', () => {
  it('round-trips rows, optional columns and metadata', async () => {
    const rows: ManifestRow[] = [
      { id: 'a', path: '/x/a.jpg', label: 3, wnid: 'n01', class_name: 'c3', set: 'train' },
      { id: 'b', path: '', label: -1, wnid: 'n02', class_name: 'c4', set: 'pool', weak_label: 4, url: 'http://h/b.jpg', context: '{"query":"q"}', sha256: 'ab' },
    ];
    const f = path.join(dir, 'm.arrow');
    await writeManifest(f, rows, { 'dcd.source': 'test' });
    const back = await readManifest(f);
    expect(back.rows[0]).toEqual({ ...rows[0], weak_label: -1 });
    expect(back.rows[1]).toEqual(rows[1]);
    expect(back.meta['dcd.source']).toBe('test');
    expect(back.meta['dcd.kind']).toBe('manifest');
  });
  it('rejects duplicate ids and names the missing columns of a foreign file', async () => {
    const r = { id: 'a', path: 'p', label: 0, wnid: '', class_name: '', set: 's' };
    await expect(writeManifest(path.join(dir, 'dup.arrow'), [r, r])).rejects.toThrow(/duplicate id "a"/);
    const f = path.join(dir, 'foreign.arrow');
    await writeArrowFile(f, buildTable({ id: { kind: 'utf8', values: ['a'] } }));
    await expect(readManifest(f)).rejects.toThrow(/foreign\.arrow: missing column\(s\) path, label, wnid, class_name, set/);
  });
});

describe('ImageFolder and ILSVRC2012', () => {
  it('indexes ImageFolder classes in sorted order and finds nested images', () => {
    const root = path.join(dir, 'if');
    touch(path.join(root, 'zebra', 'z1.jpg'));
    touch(path.join(root, 'ant', 'sub', 'a2.PNG'));
    touch(path.join(root, 'ant', 'a1.jpeg'));
    touch(path.join(root, 'ant', 'notes.txt'));
    const rows = imageFolder(root);
    expect(rows.map((r) => [r.id, r.label, r.class_name])).toEqual([
      ['ant/a1.jpeg', 0, 'ant'],
      ['ant/sub/a2.PNG', 0, 'ant'],
      ['zebra/z1.jpg', 1, 'zebra'],
    ]);
  });
  it('labels ILSVRC train by the position of the wnid among the 1000, not among the folders present', () => {
    const root = path.join(dir, 'ilsvrc', 'train');
    touch(path.join(root, 'n15075141', 'n15075141_1.JPEG'));
    touch(path.join(root, 'n01443537', 'n01443537_1.JPEG'));
    touch(path.join(root, 'n01443537', 'n01443537_2.JPEG'));
    const rows = ilsvrcTrain(root);
    expect(rows.map((r) => [r.wnid, r.label, r.class_name])).toEqual([
      ['n01443537', 1, 'goldfish'],
      ['n01443537', 1, 'goldfish'],
      ['n15075141', 999, 'toilet tissue'],
    ]);
    touch(path.join(root, 'n99999999', 'x.JPEG'));
    expect(() => ilsvrcTrain(root)).toThrow(/n99999999 are not ImageNet-1k wnids/);
  });
  it('labels ILSVRC val from LOC_val_solution.csv or from the devkit ground truth plus an ID map', () => {
    const root = path.join(dir, 'ilsvrc', 'val');
    for (let i = 1; i <= 3; i++) touch(path.join(root, `ILSVRC2012_val_0000000${i}.JPEG`));
    const loc = path.join(dir, 'LOC_val_solution.csv');
    writeFileSync(
      loc,
      'ImageId,PredictionString\nILSVRC2012_val_00000002,n01443537 1 2 3 4 n01443537 5 6 7 8 \nILSVRC2012_val_00000001,n01440764 0 0 9 9 \nILSVRC2012_val_00000003,n15075141 1 1 2 2 \n',
    );
    expect(ilsvrcVal(root, { locSolution: loc }).map((r) => r.label)).toEqual([0, 1, 999]);
    // devkit IDs are in meta.mat order: here ID 1 = n15075141, ID 2 = n01440764, ID 3 = n01443537
    const gt = path.join(dir, 'gt.txt');
    writeFileSync(gt, '2\n3\n1\n');
    const map = path.join(dir, 'map_clsloc.txt');
    writeFileSync(map, 'n15075141 1 toilet_tissue\nn01440764 2 tench\nn01443537 3 goldfish\n');
    expect(ilsvrcVal(root, { groundTruth: gt, idMap: map }).map((r) => [r.id, r.label])).toEqual([
      ['ILSVRC2012_val_00000001.JPEG', 0],
      ['ILSVRC2012_val_00000002.JPEG', 1],
      ['ILSVRC2012_val_00000003.JPEG', 999],
    ]);
    expect(ilsvrcVal(root, { labels: gt, idMap: map }).map((r) => r.label)).toEqual([0, 1, 999]);
    expect(ilsvrcVal(root, { labels: loc }).map((r) => r.label)).toEqual([0, 1, 999]);
    expect(() => ilsvrcVal(root, { groundTruth: gt })).toThrow(/ID → wnid map/);
    const sorted = path.join(dir, 'ilsvrc', 'val-sorted');
    touch(path.join(sorted, 'n01443537', 'ILSVRC2012_val_00000002.JPEG'));
    expect(ilsvrcVal(sorted)).toEqual([expect.objectContaining({ label: 1, set: 'test', wnid: 'n01443537' })]);
    expect(() => ilsvrcVal(root)).toThrow(/no labels for the validation images/);
    writeFileSync(loc, 'ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 0 0 9 9\n');
    expect(() => ilsvrcVal(root, { locSolution: loc })).toThrow(/no ImageNet-1k label for 2 image/);
  });
});

describe('ImageNet-V2', () => {
  let roots: Record<string, string>;
  beforeAll(() => {
    roots = {};
    for (const v of ['matched-frequency', 'threshold0.7', 'top-images']) {
      const root = path.join(dir, `imagenetv2-${v}-format-val`);
      for (let c = 0; c < 1000; c++) mkdirSync(path.join(root, String(c)), { recursive: true });
      roots[v] = root;
    }
    // the same picture (same bytes) may sit in several variants under different file names
    for (const c of [0, 2, 10, 100, 999]) {
      touch(path.join(roots['matched-frequency']!, String(c), `mf${c}.jpeg`), `mf-${c}`);
      touch(path.join(roots['threshold0.7']!, String(c), `th${c}.jpeg`), c === 10 ? 'mf-10' : `th-${c}`);
      touch(path.join(roots['top-images']!, String(c), `top${c}.jpeg`), c === 2 ? 'th-2' : `top-${c}`);
    }
  });
  it('reads class folders as numbers (the string-sort trap)', () => {
    const rows = imagenetV2(roots['matched-frequency']!, 'matched-frequency');
    expect(rows.map((r) => r.label)).toEqual([0, 2, 10, 100, 999]);
    expect(rows.every((r) => r.set === 'mfreq')).toBe(true);
    expect(rows.find((r) => r.label === 999)!.wnid).toBe('n15075141');
    // what ImageFolder (string order, position as label) would do: folder "10" becomes class 2, "100" class 3
    const naive = imageFolder(roots['matched-frequency']!);
    expect(naive.map((r) => r.label)).not.toEqual(rows.map((r) => r.label));
    expect(naive.find((r) => r.id === '10/mf10.jpeg')!.label).toBe(2);
  });
  it('builds the Complement as the union minus MatchedFrequency by content, each picture once', async () => {
    const rows = await imagenetV2Complement({ matchedFrequency: roots['matched-frequency']!, threshold: roots['threshold0.7']!, topImages: roots['top-images']! });
    // 10 candidates; th10 duplicates mf10 (dropped), top2 duplicates th2 (kept once)
    expect(rows).toHaveLength(8);
    expect(rows.map((r) => r.id)).not.toContain('threshold0.7/10/th10.jpeg');
    expect(rows.map((r) => r.id)).not.toContain('top-images/2/top2.jpeg');
    expect(rows.every((r) => r.set === 'complement' && /^[0-9a-f]{64}$/.test(r.sha256!))).toBe(true);
  });
  it('rejects folders that are not class indices', () => {
    const root = path.join(dir, 'v2bad');
    touch(path.join(root, '1000', 'a.jpeg'));
    touch(path.join(root, 'cat', 'a.jpeg'));
    expect(() => imagenetV2(root, 'top-images')).toThrow(/1000, cat are not class indices 0\.\.999/);
  });
});

describe('class subsets and weak pools', () => {
  it('reads wnids and indices, and filters rows by label or weak label', () => {
    const f = path.join(dir, 'subset.txt');
    writeFileSync(f, '# Y_sub\nn01443537\n999, 5 # trailing comment\n5\n');
    expect(readClassSubset(f)).toEqual([1, 5, 999]);
    const rows = [
      { id: 'a', path: '', label: 1, wnid: '', class_name: '', set: 't' },
      { id: 'b', path: '', label: 2, wnid: '', class_name: '', set: 't' },
      { id: 'c', path: '', label: -1, weak_label: 999, wnid: '', class_name: '', set: 'pool' },
    ];
    expect(subsetRows(rows, [1, 5, 999]).map((r) => r.id)).toEqual(['a', 'c']);
    writeFileSync(f, 'n01443537\nbanana\n');
    expect(() => readClassSubset(f)).toThrow(/subset\.txt:2: expected a wnid .* found "banana"/);
  });
  it('reads weak pools from CSV (quoted fields), JSONL and Arrow', async () => {
    const csv = path.join(dir, 'pool.csv');
    writeFileSync(csv, 'path,url,weak_label,query\nimgs/a.jpg,http://x/a.jpg,n01443537,"goldfish, Carassius"\n,http://x/b.jpg,999,toilet tissue\n');
    const rows = await weakPool(csv);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ id: 'imgs/a.jpg', path: path.join(dir, 'imgs/a.jpg'), label: -1, weak_label: 1, wnid: 'n01443537', set: 'pool', url: 'http://x/a.jpg' });
    expect(JSON.parse(rows[0]!.context!)).toEqual({ query: 'goldfish, Carassius' });
    expect(rows[1]).toMatchObject({ id: 'http://x/b.jpg', path: '', weak_label: 999 });
    const jl = path.join(dir, 'pool.jsonl');
    writeFileSync(jl, '{"url":"http://x/c.jpg","wnid":"n01440764","query":"tench"}\n\n{"path":"d.png","weak_label":3}\n');
    expect((await weakPool(jl)).map((r) => r.weak_label)).toEqual([0, 3]);
    const ar = path.join(dir, 'pool.arrow');
    await writeArrowFile(ar, buildTable({ url: { kind: 'utf8', values: ['http://x/e.jpg'] }, weak_label: { kind: 'int32', values: [7] } }));
    expect((await weakPool(ar))[0]).toMatchObject({ weak_label: 7, url: 'http://x/e.jpg' });
    writeFileSync(jl, '{"url":"http://x/c.jpg","wnid":"n00000000"}\n');
    await expect(weakPool(jl)).rejects.toThrow(/record 1: weak label "n00000000"/);
    expect(parseCsv('a,"b ""q"", c"\r\n1,2\n')).toEqual([
      ['a', 'b "q", c'],
      ['1', '2'],
    ]);
  });
});

describe('FOCUS', () => {
  it('reads categories and time/weather/locations context from annotations.db', () => {
    const root = path.join(dir, 'focus');
    mkdirSync(root, { recursive: true });
    const db = new Database(path.join(root, 'annotations.db'));
    db.exec('CREATE TABLE annotations (id INTEGER PRIMARY KEY, image_path TEXT, category TEXT, time TEXT, weather TEXT, locations TEXT, humans TEXT)');
    const ins = db.prepare('INSERT INTO annotations (image_path, category, time, weather, locations, humans) VALUES (?, ?, ?, ?, ?, ?)');
    ins.run('/images/b.jpg', 'ship', 'night', 'foggy', 'water', 'no');
    ins.run('/images/a.jpg', 'cat', 'day', 'sunny', 'grass, street', 'yes');
    ins.run('/images/c.jpg', 'bird', null, null, null, 'no');
    db.close();
    const rows = focus(root);
    expect(rows.map((r) => [r.id, r.label, r.class_name])).toEqual([
      ['images/a.jpg', 4, 'cat'],
      ['images/b.jpg', 3, 'ship'],
      ['images/c.jpg', 9, 'bird'],
    ]);
    expect(rows[0]!.path).toBe(path.join(root, 'images/a.jpg'));
    expect(JSON.parse(rows[0]!.context!)).toEqual({ time: 'day', weather: 'sunny', locations: ['grass', 'street'] });
    expect(JSON.parse(rows[2]!.context!)).toEqual({ time: 'none', weather: 'none', locations: ['none'] });
  });
  it('names the file when the database has no usable table or is not SQLite', () => {
    const root = path.join(dir, 'focus-bad');
    mkdirSync(root, { recursive: true });
    const db = new Database(path.join(root, 'annotations.db'));
    db.exec('CREATE TABLE other (x TEXT)');
    db.close();
    expect(() => focus(root)).toThrow(/annotations\.db: no table with a "category" column/);
    writeFileSync(path.join(root, 'annotations.db'), 'not sqlite at all, just text that is long enough to be a header......');
    expect(() => focus(root)).toThrow(DataError);
  });
});

describe('IDX and Fashion-MNIST', () => {
  it('reads gzip IDX files built by the test and rejects truncated ones', async () => {
    const d = path.join(dir, 'idx');
    mkdirSync(d, { recursive: true });
    const imgs = new Uint8Array(3 * 4 * 5).map((_, i) => i * 4);
    writeFileSync(path.join(d, 'train-images-idx3-ubyte.gz'), gzipSync(encodeIdx([3, 4, 5], imgs)));
    writeFileSync(path.join(d, 'train-labels-idx1-ubyte'), encodeIdx([3], new Uint8Array([2, 0, 9])));
    const rows = fashionMnist(d, { sets: ['train'] });
    expect(rows.map((r) => [r.id, r.label, r.class_name])).toEqual([
      ['train/0', 2, 'Pullover'],
      ['train/1', 0, 'T-shirt/top'],
      ['train/2', 9, 'Ankle boot'],
    ]);
    const items = manifestItems(rows);
    expect('raw' in items[1]! && Array.from(items[1].raw.data)).toEqual(Array.from(imgs.subarray(20, 40)));
    expect('raw' in items[1]! && [items[1].raw.width, items[1].raw.height]).toEqual([5, 4]);
    writeFileSync(path.join(d, 'bad-idx'), encodeIdx([3, 4, 5], imgs).subarray(0, 30));
    expect(() => manifestItems([{ id: 'x', path: `idx:${path.join(d, 'bad-idx')}#0` }])).toThrow(/truncated/);
  });
  it.skipIf(!existsSync(DEBIAN_FASHION_MNIST))('reads the Debian dataset-fashion-mnist files', async () => {
    const rows = fashionMnist();
    const s = summarizeManifest(rows);
    expect(s.perSet).toEqual({ train: 60000, test: 10000 });
    expect(s.perClass).toHaveLength(10);
    for (const c of s.perClass) expect(c.perSet).toEqual({ train: 6000, test: 1000 });
    // first labels of train-labels-idx1-ubyte: 9 0 0 3 0 2 7 2
    expect(rows.slice(0, 8).map((r) => r.label)).toEqual([9, 0, 0, 3, 0, 2, 7, 2]);
    const items = manifestItems(rows.slice(0, 4));
    const out = [];
    for await (const b of imageBatches(items, { resize: 28, crop: 28, mean: [0, 0, 0], std: [1, 1, 1] }, 4)) out.push(b);
    expect(out[0]!.ids).toEqual(['train/00000', 'train/00001', 'train/00002', 'train/00003']);
    const raw = 'raw' in items[0]! ? items[0].raw.data : new Uint8Array();
    const x = out[0]!.data;
    for (const i of [0, 100, 400, 783]) expect(Math.round(x[i * 3]! * 255)).toBe(raw[i]);
    expect(raw.some((v) => v > 0)).toBe(true);
  });
});

describe('buildManifest and the CLI', () => {
  it('writes a manifest with class metadata and prints counts per class and set', async () => {
    const { main } = await import('../src/cli/main.js');
    const root = path.join(dir, 'cli-train');
    touch(path.join(root, 'n01443537', 'a.JPEG'));
    touch(path.join(root, 'n01443537', 'b.JPEG'));
    touch(path.join(root, 'n01440764', 'c.JPEG'));
    const out = path.join(dir, 'cli.arrow');
    const chunks: string[] = [];
    const orig = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => (chunks.push(String(s)), true)) as typeof process.stdout.write;
    let code: number;
    try {
      code = await main(['data', 'manifest', 'ilsvrc-train', root, '--out', out]);
    } finally {
      process.stdout.write = orig;
    }
    expect(code).toBe(0);
    const text = chunks.join('');
    expect(text).toMatch(/3 images/);
    expect(text).toMatch(/set train: 3/);
    expect(text).toMatch(/1\tn01443537\tgoldfish\t2\t2/);
    const m = await readManifest(out);
    expect(m.rows).toHaveLength(3);
    expect(JSON.parse(m.meta['dcd.classes']!)).toHaveLength(1000);
    expect(metadataOf(await readArrowFile(out))['dcd.source']).toBe('ilsvrc-train');
    const { rows, meta } = await buildManifest('imagefolder', root, { set: 'x' });
    expect(JSON.parse(meta['dcd.classes']!)).toEqual(['tench', 'goldfish']);
    expect(rows.map((r) => r.class_name)).toEqual(['tench', 'goldfish', 'goldfish']);
    expect(formatSummary(summarizeManifest(rows))).toMatch(/set x: 3/);
    expect(await main(['data', 'manifest', 'v2', path.join(dir, 'nope'), '--out', out])).toBe(1);
  });
  it('dcd data check lists the images that do not decode and writes a manifest of the rest', async () => {
    const { main } = await import('../src/cli/main.js');
    const sharp = (await import('sharp')).default;
    const root = path.join(dir, 'check');
    mkdirSync(path.join(root, 'a'), { recursive: true });
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#123456' } }).png().toFile(path.join(root, 'a', 'ok1.png'));
    await sharp({ create: { width: 9, height: 7, channels: 3, background: '#654321' } }).jpeg().toFile(path.join(root, 'a', 'ok2.jpg'));
    touch(path.join(root, 'a', 'html.jpg'), '<html>gone</html>');
    const m = path.join(dir, 'check.arrow');
    const okm = path.join(dir, 'check-ok.arrow');
    const cap: string[] = [];
    const orig = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((x: string) => (cap.push(String(x)), true)) as typeof process.stdout.write;
    let codes: number[];
    try {
      codes = [await main(['data', 'manifest', 'imagefolder', root, '--out', m]), await main(['data', 'check', m, '--out', okm])];
    } finally {
      process.stdout.write = orig;
    }
    expect(codes).toEqual([0, 0]);
    const text = cap.join('');
    expect(text).toMatch(/bad\ta\/html\.jpg\t.*not an image/);
    expect(text).toMatch(/2 of 3 images decode; 1 bad: not an image 1/);
    expect((await readManifest(okm)).rows.map((r) => r.id)).toEqual(['a/ok1.png', 'a/ok2.jpg']);
  });
});
