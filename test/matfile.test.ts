/**
 * MAT-file reader and ILSVRC2012 devkit (meta.mat, ground truth, tarball) against
 * fixtures written by scipy (scripts/parity/make_matfile_fixtures.py).
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseMatFile, type MatArray } from '../src/data/matfile.js';
import { devkitIdMap, openDevkit, parseDevkitSynsets, readTarEntries } from '../src/data/devkit.js';
import { ilsvrcVal, loadIlsvrcIdMap } from '../src/data/adapters.js';
import { DataError } from '../src/core/errors.js';

const FIX = path.join(import.meta.dirname, 'fixtures', 'data', 'devkit');
const expected = JSON.parse(readFileSync(path.join(FIX, 'expected.json'), 'utf8')) as {
  synsets: { id: number; wnid: string; words: string; numChildren: number }[];
  groundTruth: number[];
};
const num = (a: MatArray | undefined) => {
  if (a?.kind !== 'numeric') throw new Error(`expected numeric, got ${a?.kind}`);
  return a;
};

describe('MAT-file reader', () => {
  it('reads the devkit meta.mat layout, compressed or not, as scipy wrote it', () => {
    for (const f of ['meta.mat', 'meta-compressed.mat']) {
      const s = parseMatFile(readFileSync(path.join(FIX, f)), f).get('synsets');
      expect(s?.kind).toBe('struct');
      if (s?.kind !== 'struct') return;
      expect(s.dims).toEqual([8, 1]);
      expect(s.fields).toEqual(['ILSVRC2012_ID', 'WNID', 'words', 'gloss', 'num_children', 'children', 'wordnet_height', 'num_train_images']);
      const got = parseDevkitSynsets(readFileSync(path.join(FIX, f)), f);
      expect(got).toEqual(expected.synsets.map(({ id, wnid, words, numChildren }) => ({ id, wnid, words, numChildren })));
      // children of "dog" (1001): uint16 row vector [2 3 4 5]
      expect([...num(s.data[5]!.children).data]).toEqual([2, 3, 4, 5]);
      // the non-ASCII gloss survives (scipy writes UTF-8 for non-latin1 text)
      const gloss = s.data[4]!.gloss!;
      expect(gloss.kind === 'char' && gloss.data).toBe(expected.synsets[4]!.gloss);
    }
  });

  it('reads cell, char-matrix, single, int64, logical, complex, column-major matrix, nested struct and empty arrays', () => {
    const v = parseMatFile(readFileSync(path.join(FIX, 'misc.mat')), 'misc.mat');
    const cell = v.get('cell');
    expect(cell?.kind).toBe('cell');
    if (cell?.kind !== 'cell') return;
    expect(cell.data[0]).toMatchObject({ kind: 'char', data: 'abc' });
    expect(num(cell.data[1])).toMatchObject({ class: 'int16', dims: [2, 2] });
    expect([...num(cell.data[1]).data]).toEqual([1, 3, 2, 4]); // column-major
    expect(num(cell.data[2]).dims).toEqual([0, 0]);
    // rows 'abc' and 'def', stored column-major
    expect(v.get('charmat')).toMatchObject({ kind: 'char', dims: [2, 3], data: 'adbecf' });
    expect(num(v.get('single'))).toMatchObject({ class: 'single' });
    expect([...num(v.get('single')).data]).toEqual([0.5, 1.25, -3]);
    expect([...num(v.get('int64')).data]).toEqual([-(2 ** 40), 2 ** 40]);
    expect(num(v.get('logical')).logical).toBe(true);
    expect([...num(v.get('logical')).data]).toEqual([1, 0, 1]);
    const c = num(v.get('complex'));
    expect([...c.data]).toEqual([1, 3]);
    expect([...c.imag!]).toEqual([2, -4]);
    const m = num(v.get('matrix'));
    expect(m.dims).toEqual([2, 3]);
    expect([...m.data]).toEqual([0, 3, 1, 4, 2, 5]);
    const nested = v.get('nested');
    if (nested?.kind !== 'struct') throw new Error('nested should be a struct');
    const inner = nested.data[0]!.inner!;
    if (inner.kind !== 'struct') throw new Error('inner should be a struct');
    expect([...num(inner.data[0]!.a).data]).toEqual([1.5, -2]);
    expect(inner.data[0]!.b).toMatchObject({ kind: 'char', data: 'x' });
    expect(num(nested.data[0]!.n)).toMatchObject({ class: 'int8' });
    expect(num(v.get('empty')).dims).toEqual([0, 3]);
  });

  it('refuses truncated, corrupt, v7.3 and non-MAT files with the file name', () => {
    const buf = readFileSync(path.join(FIX, 'meta.mat'));
    for (const cut of [200, 1000, buf.length - 3]) expect(() => parseMatFile(buf.subarray(0, cut), 'cut.mat')).toThrow(/cut\.mat: .*truncated/);
    const comp = readFileSync(path.join(FIX, 'meta-compressed.mat'));
    expect(() => parseMatFile(comp.subarray(0, comp.length - 20), 'cz.mat')).toThrow(/cz\.mat: .*(inflate|truncated)/);
    const v73 = Buffer.alloc(512);
    v73.write('MATLAB 7.3 MAT-file, Platform: GLNXA64');
    expect(() => parseMatFile(v73, 'h5.mat')).toThrow(/h5\.mat: .*v7\.3/);
    expect(() => parseMatFile(Buffer.from('wnid 1 tench\n'.repeat(20)), 'map.txt')).toThrow(/map\.txt: not a MATLAB Level-5/);
    // a flipped byte in the first element's length: a clear error, never an out-of-range read
    const bad = Buffer.from(buf);
    bad.writeUInt32LE(0x7fffffff, 132);
    expect(() => parseMatFile(bad, 'bad.mat')).toThrow(DataError);
  });
});

describe('ILSVRC2012 devkit', () => {
  let dir: string;
  let valRoot: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'dcd-devkit-'));
    valRoot = path.join(dir, 'val');
    mkdirSync(valRoot);
    for (let i = 1; i <= expected.groundTruth.length; i++) writeFileSync(path.join(valRoot, `ILSVRC2012_val_${String(i).padStart(8, '0')}.JPEG`), 'x');
  });

  it('opens the folder and the tarball alike, and reads the tar entries it needs', () => {
    const folder = openDevkit(path.join(FIX, 'ILSVRC2012_devkit_t12'));
    const tar = openDevkit(path.join(FIX, 'ILSVRC2012_devkit_t12.tar.gz'));
    expect(folder.metaMat?.bytes.equals(tar.metaMat!.bytes)).toBe(true);
    expect(folder.groundTruth?.bytes.toString()).toBe(tar.groundTruth?.bytes.toString());
    expect(tar.metaMat?.file).toMatch(/ILSVRC2012_devkit_t12\.tar\.gz:ILSVRC2012_devkit_t12\/data\/meta\.mat$/);
    // the parent folder works too (the user points at where they extracted it)
    expect(openDevkit(FIX).metaMat).toBeDefined();
  });

  it('maps ILSVRC2012_IDs of the leaf classes only', () => {
    const m = loadIlsvrcIdMap(path.join(FIX, 'ILSVRC2012_devkit_t12.tar.gz'));
    expect([...m.entries()]).toEqual(expected.synsets.filter((s) => s.numChildren === 0).map((s) => [s.id, s.wnid]));
    expect(loadIlsvrcIdMap(path.join(FIX, 'meta.mat'))).toEqual(m);
    expect(() => devkitIdMap([{ id: 1, wnid: 'n1', words: '', numChildren: 0 }, { id: 1, wnid: 'n2', words: '', numChildren: 0 }], 'dup.mat')).toThrow(/dup\.mat: ILSVRC2012_ID 1 appears twice/);
  });

  it('labels ILSVRC2012 val from the devkit tarball or folder, as torchvision does', () => {
    // wnid of each val image = the ID map of its ground-truth ID; label = index of that wnid in sorted order
    const wnidOfId = new Map(expected.synsets.map((s) => [s.id, s.wnid]));
    const want = expected.groundTruth.map((id) => wnidOfId.get(id));
    for (const kit of [path.join(FIX, 'ILSVRC2012_devkit_t12.tar.gz'), path.join(FIX, 'ILSVRC2012_devkit_t12')]) {
      const rows = ilsvrcVal(valRoot, { groundTruth: kit });
      expect(rows.map((r) => r.wnid)).toEqual(want);
      expect(rows.every((r) => Number.isInteger(r.label) && r.label >= 0 && r.label < 1000)).toBe(true);
    }
    // the .txt plus meta.mat as the ID map gives the same
    const gt = path.join(FIX, 'ILSVRC2012_devkit_t12', 'data', 'ILSVRC2012_validation_ground_truth.txt');
    expect(ilsvrcVal(valRoot, { groundTruth: gt, idMap: path.join(FIX, 'meta.mat') }).map((r) => r.wnid)).toEqual(want);
  });

  it('refuses a truncated or corrupt tarball, and a devkit without meta.mat, naming the file', () => {
    const tgz = readFileSync(path.join(FIX, 'ILSVRC2012_devkit_t12.tar.gz'));
    const cut = path.join(dir, 'cut.tar.gz');
    writeFileSync(cut, tgz.subarray(0, tgz.length - 40));
    expect(() => openDevkit(cut)).toThrow(/cut\.tar\.gz/);
    const raw = Buffer.alloc(1024);
    raw.write('not a tar header at all');
    expect(() => readTarEntries(raw, 'junk.tar', () => true)).toThrow(/junk\.tar/);
    const empty = path.join(dir, 'empty.tar.gz');
    writeFileSync(empty, gzipSync(Buffer.alloc(1024)));
    expect(() => loadIlsvrcIdMap(empty)).toThrow(/empty\.tar\.gz: no data\/meta\.mat/);
  });
});
