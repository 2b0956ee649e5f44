import { open, type FileHandle } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { DataType, Precision, RecordBatchReader, RecordBatchStreamWriter, Table, type RecordBatch, type Schema, type FixedSizeList, type Float32 } from 'apache-arrow';
import { copyFixedListValues, fixedListValuesView } from '../core/arrow.js';
import { ArtifactError, ConfigError, DataError } from '../core/errors.js';
import { log } from '../core/log.js';
import { l2NormalizeRows } from './knn.js';

/** Default memory budget of the streaming store, MiB. */
export const DEFAULT_MEMORY_BUDGET_MIB = 2048;

/** A contiguous run of rows from an embedding store. */
export interface EmbeddingChunk {
  /** File the rows come from (`<memory>` for in-memory stores). */
  file: string;
  /** Global index of the first row across all files of the store. */
  start: number;
  /** Number of rows. */
  rows: number;
  ids: string[];
  /** Int32 [rows], or null when the store has no `label` column. */
  labels: Int32Array | null;
  /**
   * Row-major float32 [rows, dim] (L2-normalised when the store was opened so). Read-only, and
   * valid until the next chunk is requested from the same stream unless the stream was opened
   * with `retain` (see {@link EmbeddingStore.chunks}); copy what must outlive the chunk.
   */
  data: Float32Array;
  dim: number;
  /** The same rows as Arrow, every column (null for in-memory stores). */
  batch: RecordBatch | null;
}

/** Options of {@link EmbeddingStore.open}. */
export interface StoreOptions {
  /** What the files are, for messages (`pool`, `seed`, `test`...). */
  role: string;
  /** Throw unless every file has an Int32 `label` column. */
  requireLabel?: boolean;
  /** L2-normalise every row as it is read. */
  normalize?: boolean;
  /** Embedding column name (default `embedding`). */
  column?: string;
  /**
   * Throw when a full pass finds no rows, or only all-zero embeddings (see {@link checkPass}).
   * Default: on for the roles a user supplies (seed, pool, test, train, val), off for the
   * others (row shards, merges), which may be legitimately empty.
   */
  requireRows?: boolean;
}

/** Roles whose files must hold rows (see {@link StoreOptions.requireRows}). */
const NON_EMPTY_ROLES = new Set(['seed', 'pool', 'test', 'train', 'val']);

/** Rows of `data` [rows, dim] that are all zero. */
function zeroRows(data: Float32Array, dim: number, rows: number): number {
  let n = 0;
  for (let r = 0; r < rows; r++) {
    let zero = true;
    for (let c = r * dim, e = c + dim; c < e; c++)
      if (data[c] !== 0) {
        zero = false;
        break;
      }
    if (zero) n++;
  }
  return n;
}

/** The copy buffer of one stream of {@link EmbeddingStore.chunks} (reused unless `retain`). */
interface Scratch {
  buf: Float32Array | null;
  retain: boolean;
}

interface FileInfo {
  file: string;
  schema: Schema;
  metadata: Record<string, string>;
  dim: number;
  hasLabel: boolean;
}

/**
 * One logical set of embeddings, from one `dcd embed` Arrow file or many shards (in the
 * order given), read as a stream of record batches so that only one batch (or a slice
 * of it) is in memory at a time. Files must share the embedding width and the
 * `dcd.backbone` / `dcd.weights_sha256` metadata.
 *
 * Streaming granularity is the record batch: write large files in batches of at most a
 * few tens of thousands of rows (a single 1M-row batch is read whole; the store warns).
 */
export class EmbeddingStore {
  private constructor(
    readonly role: string,
    private readonly infos: FileInfo[],
    readonly dim: number,
    readonly hasLabel: boolean,
    private readonly normalize: boolean,
    private readonly column: string,
    private readonly requireRows: boolean,
    private readonly memory: { ids: string[]; labels: Int32Array | null; data: Float32Array } | null,
  ) {}

  /** Files of the store. */
  get files(): string[] {
    return this.memory ? ['<memory>'] : this.infos.map((i) => i.file);
  }

  /** Schema metadata of the first file. */
  get metadata(): Record<string, string> {
    return this.infos[0]?.metadata ?? {};
  }

  /** Arrow schema of the first file (null for in-memory stores). */
  get schema(): Schema | null {
    return this.infos[0]?.schema ?? null;
  }

