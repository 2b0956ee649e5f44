/**
 * The streaming Arrow writer of embeddings (`id`, `embedding` [, `label`]), shared by
 * `dcd embed`, `dcd embed merge` and the pipeline's embed stage.
 */
import { buildTable, type ColumnInput } from '../core/arrow.js';
import { ConfigError } from '../core/errors.js';
import { openArrowSink, type ArrowSink } from '../retrieval/output.js';
import type { ImageModel, Preprocess } from '../core/types.js';
import type { ImageItem, SkippedImage } from '../data/images.js';
import { streamFeatures, type FeatureOptions } from './features.js';

/** Rows per record batch of `dcd embed` outputs: 16,384 × 2048-d float32 is 128 MiB. */
export const EMBED_BATCH_ROWS = 16384;

/**
 * Writes `id`, `embedding` [, `label`] rows to an Arrow file in record batches of
 * `batchRows` rows, as they are added. The file appears under its name only on
 * {@link EmbeddingWriter.close}; {@link EmbeddingWriter.abort} removes the partial file.
 */
export class EmbeddingWriter {
  private ids: string[] = [];
  private labels: number[] = [];
  private parts: Float32Array[] = [];
  private pending = 0;
  private constructor(
    private readonly sink: ArrowSink,
    readonly dim: number,
    private readonly withLabels: boolean,
    private readonly batchRows: number,
  ) {}

  /** Opens `out` (its temporary file) for rows of width `dim`; `metadata` goes into the schema. */
  static async open(out: string, dim: number, withLabels: boolean, metadata: Record<string, string>, batchRows = EMBED_BATCH_ROWS): Promise<EmbeddingWriter> {
    if (!Number.isInteger(batchRows) || batchRows < 1) throw new ConfigError(`record batch rows: expected a positive integer, received ${batchRows}`);
    // The schema of a one-row table: an empty one would mark `label` nullable, which no batch is.
    const schema = buildTable(EmbeddingWriter.columns([''], new Float32Array(dim), dim, withLabels ? [0] : null)).schema;
    return new EmbeddingWriter(await openArrowSink(out, schema, metadata), dim, withLabels, batchRows);
  }

  private static columns(ids: string[], emb: Float32Array, dim: number, labels: ArrayLike<number> | null): Record<string, ColumnInput> {
    const c: Record<string, ColumnInput> = { id: { kind: 'utf8', values: ids }, embedding: { kind: 'embedding', values: emb, dim } };
    if (labels) c.label = { kind: 'int32', values: Int32Array.from(labels) };
    return c;
  }

  /** Rows written or pending. */
  get rows(): number {
    return this.sink.rows + this.pending;
  }

  /** Adds rows: `emb` is row-major [ids.length, dim]; `labels` when the writer has a label column. */
  add(ids: readonly string[], emb: Float32Array, labels?: ArrayLike<number>): void {
    if (emb.length !== ids.length * this.dim) throw new ConfigError(`EmbeddingWriter.add: ${emb.length} values for ${ids.length} rows of width ${this.dim}`);
    if (this.withLabels && labels?.length !== ids.length) throw new ConfigError(`EmbeddingWriter.add: ${labels?.length ?? 0} labels for ${ids.length} rows`);
    let a = 0;
    while (a < ids.length) {
      const take = Math.min(this.batchRows - this.pending, ids.length - a);
      for (let t = a; t < a + take; t++) {
        this.ids.push(ids[t]!);
        if (this.withLabels) this.labels.push(labels![t]!);
      }
      this.parts.push(emb.subarray(a * this.dim, (a + take) * this.dim));
      this.pending += take;
      a += take;
      if (this.pending === this.batchRows) this.flush();
    }
  }

  private flush(): void {
    if (this.pending === 0) return;
    const emb = new Float32Array(this.pending * this.dim);
    let off = 0;
    for (const p of this.parts) emb.set(p, off), (off += p.length);
    const t = buildTable(EmbeddingWriter.columns(this.ids, emb, this.dim, this.withLabels ? this.labels : null));
    for (const b of t.batches) this.sink.write(b);
    this.ids = [];
    this.labels = [];
    this.parts = [];
    this.pending = 0;
  }

  /** Writes what is pending and renames the file into place. */
  async close(): Promise<void> {
    this.flush();
    await this.sink.close();
  }

  /** Drops the partial file. */
  async abort(): Promise<void> {
    await this.sink.abort();
  }
}

/** Options of {@link writeEmbeddings}. */
export interface WriteEmbeddingsOptions extends FeatureOptions {
  /** Output Arrow file (written under a temporary name, renamed when complete). */
  out: string;
  /** Schema metadata (`dcd.backbone`, `dcd.weights_sha256`, `dcd.preprocess`, ...). */
  metadata: Record<string, string>;
  /** The `label` column's value of an id; no label column without it. */
  labelOf?: (id: string) => number;
  /** Rows per record batch (default {@link EMBED_BATCH_ROWS}). */
  recordBatchRows?: number;
  /** Runs once every batch is embedded, before the file is renamed into place; throwing drops the file. */
  beforeClose?: (r: { rows: number; skipped: SkippedImage[] }) => void | Promise<void>;
}

/**
 * Embeds `items` with `model` and streams the rows into an Arrow file: the one embedding
 * path of `dcd embed`, the pipeline's embed stage and `dcd retention`. Memory stays one
 * record batch whatever the set's size (the ImageNet train set is 10.5 GB of 2048-d features).
 * @returns rows written and the images that could not be decoded
 */
export async function writeEmbeddings(model: ImageModel, items: ImageItem[], pre: Preprocess, opts: WriteEmbeddingsOptions): Promise<{ rows: number; skipped: SkippedImage[] }> {
  const labelOf = opts.labelOf;
  const writer = await EmbeddingWriter.open(opts.out, model.numFeatures, labelOf !== undefined, opts.metadata, opts.recordBatchRows);
  try {
    const skipped = await streamFeatures(model, items, pre, opts, (ids, data) => writer.add(ids, data, labelOf ? ids.map(labelOf) : undefined));
    await opts.beforeClose?.({ rows: writer.rows, skipped });
    await writer.close();
    return { rows: writer.rows, skipped };
  } catch (e) {
    await writer.abort();
    throw e;
  }
}
