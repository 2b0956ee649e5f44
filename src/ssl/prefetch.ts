/**
 * Multi-crop batches made one step ahead on a worker thread: while the training step `s` runs on
 * the main thread, a worker computes the views of step `s + 1` (JavaScript pixel loops, a fifth of
 * a SimCLR step on the demo otherwise). The views depend only on (images, options, seed, step,
 * rows) and the worker runs the same {@link multiCrop}, so every batch has the bits the main thread
 * would have made (test/ssl.test.ts compares them).
 *
 * Where the worker cannot run (its compiled file is absent, as under the TypeScript sources, or
 * `DCD_SSL_PREFETCH=0`), or fails, the batches are made on the main thread instead.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ConfigError } from '../core/errors.js';
import { multiCrop, type MultiCropBatch, type MultiCropOptions } from './augment.js';

type Waiter = { resolve: (b: MultiCropBatch) => void; reject: (e: Error) => void };

/** Batches of {@link multiCrop} for steps start … total − 1, each requested one step ahead. */
export class CropPrefetcher {
  private worker: Worker | undefined;
  /** Requested batches by step, until {@link batch} hands them out. */
  private readonly requested = new Map<number, Promise<MultiCropBatch>>();
  /** The worker's open requests by step. */
  private readonly waiting = new Map<number, Waiter>();
  /** Whether batches come from the worker thread (false: made on the main thread). */
  get threaded(): boolean {
    return this.worker !== undefined;
  }

  constructor(
    private readonly images: Uint8Array,
    private readonly size: number,
    private readonly opts: MultiCropOptions,
    private readonly seed: number,
    private readonly rows: (step: number) => Int32Array,
    private readonly total: number,
  ) {
    const file = fileURLToPath(new URL('./augment-worker.js', import.meta.url));
    if (process.env.DCD_SSL_PREFETCH === '0' || !existsSync(file)) return;
    try {
      this.worker = new Worker(file, { workerData: { images, size, opts, seed } });
    } catch {
      return;
    }
    this.worker.on('message', (m: { step: number; batch?: MultiCropBatch; error?: string }) => {
      const p = this.waiting.get(m.step);
      if (!p) return;
      this.waiting.delete(m.step);
      if (m.batch) p.resolve(m.batch); // its Float32Arrays arrive as such, their buffers moved, not copied
      else p.reject(new ConfigError(m.error ?? 'multi-crop worker failed'));
    });
    // a worker that dies hands its open requests back to the main thread
    this.worker.on('error', () => this.fallBack());
    this.worker.on('exit', () => this.fallBack());
  }

  /** The batch of `step`; asks for `step + 1` before returning. */
  async batch(step: number): Promise<MultiCropBatch> {
    const p = this.requested.get(step) ?? this.request(step);
    this.requested.delete(step);
    if (step + 1 < this.total && !this.requested.has(step + 1)) {
      const next = this.request(step + 1);
      next.catch(() => undefined); // its failure reaches whoever asks for that step, not the process
      this.requested.set(step + 1, next);
    }
    return p;
  }

  /** Stops the worker (pending requests are dropped). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.requested.clear();
    this.waiting.clear();
    if (w) {
      w.removeAllListeners('exit');
      w.removeAllListeners('error');
      await w.terminate();
    }
  }

  private request(step: number): Promise<MultiCropBatch> {
    const rows = this.rows(step);
    if (!this.worker) return Promise.resolve(multiCrop(this.images, this.size, rows, this.opts, this.seed, step));
    const promise = new Promise<MultiCropBatch>((resolve, reject) => this.waiting.set(step, { resolve, reject }));
    this.worker.postMessage({ step, rows });
    return promise;
  }

  private fallBack(): void {
    if (!this.worker) return;
    this.worker = undefined;
    const open = [...this.waiting];
    this.waiting.clear();
    for (const [step, p] of open) {
      try {
        p.resolve(multiCrop(this.images, this.size, this.rows(step), this.opts, this.seed, step));
      } catch (e) {
        p.reject(e as Error);
      }
    }
  }
}