  /** Opens and checks `files` (reads schemas only). Errors name the file and the column. */
  static async open(files: readonly string[], opts: StoreOptions): Promise<EmbeddingStore> {
    if (files.length === 0) throw new ConfigError(`${opts.role}: no embedding file given`);
    const column = opts.column ?? 'embedding';
    const infos: FileInfo[] = [];
    for (const file of files) {
      const info = await withReader(file, async (r) => inspectSchema(file, r.schema, column, opts));
      infos.push(info);
    }
    const first = infos[0]!;
    for (const info of infos.slice(1)) {
      if (info.dim !== first.dim)
        throw new ArtifactError(
          `${info.file}: column ${column} has width ${info.dim}, but ${first.file} has ${first.dim}; shards of one ${opts.role} set must come from the same backbone`,
        );
      checkMetadataMatch(first.file, first.metadata, info.file, info.metadata);
      const cols = (x: FileInfo) => x.schema.fields.map((f) => `${f.name}:${f.type}`).join(', ');
      if (cols(info) !== cols(first))
        throw new ArtifactError(`${info.file}: columns (${cols(info)}) differ from ${first.file} (${cols(first)}); shards of one ${opts.role} set must have the same columns`);
    }
    return new EmbeddingStore(opts.role, infos, first.dim, infos.every((i) => i.hasLabel), opts.normalize ?? false, column, opts.requireRows ?? NON_EMPTY_ROLES.has(opts.role), null);
  }

  /** An in-memory store over arrays (for library callers and tests). `data` is [n, dim]. */
  static fromArrays(
    role: string,
    a: { ids: readonly string[]; labels?: Int32Array | null; data: Float32Array; dim: number; metadata?: Record<string, string> },
    opts: { normalize?: boolean } = {},
  ): EmbeddingStore {
    const n = a.ids.length;
    if (a.data.length !== n * a.dim) throw new ConfigError(`${role}: ${a.data.length} embedding values for ${n} ids of width ${a.dim}`);
    if (a.labels && a.labels.length !== n) throw new ConfigError(`${role}: ${a.labels.length} labels for ${n} ids`);
    const data = opts.normalize ? l2NormalizeRows(Float32Array.from(a.data), a.dim) : a.data;
    const info: FileInfo = { file: '<memory>', schema: null as unknown as Schema, metadata: a.metadata ?? {}, dim: a.dim, hasLabel: !!a.labels };
    return new EmbeddingStore(role, [info], a.dim, !!a.labels, false, 'embedding', false, { ids: [...a.ids], labels: a.labels ?? null, data });
  }

  /**
   * Row count, estimated without reading: exact for in-memory stores, else the files'
   * total size over the bytes of one embedding (an overestimate by the id/label columns).
   * For planning only (which side of a join to hold).
   */
  estimatedRows(): number {
    if (this.memory) return this.memory.ids.length;
    let bytes = 0;
    for (const i of this.infos) bytes += statSync(i.file).size;
    return Math.floor(bytes / (this.dim * 4));
  }

  /** Row count and rows per label, exact: one pass over the `label` column only (labels empty without one). */
  async rowCounts(): Promise<{ rows: number; byLabel: Map<number, number> }> {
    const byLabel = new Map<number, number>();
    const count = (ys: ArrayLike<number>) => {
      for (let i = 0; i < ys.length; i++) byLabel.set(ys[i]!, (byLabel.get(ys[i]!) ?? 0) + 1);
    };
    if (this.memory) {
      if (this.memory.labels) count(this.memory.labels);
      return { rows: this.memory.ids.length, byLabel };
    }
    const r = await readIdsAndLabels(this.files, this.role, { ids: false, labels: this.hasLabel });
    if (r.labels) count(r.labels);
    return { rows: r.rows, byLabel };
  }

