/**
 * IDX files (MNIST, Fashion-MNIST), plain or gzip, and the Fashion-MNIST adapter.
 * Images inside an IDX file are addressed in manifests as `idx:<file>#<index>` and
 * reach the image pipeline as raw pixels (no PNGs written).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DataError } from '../core/errors.js';
import type { ManifestRow } from './manifest.js';
import type { ImageItem } from './images.js';

/** Where Debian's `dataset-fashion-mnist` installs the files. */
export const DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist';

/** Fashion-MNIST class names, by label. */
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'] as const;

/** A decoded IDX array of unsigned bytes. */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

const cache = new Map<string, IdxArray>();

/**
 * Reads an IDX file of unsigned bytes (type 0x08), gunzipping when it starts with the
 * gzip magic. Cached per path.
 */
export function readIdx(file: string): IdxArray {
  const hit = cache.get(file);
  if (hit) return hit;
  if (!existsSync(file)) throw new DataError(`${file}: IDX file not found`);
  let buf = readFileSync(file);
  if (buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf);
    } catch (e) {
      throw new DataError(`${file}: corrupt gzip (${(e as Error).message})`);
    }
  }
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== 0) throw new DataError(`${file}: not an IDX file (bad magic ${buf.subarray(0, 4).toString('hex')})`);
  if (buf[2] !== 0x08) throw new DataError(`${file}: IDX element type 0x${buf[2]!.toString(16)} not supported; expected 0x08 (unsigned byte)`);
  const nd = buf[3]!;
  const dims: number[] = [];
  for (let i = 0; i < nd; i++) dims.push(buf.readUInt32BE(4 + 4 * i));
  const off = 4 + 4 * nd;
  const want = dims.reduce((a, b) => a * b, 1);
  if (buf.length - off !== want) throw new DataError(`${file}: IDX header says ${dims.join('×')} = ${want} bytes, file holds ${buf.length - off}; truncated?`);
  const out = { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + off, want) };
  cache.set(file, out);
  return out;
}

/** Writes an IDX array (uncompressed bytes); for tests and fixtures. */
export function encodeIdx(dims: number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = 0x08;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data.buffer, data.byteOffset, data.length)]);
}

function findFile(dir: string, stem: string): string {
  for (const f of [`${stem}.gz`, stem]) if (existsSync(path.join(dir, f))) return path.join(dir, f);
  throw new DataError(`${dir}: ${stem}(.gz) not found; install Debian's dataset-fashion-mnist or point at a folder with the four IDX files`);
}

/**
 * Fashion-MNIST (or MNIST) IDX files in `dir` as manifest rows: `train/00000`, ...,
 * `test/00000`, ..., path `idx:<images file>#<index>`.
 */
export function fashionMnist(dir: string = DEBIAN_FASHION_MNIST, opts: { sets?: ('train' | 'test')[]; classes?: readonly string[] } = {}): ManifestRow[] {
  const classes = opts.classes ?? FASHION_MNIST_CLASSES;
  const rows: ManifestRow[] = [];
  for (const set of opts.sets ?? ['train', 'test']) {
    const prefix = set === 'train' ? 'train' : 't10k';
    const imgFile = findFile(dir, `${prefix}-images-idx3-ubyte`);
    const lblFile = findFile(dir, `${prefix}-labels-idx1-ubyte`);
    const imgs = readIdx(imgFile);
    const lbls = readIdx(lblFile);
    if (imgs.dims.length !== 3) throw new DataError(`${imgFile}: expected a 3-d IDX array (n, rows, cols), found ${imgs.dims.join('×')}`);
    if (lbls.dims.length !== 1 || lbls.dims[0] !== imgs.dims[0]) throw new DataError(`${lblFile}: expected ${imgs.dims[0]} labels, found ${lbls.dims.join('×')}`);
    const width = String(imgs.dims[0]! - 1).length;
    for (let i = 0; i < imgs.dims[0]!; i++) {
      const label = lbls.data[i]!;
      if (label >= classes.length) throw new DataError(`${lblFile}: label ${label} at ${i} is outside 0..${classes.length - 1}`);
      rows.push({ id: `${set}/${String(i).padStart(width, '0')}`, path: `idx:${imgFile}#${i}`, label, wnid: '', class_name: classes[label]!, set });
    }
  }
  return rows;
}

/**
 * Turns manifest rows into items for `imageBatches`: `idx:` paths become raw grey
 * images read from the IDX file, other paths stay files.
 */
export function manifestItems(rows: readonly Pick<ManifestRow, 'id' | 'path'>[]): ImageItem[] {
  return rows.map((r) => {
    if (!r.path.startsWith('idx:')) return { id: r.id, path: r.path };
    const m = /^idx:(.*)#(\d+)$/.exec(r.path);
    if (!m) throw new DataError(`manifest row ${r.id}: path "${r.path}" should be idx:<file>#<index>`);
    const a = readIdx(m[1]!);
    const i = Number(m[2]);
    if (a.dims.length !== 3 || i >= a.dims[0]!) throw new DataError(`${m[1]}: no image ${i} (holds ${a.dims.join('×')})`);
    const [, h, w] = a.dims as [number, number, number];
    return { id: r.id, path: r.path, raw: { data: a.data.subarray(i * h * w, (i + 1) * h * w), width: w, height: h, channels: 1 } };
  });
}
