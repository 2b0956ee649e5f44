import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import {
  DataType,
  makeData,
  makeVector,
  RecordBatch,
  RecordBatchFileWriter,
  Schema,
  Struct,
  vectorFromArray,
  type Data,
  type FixedSizeList,
  type Float32,
  type Vector,
} from 'apache-arrow';
import { buildTable, writeArrowFile, type ColumnInput } from '../core/arrow.js';
import { atomicWriteFile, commitTemp, diskFullAware, ensureDir, tempPathFor } from '../core/fsutil.js';
import { DCD_VERSION } from '../core/version.js';
import { ARROW_SCHEMA_VERSION } from '../core/arrow.js';

/** `dir/name.arrow` → `dir/name<suffix>` (e.g. `.csv`, `.summary.csv`). */
export function sidecarPath(out: string, suffix: string): string {
  const ext = path.extname(out);
  const base = ext === '.arrow' || ext === '.feather' ? out.slice(0, -ext.length) : out;
  return base + suffix;
}

function csvCell(v: unknown): string {
  const s = typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(7)) : String(v ?? '');
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** CSV text with a header row. */
export function toCsv(header: readonly string[], rows: Iterable<readonly unknown[]>): string {
  const lines = [header.map(csvCell).join(',')];
  for (const r of rows) lines.push(r.map(csvCell).join(','));
  return lines.join('\n') + '\n';
}

/**
 * Writes a small table as `out` (Arrow) plus `out` with `.csv` (same rows) and, when
 * `summary` is given, `.summary.csv`; all atomically.
 */
export async function writeTableWithCsv(
  out: string,
  columns: Record<string, ColumnInput>,
  metadata: Record<string, string>,
  summary?: { header: readonly string[]; rows: (readonly unknown[])[] },
): Promise<string[]> {
  await writeArrowFile(out, buildTable(columns, metadata));
  const names = Object.keys(columns);
  const n = columns[names[0]!]!.values.length;
  const cols = names.map((k) => columns[k]!.values as ArrayLike<unknown>);
  const rows = Array.from({ length: n }, (_, i) => cols.map((c) => c[i]));
  const files = [out, sidecarPath(out, '.csv')];
  await atomicWriteFile(files[1]!, toCsv(names, rows));
  if (summary) {
    files.push(sidecarPath(out, '.summary.csv'));
    await atomicWriteFile(files[2]!, toCsv(summary.header, summary.rows));
  }
  return files;
}

/** The rows of `batch` at `rows` (ascending indices), every column. */
export function takeRows(batch: RecordBatch, rows: readonly number[]): RecordBatch {
  const children = batch.schema.fields.map((f, c) => {
    const v = batch.getChildAt(c)! as Vector;
    return takeVector(v, f.type, rows).data[0]!;
  });
  return new RecordBatch(batch.schema, makeData({ type: new Struct(batch.schema.fields), length: rows.length, nullCount: 0, children }));
}

function takeVector(v: Vector, type: DataType, rows: readonly number[]): Vector {
  if (DataType.isFixedSizeList(type) && DataType.isFloat((type as FixedSizeList).children[0]!.type) && v.nullCount === 0) {
    const dim = (type as FixedSizeList).listSize;
    const out = new Float32Array(rows.length * dim);
    // Locate each row in the vector's data chunks.
    const starts: number[] = [];
    let s = 0;
    for (const d of v.data) {
      starts.push(s);
      s += d.length;
    }
    let chunk = 0;
    rows.forEach((r, t) => {
      while (chunk + 1 < v.data.length && r >= starts[chunk + 1]!) chunk++;
      const d = v.data[chunk]!;
      // Value buffers are already sliced to this Data's first row (arrow-js Data.slice).
      const from = (r - starts[chunk]!) * dim;
      out.set((d.children[0]!.values as Float32Array).subarray(from, from + dim), t * dim);
    });
    const childData = makeData({ type: (type as FixedSizeList<Float32>).children[0]!.type, length: out.length, data: out });
    return makeVector(makeData({ type: type as FixedSizeList<Float32>, length: rows.length, nullCount: 0, child: childData }) as Data<FixedSizeList<Float32>>);
  }
  return vectorFromArray(
    rows.map((r) => v.get(r)),
    type,
  ) as Vector;
}

/** An Arrow IPC file written batch by batch that appears under its name only on `close()`. */
export interface ArrowSink {
  write(batch: RecordBatch): void;
  /** Rows written so far. */
  readonly rows: number;
  close(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * Opens a streaming Arrow file writer for batches of `schema`; `metadata` replaces the
 * schema metadata (plus `dcd.version`, `dcd.schema_version`).
 */
export async function openArrowSink(file: string, schema: Schema, metadata: Record<string, string>): Promise<ArrowSink> {
  await ensureDir(path.dirname(file));
  const tmp = tempPathFor(file);
  const meta = new Map<string, string>([...Object.entries(metadata), ['dcd.version', DCD_VERSION], ['dcd.schema_version', ARROW_SCHEMA_VERSION]]);
  const out = new Schema(schema.fields, meta);
  const writer = new RecordBatchFileWriter();
  const ws = createWriteStream(tmp);
  const done = new Promise<void>((resolve, reject) => {
    ws.on('finish', () => resolve());
    ws.on('error', reject);
  });
  const rs = writer.toNodeStream();
  rs.pipe(ws);
  let rows = 0;
  let wrote = false;
  return {
    write(batch) {
      wrote = true;
      rows += batch.numRows;
      writer.write(new RecordBatch(out, batch.data));
    },
    get rows() {
      return rows;
    },
    async close() {
      if (!wrote) writer.write(new RecordBatch(out, makeData({ type: new Struct(out.fields), length: 0, nullCount: 0, children: out.fields.map((f) => makeEmpty(f.type)) })));
      try {
        writer.finish();
        await writer.close();
        await done;
      } catch (e) {
        await rm(tmp, { force: true });
        throw diskFullAware(file, e);
      }
      await commitTemp(tmp, file);
    },
    async abort() {
      // Not writer.abort(): it rejects the stream's pending read with an iterator result
      // that nobody awaits (an unhandled rejection). Detach the file, end the stream, drop it.
      rs.unpipe(ws);
      ws.destroy();
      try {
        writer.close();
      } catch {
        /* already closed */
      }
      rs.destroy();
      await rm(tmp, { force: true });
    },
  };
}

function makeEmpty(type: DataType): Data {
  return vectorFromArray([], type).data[0] ?? makeData({ type, length: 0, nullCount: 0 } as never);
}