  /**
   * Streams the rows in chunks of at most `maxRows` rows.
   *
   * Lifetime of `data`: valid until the next chunk is requested. Where the file's layout
   * allows (one contiguous Float32 child buffer, no null rows, no normalisation) `data` is a
   * view of the record batch's own buffer (no copy; read-only: writing to it would change
   * `batch`), else the rows are copied into one buffer that the stream reuses for every
   * chunk. A consumer that keeps `data` (or a subarray of it) past the next `next()` either
   * copies it or passes `retain: true`, which gives each chunk an array of its own.
   * Values are checked either way: a NaN/±Inf or a short child buffer is an ArtifactError
   * naming the file, the column and the row in the file.
   *
   * `transient: true` goes further for consumers that use each chunk only until they ask for
   * the next (Algorithm 1's search): the file's record batches are read into one buffer that
   * is reused for every batch, so `data` and `batch` are both valid only until the next
   * chunk, and a stream touches no fresh memory after its first batch (on this project's VM,
   * first-touch page faults on fresh buffers cost as much as the search itself).
   *
   * @param opts.embeddings false to skip building `data` (id/label only; `data` is empty)
   * @param opts.retain true when chunks' `data` must stay valid after the next chunk is read
   * @param opts.transient true to read every record batch into one reused buffer (`data` and `batch` valid until the next chunk)
   */
  async *chunks(maxRows: number, opts: { embeddings?: boolean; retain?: boolean; transient?: boolean } = {}): AsyncGenerator<EmbeddingChunk> {
    if (opts.transient && opts.retain) throw new ConfigError(`${this.role}: EmbeddingStore.chunks: retain and transient exclude each other`);
    const wantEmb = opts.embeddings ?? true;
    const scratch: Scratch = { buf: null, retain: opts.retain ?? false };
    maxRows = Math.max(1, Math.floor(maxRows));
    if (this.memory) {
      const m = this.memory;
      for (let s = 0; s < m.ids.length; s += maxRows) {
        const r = Math.min(maxRows, m.ids.length - s);
        yield {
          file: '<memory>',
          start: s,
          rows: r,
          ids: m.ids.slice(s, s + r),
          labels: m.labels ? m.labels.subarray(s, s + r) : null,
          data: wantEmb ? m.data.subarray(s * this.dim, (s + r) * this.dim) : new Float32Array(0),
          dim: this.dim,
          batch: null,
        };
      }
      return;
    }
    let global = 0;
    let zeros = 0;
    for (const info of this.infos) {
      const fh = await openFile(info.file);
      try {
        let fileRow = 0;
        for await (const batch of opts.transient ? reusedBatches(fh, info.file) : freshBatches(fh)) {
          const bytes = batch.numRows * this.dim * 4;
          if (batch.numRows > maxRows * 4 && bytes > 256 * 2 ** 20)
            log.warn(`${info.file}: a record batch of ${batch.numRows} rows (${(bytes / 2 ** 20).toFixed(0)} MiB) is read whole; re-write the file in smaller batches to stay within the memory budget`);
          for (let s = 0; s < batch.numRows; s += maxRows) {
            const r = Math.min(maxRows, batch.numRows - s);
            const b = s === 0 && r === batch.numRows ? batch : batch.slice(s, s + r);
            const ch = this.chunkOf(info, b, global, fileRow, wantEmb ? scratch : null);
            if (wantEmb && this.requireRows) zeros += zeroRows(ch.data, this.dim, r);
            yield ch;
            global += r;
            fileRow += r;
          }
        }
      } catch (e) {
        if (e instanceof ArtifactError || e instanceof DataError) throw e;
        throw new ArtifactError(`${info.file}: cannot read Arrow record batches (${(e as Error).message}); re-create the file`, { cause: e });
      } finally {
        await fh.close().catch(() => undefined);
      }
    }
    if (this.requireRows) this.checkPass(global, wantEmb ? zeros : 0);
  }

  /**
   * After a full pass: no rows, or every embedding zero (a backbone that output nothing, e.g.
   * from NaN weights), is a DataError naming the files; some zero rows, a warning (their
   * distances say nothing about content).
   */
  private checkPass(rows: number, zeros: number): void {
    const files = this.files.join(', ');
    if (rows === 0)
      throw new DataError(`${files} (${this.role}): no rows; a ${this.role} set must hold at least one embedding. Check the file (an empty image folder or list, a filter that removed everything?) and re-create it`);
    if (zeros === rows)
      throw new DataError(`${files} (${this.role}): all ${rows} embeddings are zero vectors; the backbone produced nothing (NaN or zero weights? blank images?). Re-embed with a working checkpoint`);
    if (zeros) log.warn(`${files} (${this.role}): ${zeros} of ${rows} embeddings are zero vectors (blank images?); they are equally far from everything`);
  }

