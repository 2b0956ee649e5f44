/** The `native` tfjs backend class: the `cpu` backend's storage, recycling buffers through the pool. */
import * as tf from '@tensorflow/tfjs';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { nativePool } from './buffer-pool.js';

/** The tfjs backend object: the `cpu` backend's storage, with native kernels registered on top. */
export class NativeBackend extends MathBackendCPU {
  constructor() {
    super();
    // MathBackendCPU prints a "use tfjs-node" banner on first use in Node; it does not apply here.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }
  override write(values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType): tf.DataId {
    nativePool.registered(values);
    return super.write(values, shape, dtype);
  }
  override move(dataId: tf.DataId, values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType, refCount: number): void {
    nativePool.registered(values);
    super.move(dataId, values, shape, dtype, refCount);
  }
  override readSync(dataId: tf.DataId): tf.backend_util.BackendValues {
    const v = super.readSync(dataId);
    nativePool.escaped(v);
    return v;
  }
  override disposeData(dataId: tf.DataId, force = false): boolean {
    const v = this.data.has(dataId) ? this.data.get(dataId)!.values : undefined;
    const freed = super.disposeData(dataId, force);
    if (v !== undefined && !this.data.has(dataId)) nativePool.release(v);
    return freed;
  }
  override dispose(): void {
    nativePool.clear();
    super.dispose();
  }
}
