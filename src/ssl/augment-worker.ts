/**
 * Worker thread of {@link CropPrefetcher} (./prefetch.ts): computes the multi-crop views of the
 * batches it is asked for, with the same function, images and seed as the main thread would,
 * so a batch is the same bits wherever it was made.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { multiCrop, type MultiCropOptions } from './augment.js';

const d = workerData as { images: Uint8Array; size: number; opts: MultiCropOptions; seed: number };
parentPort!.on('message', (m: { step: number; rows: Int32Array }) => {
  try {
    const b = multiCrop(d.images, d.size, m.rows, d.opts, d.seed, m.step);
    parentPort!.postMessage({ step: m.step, batch: b }, [b.globals.buffer, b.locals.buffer] as ArrayBuffer[]);
  } catch (e) {
    parentPort!.postMessage({ step: m.step, error: (e as Error).message });
  }
});