  /** Reads every row into memory (for small sets: seeds, test sets). */
  async readAll(opts: { embeddings?: boolean } = {}): Promise<{ ids: string[]; labels: Int32Array | null; data: Float32Array; dim: number }> {
    const ids: string[] = [];
    const labels: number[] = [];
    const parts: Float32Array[] = [];
    for await (const c of this.chunks(1 << 16, { ...opts, retain: true })) {
      for (const id of c.ids) ids.push(id);
      if (c.labels) for (const y of c.labels) labels.push(y);
      parts.push(c.data);
    }
    const data = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    let o = 0;
    for (const p of parts) {
      data.set(p, o);
      o += p.length;
    }
    return { ids, labels: this.hasLabel ? Int32Array.from(labels) : null, data, dim: this.dim };
  }

  /** The chunk of batch `b` (global row `start`, file row `fileRow`); `scratch` null: no embeddings. */
  private chunkOf(info: FileInfo, b: RecordBatch, start: number, fileRow: number, scratch: Scratch | null): EmbeddingChunk {
    const ids = b.getChild('id')!.toArray() as string[];
    const labelVec = info.hasLabel ? b.getChild('label') : null;
    const labels = labelVec ? Int32Array.from(labelVec.toArray() as ArrayLike<number>) : null;
    let data: Float32Array = new Float32Array(0);
    if (scratch) {
      const v = b.getChild(this.column)!;
      const where = { file: info.file, column: this.column, firstRow: fileRow };
      const view = this.normalize ? null : fixedListValuesView(v, this.dim, where);
      if (view) data = view;
      else {
        const n = b.numRows * this.dim;
        if (scratch.retain) data = new Float32Array(n);
        else {
          if (!scratch.buf || scratch.buf.length < n) scratch.buf = new Float32Array(n);
          data = scratch.buf.subarray(0, n);
        }
        copyFixedListValues(v, this.dim, data, 0, where);
        if (this.normalize) l2NormalizeRows(data, this.dim);
      }
    }
    return { file: info.file, start, rows: b.numRows, ids, labels, data, dim: this.dim, batch: b };
  }
}

/** The record batches of an Arrow file, each in a fresh buffer (arrow-js's reader). */
async function* freshBatches(fh: FileHandle): AsyncGenerator<RecordBatch> {
  const reader = await RecordBatchReader.from(fh);
  await reader.open();
  yield* reader as AsyncIterable<RecordBatch>;
}

/**
 * The record batches of the Arrow IPC file `fh`, each read into one buffer that is reused
 * for the next: a batch's vectors view that buffer, so a batch is valid until the next one
 * is requested. The buffer holds the file's schema message followed by one batch's message
 * (metadata and body, as the footer's block gives them), which arrow-js decodes as a
 * one-batch stream without copying. Files with dictionaries, and IPC streams (no footer),
 * are read by arrow-js's reader instead.
 */
async function* reusedBatches(fh: FileHandle, file: string): AsyncGenerator<RecordBatch> {
  const reader = await RecordBatchReader.from(fh);
  await reader.open();
  const footer = reader.footer;
  if (!footer || footer.numDictionaries > 0) {
    yield* reader as AsyncIterable<RecordBatch>;
    return;
  }
  const blocks = [...footer.recordBatches()].map((b) => ({ offset: Number(b.offset), length: b.metaDataLength + Number(b.bodyLength) }));
  if (!blocks.length) return;
  // The schema message, from the schema (arrow-js's file writer puts it in the footer only),
  // without the end-of-stream marker of the empty stream it is written as.
  let schemaMsg = RecordBatchStreamWriter.writeAll(new Table(reader.schema)).toUint8Array(true);
  if (schemaMsg.length >= 8 && new DataView(schemaMsg.buffer, schemaMsg.byteOffset + schemaMsg.length - 8).getUint32(4, true) === 0) schemaMsg = schemaMsg.subarray(0, schemaMsg.length - 8);
  const schemaLen = schemaMsg.length;
  const buf = new Uint8Array(schemaLen + Math.max(...blocks.map((b) => b.length)));
  buf.set(schemaMsg);
  for (const [i, b] of blocks.entries()) {
    await readFully(fh, file, buf, schemaLen, b.length, b.offset);
    const one = RecordBatchReader.from(buf.subarray(0, schemaLen + b.length));
    const next = one.next();
    if (next.done) throw new ArtifactError(`${file}: record batch ${i} (at byte ${b.offset}) did not decode; re-create the file`);
    yield next.value;
  }
}

