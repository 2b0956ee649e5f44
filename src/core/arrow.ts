import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import {
  Data,
  DataType,
  Precision,
  Field,
  FixedSizeList,
  Float32,
  Int32,
  makeData,
  makeVector,
  RecordBatch,
  Schema,
  Struct,
  Table,
  tableFromIPC,
  tableToIPC,
  Utf8,
  vectorFromArray,
  type Vector,
} from 'apache-arrow';
import { ArtifactError } from './errors.js';
import { atomicWriteFile } from './fsutil.js';
import { DCD_VERSION } from './version.js';

/** Schema version of dcd's Arrow artifacts; bump when a column's meaning changes. */
export const ARROW_SCHEMA_VERSION = '1';

/** A column given as plain JS data; the type decides the Arrow type. */
export type ColumnInput =
  | { kind: 'utf8'; values: readonly (string | null)[] }
  | { kind: 'int32'; values: Int32Array | readonly number[] }
  | { kind: 'float32'; values: Float32Array | readonly number[] }
  | { kind: 'embedding'; values: Float32Array; dim: number };

/** Builds an Arrow vector for one column. */
export function makeColumn(col: ColumnInput): Vector {
  switch (col.kind) {
    case 'utf8':
      return vectorFromArray(col.values as (string | null)[], new Utf8());
    case 'int32':
      return makeVector(col.values instanceof Int32Array ? col.values : Int32Array.from(col.values));
    case 'float32':
      return makeVector(col.values instanceof Float32Array ? col.values : Float32Array.from(col.values));
    case 'embedding': {
      const n = col.dim === 0 ? 0 : col.values.length / col.dim;
      if (!Number.isInteger(n)) throw new ArtifactError(`embedding column: ${col.values.length} values is not a multiple of dim ${col.dim}`);
      const child = makeData({ type: new Float32(), length: col.values.length, data: col.values });
      const type = new FixedSizeList(col.dim, new Field('item', new Float32(), false));
      return makeVector(makeData({ type, length: n, nullCount: 0, child }) as Data<FixedSizeList<Float32>>);
    }
  }
}

/**
 * Builds a table from named columns plus schema metadata. Every table dcd writes
 * carries `dcd.version` and `dcd.schema_version` next to the caller's metadata.
 */
export function buildTable(columns: Record<string, ColumnInput>, metadata: Record<string, string> = {}): Table {
  const vectors: Record<string, Vector> = {};
  for (const [name, col] of Object.entries(columns)) vectors[name] = makeColumn(col);
  const lengths = new Set(Object.values(vectors).map((v) => v.length));
  if (lengths.size > 1) throw new ArtifactError(`buildTable: columns have different lengths (${[...lengths].join(', ')})`);
  const t = new Table(vectors);
  const meta = new Map<string, string>([
    ['dcd.version', DCD_VERSION],
    ['dcd.schema_version', ARROW_SCHEMA_VERSION],
    ...Object.entries(metadata),
  ]);
  return withMetadata(t, meta);
}

/** Returns `t` with its schema metadata replaced by `meta`. */
export function withMetadata(t: Table, meta: Map<string, string>): Table {
  const schema = new Schema(t.schema.fields, meta);
  const batches = t.batches.map(
    (b) => new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: b.numRows, nullCount: 0, children: b.data.children })),
  );
  return new Table(schema, batches);
}

/** Writes `t` as an Arrow IPC *file* that appears only when complete. */
export async function writeArrowFile(file: string, t: Table): Promise<void> {
  await atomicWriteFile(file, tableToIPC(t, 'file'));
}

/** Reads a whole Arrow IPC file (file or stream format). Errors name the file. */
export async function readArrowFile(file: string): Promise<Table> {
  if (!existsSync(file)) throw new ArtifactError(`${file}: no such Arrow file`);
  const buf = await readFile(file);
  try {
    return tableFromIPC(buf);
  } catch (e) {
    throw new ArtifactError(`${file}: not a readable Arrow IPC file (${(e as Error).message}); re-create it`);
  }
}

/** Schema metadata of `t` as a plain object. */
export function metadataOf(t: Table): Record<string, string> {
  return Object.fromEntries(t.schema.metadata);
}

/** Throws an ArtifactError naming `file` and the missing columns unless all of `names` exist. */
export function requireColumns(t: Table, names: readonly string[], file: string): void {
  const have = new Set(t.schema.fields.map((f) => f.name));
  const missing = names.filter((n) => !have.has(n));
  if (missing.length)
    throw new ArtifactError(
      `${file}: missing column(s) ${missing.join(', ')} (has: ${[...have].join(', ') || 'none'}); was it written by the right dcd command?`,
    );
}

