/**
 * Writers of `dcd export`: CSV (RFC 4180), Parquet (through parquet-wasm, from the same
 * Arrow table dcd builds for its own files) and a FiftyOne dataset folder in FiftyOne's
 * documented `FiftyOneImageClassificationDataset` layout:
 *
 *     <out>/fiftyone/
 *         data/picks/000000.png     the images (the pixels the run used; a symlink to the
 *         data/seed/000000.png      original file where the run read images from files)
 *         data/heldout/000000.png
 *         labels.json               {"classes": [...], "labels": {"picks/000000": {"label": <class index>,
 *                                    "attributes": {every column of the row}}, ...}}
 *
 * Picks are labelled with their weak label, seed/heldout images with their true class;
 * every column of the row (prediction, distance, rank, backbone, ...) is an attribute.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { Float64, Int32, Schema, Field, Table, Utf8, tableToIPC, vectorFromArray, type DataType, type Vector } from 'apache-arrow';
import * as parquet from 'parquet-wasm';
import { ArtifactError } from '../core/errors.js';
import { atomicWriteFile } from '../core/fsutil.js';
import { DCD_VERSION } from '../core/version.js';
import { PICK_COLUMNS, SET_COLUMNS, type ColumnDoc, type ExportData, type ImageSource } from './rows.js';

/** Export formats. */
export const EXPORT_FORMATS = ['csv', 'parquet', 'fiftyone'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

type Cell = string | number | null;
type Rows = readonly Readonly<Record<string, Cell>>[];

function csvCell(v: Cell): string {
  if (v === null) return '';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** RFC 4180 CSV of `rows` with the documented columns as header (null → empty field). */
export function toCsv(columns: readonly ColumnDoc[], rows: Rows): string {
  const lines = [columns.map((c) => c.name).join(',')];
  for (const r of rows) lines.push(columns.map((c) => csvCell(r[c.name] ?? null)).join(','));
  return lines.join('\r\n') + '\r\n';
}

const ARROW_TYPE: Record<ColumnDoc['type'], () => DataType> = { string: () => new Utf8(), int: () => new Int32(), float: () => new Float64() };

/** An Arrow table of `rows` (nullable columns in documented order) with dcd's metadata and each column's meaning. */
export function toArrowTable(columns: readonly ColumnDoc[], rows: Rows, meta: Record<string, string>): Table {
  const vectors: Vector[] = columns.map((c) => vectorFromArray(rows.map((r) => r[c.name] ?? null), ARROW_TYPE[c.type]()));
  const fields = columns.map((c, i) => new Field(c.name, vectors[i]!.type, true, new Map([['description', c.doc]])));
  const schema = new Schema(fields, new Map([['dcd.version', DCD_VERSION], ...Object.entries(meta)]));
  const t = new Table(Object.fromEntries(columns.map((c, i) => [c.name, vectors[i]!])));
  return new Table(schema, t.batches.map((b) => b));
}

/** Parquet bytes of an Arrow table (parquet-wasm, zstd-free default: snappy). */
export function toParquet(t: Table): Uint8Array {
  const wasm = parquet.Table.fromIPCStream(tableToIPC(t, 'stream'));
  const props = new parquet.WriterPropertiesBuilder().setCompression(parquet.Compression.SNAPPY).build();
  return parquet.writeParquet(wasm, props);
}

async function writeImage(src: ImageSource, file: string): Promise<string> {
  if (src.set?.pixels && src.index !== undefined) {
    const [h, w, c] = src.set.pixels.shape;
    const per = h * w * c;
    const raw = src.set.pixels.data.subarray(src.index * per, (src.index + 1) * per);
    await sharp(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), { raw: { width: w, height: h, channels: c } }).png().toFile(`${file}.png`);
    return `${file}.png`;
  }
  if (src.file) {
    const f = `${file}${path.extname(src.file)}`;
    symlinkSync(path.resolve(src.file), f);
    return f;
  }
  throw new ArtifactError(`${file}: the run holds no pixels and no file for this image; export it as csv or parquet instead`);
}

/** Writes the FiftyOne dataset folder `dir` (see the module comment); returns labels.json's path. */
async function writeFiftyOne(data: ExportData, dir: string): Promise<string> {
  const labels: Record<string, unknown> = {};
  const parts = [
    { name: 'picks', rows: data.picks as Rows, images: data.pickImages, label: (r: Readonly<Record<string, Cell>>) => r.weak_label },
    { name: 'seed', rows: data.sets.filter((r) => r.set === 'seed') as Rows, images: data.setImages.filter((_, i) => data.sets[i]!.set === 'seed'), label: (r: Readonly<Record<string, Cell>>) => r.label },
    { name: 'heldout', rows: data.sets.filter((r) => r.set === 'heldout') as Rows, images: data.setImages.filter((_, i) => data.sets[i]!.set === 'heldout'), label: (r: Readonly<Record<string, Cell>>) => r.label },
  ];
  for (const p of parts) {
    mkdirSync(path.join(dir, 'data', p.name), { recursive: true });
    for (let i = 0; i < p.rows.length; i++) {
      const uuid = `${p.name}/${String(i).padStart(6, '0')}`;
      await writeImage(p.images[i]!, path.join(dir, 'data', uuid));
      const r = p.rows[i]!;
      const label = p.label(r);
      // FiftyOne's classification label is a class index into `classes`; -1 (no class) has none
      labels[uuid] = { label: typeof label === 'number' && label >= 0 ? label : null, attributes: { role: p.name, ...Object.fromEntries(Object.entries(r).filter(([, v]) => v !== null)) } };
    }
  }
  const file = path.join(dir, 'labels.json');
  writeFileSync(file, JSON.stringify({ classes: data.classes, labels }, null, 1) + '\n');
  return file;
}

/** Writes `data` in `format` under `out`; returns the files written. */
export async function writeExport(data: ExportData, format: ExportFormat, out: string): Promise<string[]> {
  mkdirSync(out, { recursive: true });
  const meta = { 'dcd.run': path.resolve(data.runDir), 'dcd.classes': JSON.stringify(data.classes) };
  const tables = [
    { name: 'picks', columns: PICK_COLUMNS as readonly ColumnDoc[], rows: data.picks as Rows },
    { name: 'sets', columns: SET_COLUMNS as readonly ColumnDoc[], rows: data.sets as Rows },
  ];
  if (format === 'fiftyone') return [await writeFiftyOne(data, path.join(out, 'fiftyone'))];
  const files: string[] = [];
  for (const t of tables) {
    const file = path.join(out, `${t.name}.${format}`);
    if (format === 'csv') await atomicWriteFile(file, toCsv(t.columns, t.rows));
    else await atomicWriteFile(file, toParquet(toArrowTable(t.columns, t.rows, { ...meta, 'dcd.table': t.name })));
    files.push(file);
  }
  return files;
}
