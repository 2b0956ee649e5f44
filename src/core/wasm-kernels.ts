/**
 * Kernels the tfjs `wasm` backend lacks, registered on it at start-up.
 * (Filled in by the training work: Conv2DBackpropFilter.)
 */
export function registerWasmKernels(): void {
  // no extra kernels yet
}