/** The rows of a FixedSizeList<Float32> column as one flat Float32Array plus its width; values are checked (see {@link copyFixedListValues}). */
export function embeddingMatrix(t: Table, column = 'embedding', file = '<table>'): { data: Float32Array; dim: number; rows: number } {
  requireColumns(t, [column], file);
  const field = t.schema.fields.find((f) => f.name === column)!;
  // typeId checks, not instanceof: a table may come from another copy of apache-arrow.
  const type = field.type as FixedSizeList<Float32>;
  if (!DataType.isFixedSizeList(type) || !DataType.isFloat(type.children[0]!.type) || type.children[0]!.type.precision !== Precision.SINGLE)
    throw new ArtifactError(`${file}: column ${column} must be FixedSizeList<Float32>, found ${field.type}`);
  const dim = type.listSize;
  const out = new Float32Array(t.numRows * dim);
  let off = 0;
  for (const b of t.batches) off = copyFixedListValues(b.getChild(column)!, dim, out, off, { file, column });
  return { data: out, dim, rows: t.numRows };
}

/** Where a FixedSizeList column comes from, for messages: file, column, and the file row of the vector's first row. */
export interface ListSource {
  file: string;
  column: string;
  /** File row of the vector's first row (default 0), so that a bad value is named by its row in the file. */
  firstRow?: number;
}

/**
 * Copies the values of a FixedSizeList<Float32 | Int32> vector of list size `dim` (any number
 * of Data chunks, sliced or not) into `out` from element `off`; returns the offset after them.
 *
 * A file whose child values are shorter than rows × width (an `embedding` column written
 * with empty values reads as zeros otherwise: every distance 0, arbitrary picks), a zero
 * width, or a NaN/±Inf value is refused with an {@link ArtifactError} naming `where`.
 */
export function copyFixedListValues(v: Vector, dim: number, out: Float32Array | Int32Array, off = 0, where: ListSource = { file: '<table>', column: '<column>' }): number {
  checkWidth(v, dim, where);
  let row = where.firstRow ?? 0;
  for (const d of v.data) {
    const vals = checkedValues(d, dim, where, row);
    out.set(vals, off);
    off += vals.length;
    row += d.length;
  }
  return off;
}

/**
 * The values of a FixedSizeList<Float32> vector of list size `dim`, row-major [rows, dim],
 * as a view of the vector's own buffer (no copy), with the checks of
 * {@link copyFixedListValues}; null when the layout does not allow a view (more than one
 * Data chunk, null rows, or non-Float32 values), in which case the caller copies.
 *
 * The view aliases the Arrow buffer: writing to it changes the vector (and any batch or
 * file written from it).
 */
export function fixedListValuesView(v: Vector, dim: number, where: ListSource): Float32Array | null {
  checkWidth(v, dim, where);
  if (v.data.length !== 1) return null;
  const d = v.data[0]!;
  const child = d.children[0];
  if (d.nullCount > 0 || !child || child.nullCount > 0 || !(child.values instanceof Float32Array)) return null;
  return checkedValues(d, dim, where, where.firstRow ?? 0) as Float32Array;
}

function checkWidth(v: Vector, dim: number, where: ListSource): void {
  if (dim <= 0 && v.length > 0) throw new ArtifactError(`${where.file}: column ${where.column}: list width ${dim}; an embedding needs at least one value per row — re-create the file`);
}

/** The first rows × dim child values of one FixedSizeList Data, after the length and (Float32) finiteness checks. */
function checkedValues(d: Vector['data'][number], dim: number, where: ListSource, row: number): Float32Array | Int32Array {
  const name = `${where.file}: column ${where.column}`;
  // arrow-js slices the value buffers themselves (Data.slice): `values` starts at this
  // Data's first row, and `offset` only positions the validity bitmap.
  const child = d.children[0];
  const all = child?.values as Float32Array | Int32Array | undefined;
  const need = d.length * dim;
  const have = Math.min(all?.length ?? 0, child?.length ?? 0);
  if (have < need)
    throw new ArtifactError(
      `${name}: ${have} child values for ${d.length} rows × width ${dim} (${need} needed) at rows ${row}..${row + d.length - 1}; the file is truncated or was written with empty values — re-create it (e.g. rerun \`dcd embed\`)`,
    );
  const vals = all!.subarray(0, need);
  if (vals instanceof Float32Array) {
    const i = firstNonFinite(vals);
    if (i >= 0)
      throw new ArtifactError(`${name}: value ${vals[i]} in row ${row + Math.floor(i / dim)} (element ${i % dim}); embeddings must be finite — re-create the file from a model whose outputs are finite`);
  }
  return vals;
}

/** Index of the first NaN or ±Inf in `v`, or −1. */
function firstNonFinite(v: Float32Array): number {
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i]!)) return i;
  return -1;
}

/** A Utf8 column as strings. */
export function stringColumn(t: Table, name: string, file = '<table>'): string[] {
  requireColumns(t, [name], file);
  return t.getChild(name)!.toArray() as string[];
}

/** An integer column as Int32Array. */
export function int32Column(t: Table, name: string, file = '<table>'): Int32Array {
  requireColumns(t, [name], file);
  return Int32Array.from(t.getChild(name)!.toArray() as ArrayLike<number>);
}

/** A float column as Float32Array. */
export function float32Column(t: Table, name: string, file = '<table>'): Float32Array {
  requireColumns(t, [name], file);
  return Float32Array.from(t.getChild(name)!.toArray() as ArrayLike<number>);
}

export { Int32, Utf8, Float32 };
