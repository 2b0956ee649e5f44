import * as tf from '@tensorflow/tfjs';

/**
 * dcd's WGSL kernels for tfjs's webgpu backend on a **software** adapter (SwiftShader, llvmpipe).
 *
 * A software Vulkan device runs every shader invocation on the CPU, and it runs tfjs's tiled
 * matmul badly: that shader stages 32×32 tiles in workgroup memory between barriers, and on a CPU
 * each barrier suspends and resumes every invocation of the workgroup. A plain loop — one
 * invocation per output element, the inner dimension summed in order, no workgroup memory — takes
 * 1.5–8× less CPU time per product there for the small CNNs' shapes, and a small-CNN training step
 * 1.5–2.2× less (bench/webgpu-software.ts, docs/gpu.md). On a GPU the tiled shader
 * is the fast one, so these are registered only on a software adapter (./webgpu.ts).
 */

/** The parts of tfjs's WebGPUBackend a program is run with. */
interface ProgramRunner {
  runWebGPUProgram(program: object, inputs: tf.TensorInfo[], dtype: tf.DataType, uniforms?: { type: string; data: number[] }[]): tf.TensorInfo;
}

/**
 * C = op(A) · op(B) per batch, one invocation per element of C: the program object tfjs's
 * webgpu backend compiles (its shader generator declares A, B, the output and `uniforms.size`).
 */
class LoopMatMulProgram {
  readonly variableNames = ['A', 'B'];
  readonly uniforms = 'M : i32, N : i32, K : i32, aBatchStride : i32, bBatchStride : i32,';
  readonly workgroupSize: [number, number, number] = [64, 1, 1];
  readonly size = true;
  readonly dispatchLayout: { x: number[] };
  readonly dispatch: [number, number, number];
  readonly shaderKey: string;

  constructor(
    readonly outputShape: number[],
    private readonly transposeA: boolean,
    private readonly transposeB: boolean,
  ) {
    const n = outputShape.reduce((a, b) => a * b, 1);
    this.dispatchLayout = { x: outputShape.map((_, i) => i) };
    this.dispatch = [Math.ceil(n / this.workgroupSize[0]), 1, 1];
    this.shaderKey = `dcdLoopMatMul_${transposeA}_${transposeB}`;
  }

  getUserCode(): string {
    const a = this.transposeA ? 'A[aBase + k * uniforms.M + row]' : 'A[aBase + row * uniforms.K + k]';
    const b = this.transposeB ? 'B[bBase + col * uniforms.K + k]' : 'B[bBase + k * uniforms.N + col]';
    // tfjs's generator adds the bindings, `uniforms.size`, setOutputAtIndex and the entry point that calls main(global index)
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          let col = index % uniforms.N;
          let row = (index / uniforms.N) % uniforms.M;
          let batch = index / (uniforms.N * uniforms.M);
          let aBase = batch * uniforms.aBatchStride;
          let bBase = batch * uniforms.bBatchStride;
          var acc = 0.0;
          for (var k = 0; k < uniforms.K; k++) {
            acc = acc + ${a} * ${b};
          }
          setOutputAtIndex(index, acc);
        }
      }
    `;
  }
}

/**
 * Registers {@link LoopMatMulProgram} as the webgpu backend's BatchMatMul for float32 operands
 * whose batch dimensions are equal or one of them 1; anything else goes to tfjs's own kernel.
 * Idempotent. @returns a function that restores tfjs's kernel
 */
export function registerSoftwareWebgpuKernels(backendName = 'webgpu'): () => void {
  const original = tf.getKernel(tf.BatchMatMul, backendName);
  if (original == null) return () => {};
  if ((original as { dcd?: boolean }).dcd) return () => {};
  const config: tf.KernelConfig & { dcd: boolean } = {
    kernelName: tf.BatchMatMul,
    backendName,
    dcd: true,
    kernelFunc: (args) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
      const ra = a.shape.length;
      const rb = b.shape.length;
      const batchA = a.shape.slice(0, -2).reduce((x, y) => x * y, 1);
      const batchB = b.shape.slice(0, -2).reduce((x, y) => x * y, 1);
      const M = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
      const K = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
      const N = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
      const Kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
      const outer = batchA >= batchB ? a.shape.slice(0, -2) : b.shape.slice(0, -2);
      const plain = a.dtype === 'float32' && b.dtype === 'float32' && K === Kb && (batchA === batchB || batchA === 1 || batchB === 1) && M * N > 0;
      if (!plain) return original.kernelFunc(args);
      const program = new LoopMatMulProgram([...outer, M, N], transposeA, transposeB);
      const uniforms = [M, N, K, batchA === 1 ? 0 : M * K, batchB === 1 ? 0 : K * N].map((v) => ({ type: 'int32', data: [v] }));
      return (args.backend as unknown as ProgramRunner).runWebGPUProgram(program, [a, b], 'float32', uniforms);
    },
  };
  tf.unregisterKernel(tf.BatchMatMul, backendName);
  tf.registerKernel(config);
  return () => {
    tf.unregisterKernel(tf.BatchMatMul, backendName);
    tf.registerKernel(original);
  };
}