/** Reads exactly `length` bytes at file position `position` into `buf` from `offset`. */
async function readFully(fh: FileHandle, file: string, buf: Uint8Array, offset: number, length: number, position: number): Promise<void> {
  for (let done = 0; done < length; ) {
    const { bytesRead } = await fh.read(buf, offset + done, length - done, position + done);
    if (bytesRead === 0) throw new ArtifactError(`${file}: ends at byte ${position + done}, inside a record batch the footer places at ${position}..${position + length}; the file is truncated — re-create it`);
    done += bytesRead;
  }
}

async function openFile(file: string): Promise<FileHandle> {
  if (!existsSync(file)) throw new ArtifactError(`${file}: no such Arrow file`);
  return guardReads(await open(file, 'r'), file, statSync(file).size);
}

/**
 * `fh` with reads that fail rather than spin: apache-arrow's file reader loops until it has the
 * bytes it asked for, and re-reads a message whose lengths do not advance it, so a damaged file
 * (a negative offset, one past the end, a zero-length message) would hang it forever. A read of
 * 0 bytes, a negative position, or reading more than a few times the file's size (a reader that
 * goes round in circles: a sound pass reads each byte about once) is an ArtifactError.
 */
function guardReads(fh: FileHandle, file: string, size: number): FileHandle {
  const corrupt = (what: string) => new ArtifactError(`${file}: ${what}; the Arrow file is truncated or corrupt: re-create it`);
  const budget = 4 * size + 2 ** 20;
  let total = 0;
  return new Proxy(fh, {
    get(target, prop) {
      if (prop === 'read')
        return async (buf: Uint8Array, offset: number, length: number, position: number | null) => {
          if (typeof position === 'number' && position < 0) throw corrupt(`an offset points before the start of the file (${position})`);
          const r = await target.read(buf, offset, length, position);
          total += r.bytesRead;
          if (total > budget) throw corrupt(`reading it goes round in circles (${total} bytes read from a ${size}-byte file): its message lengths are inconsistent`);
          if (r.bytesRead === 0 && length > 0) throw corrupt(`its layout says ${length} more byte(s) follow at byte ${position ?? '?'}, but the file ends`);
          return r;
        };
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function withReader<T>(file: string, fn: (r: { schema: Schema }) => Promise<T>): Promise<T> {
  const fh = await openFile(file);
  try {
    let reader;
    try {
      reader = await RecordBatchReader.from(fh);
      await reader.open();
    } catch (e) {
      throw new ArtifactError(`${file}: not a readable Arrow IPC file (${(e as Error).message}); re-create it`, { cause: e });
    }
    if (!reader.schema) throw new ArtifactError(`${file}: Arrow file has no schema; re-create it`);
    return await fn(reader);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

function inspectSchema(file: string, schema: Schema, column: string, opts: StoreOptions): FileInfo {
  const byName = new Map(schema.fields.map((f) => [f.name, f]));
  const need = ['id', column, ...(opts.requireLabel ? ['label'] : [])];
  const missing = need.filter((n) => !byName.has(n));
  if (missing.length)
    throw new ArtifactError(
      `${file} (${opts.role}): missing column(s) ${missing.join(', ')} (has: ${[...byName.keys()].join(', ') || 'none'}); expected a \`dcd embed\` output with id, ${column}${opts.requireLabel ? ', label' : ''}`,
    );
  if (!DataType.isUtf8(byName.get('id')!.type) && !DataType.isLargeUtf8(byName.get('id')!.type))
    throw new ArtifactError(`${file} (${opts.role}): column id must be Utf8, found ${byName.get('id')!.type}`);
  const et = byName.get(column)!.type as FixedSizeList<Float32>;
  if (!DataType.isFixedSizeList(et) || !DataType.isFloat(et.children[0]!.type) || et.children[0]!.type.precision !== Precision.SINGLE)
    throw new ArtifactError(`${file} (${opts.role}): column ${column} must be FixedSizeList<Float32>, found ${byName.get(column)!.type}`);
  const lf = byName.get('label');
  if (lf && !DataType.isInt(lf.type)) throw new ArtifactError(`${file} (${opts.role}): column label must be Int32, found ${lf.type}`);
  return { file, schema, metadata: Object.fromEntries(schema.metadata), dim: et.listSize, hasLabel: !!lf };
}

/** Metadata keys that must agree between embedding files compared with each other. */
export const MATCHED_METADATA = ['dcd.backbone', 'dcd.weights_sha256'] as const;

/**
 * Throws an ArtifactError when two files' embeddings come from different backbones
 * (keys of {@link MATCHED_METADATA} present in both with different values).
 */
export function checkMetadataMatch(fileA: string, a: Record<string, string>, fileB: string, b: Record<string, string>): void {
  for (const key of MATCHED_METADATA) {
    if (a[key] !== undefined && b[key] !== undefined && a[key] !== b[key])
      throw new ArtifactError(
        `${fileB}: schema metadata ${key} is "${b[key]}" but ${fileA} has "${a[key]}"; distances are only meaningful between embeddings of the same backbone and weights: re-embed one of them`,
      );
  }
}

/**
 * Checks that two stores can be compared: same width and same backbone metadata.
 * Errors name both files and the `embedding` column or the metadata key.
 */
export function checkCompatible(a: EmbeddingStore, b: EmbeddingStore): void {
  if (a.dim !== b.dim)
    throw new ArtifactError(
      `${b.files[0]} (${b.role}): column embedding has width ${b.dim}, but ${a.files[0]} (${a.role}) has ${a.dim}; embed both with the same backbone`,
    );
  checkMetadataMatch(a.files[0]!, a.metadata, b.files[0]!, b.metadata);
}

/** Rows per chunk so that a chunk's copies (≈4 × rows × dim floats) plus its distance block (2 × rows × cols) fit `budgetBytes`. */
export function chunkRowsFor(budgetBytes: number, dim: number, cols: number): number {
  const perRow = 4 * (4 * dim + 3 * Math.max(1, cols));
  return Math.max(64, Math.min(65536, Math.floor(budgetBytes / perRow)));
}

/** Parses a `--memory-budget` value in MiB. */
export function budgetBytes(mib: number | undefined): number {
  const v = mib ?? DEFAULT_MEMORY_BUDGET_MIB;
  if (!Number.isFinite(v) || v < 16) throw new ConfigError(`--memory-budget: expected MiB ≥ 16, received ${v}`);
  return v * 2 ** 20;
}

/**
 * Streams the `id` and (optionally) `label` columns of Arrow files batch by batch,
 * without decoding other columns into JS: for id sets (`--exclude`, `--only`) and label
 * counts of files that may be large. Errors name the file and the missing column.
 */
export async function readIdsAndLabels(
  files: readonly string[],
  role: string,
  opts: { labels?: boolean; ids?: boolean } = {},
): Promise<{ ids: string[]; labels: Int32Array | null; rows: number }> {
  let rows = 0;
  const ids: string[] = [];
  const labels: number[] = [];
  for (const file of files) {
    const fh = await openFile(file);
    try {
      let reader;
      try {
        reader = await RecordBatchReader.from(fh);
        await reader.open();
      } catch (e) {
        throw new ArtifactError(`${file}: not a readable Arrow IPC file (${(e as Error).message}); re-create it`, { cause: e });
      }
      const names = reader.schema.fields.map((f) => f.name);
      const need = [...(opts.ids === false ? [] : ['id']), ...(opts.labels ? ['label'] : [])].filter((n) => !names.includes(n));
      if (need.length) throw new ArtifactError(`${file} (${role}): missing column(s) ${need.join(', ')} (has: ${names.join(', ') || 'none'})`);
      for await (const b of reader as AsyncIterable<RecordBatch>) {
        rows += b.numRows;
        if (opts.ids !== false) for (const id of b.getChild('id')!.toArray() as string[]) ids.push(id);
        if (opts.labels) {
          const ys = b.getChild('label')!.toArray() as ArrayLike<number>;
          for (let i = 0; i < ys.length; i++) labels.push(Number(ys[i]));
        }
      }
    } finally {
      await fh.close().catch(() => undefined);
    }
  }
  return { ids, labels: opts.labels ? Int32Array.from(labels) : null, rows };
}
