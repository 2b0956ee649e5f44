import * as tf from '@tensorflow/tfjs';

/**
 * Kernels the tfjs `wasm` backend lacks, registered on it at start-up.
 *
 * tfjs-backend-wasm 4.22 has no `Conv2DBackpropFilter`, so the gradient of every
 * conv2d with respect to its filter throws there ("Cannot find registered kernel").
 * We compose it from kernels wasm does have (pad, strided slice, transpose, 2-D
 * matMul). Every other kernel a ResNet training step needs (Conv2DBackpropInput,
 * MaxPoolGrad, FusedBatchNorm, Step, ...) exists on wasm; `test/wasm-kernels.test.ts`
 * runs a full conv/BN/ReLU/max-pool gradient there to keep that true.
 */
export function registerWasmKernels(): void {
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm') == null) {
    tf.registerKernel({ kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilterComposed as unknown as tf.KernelFunc });
  }
}

interface Conv2DBackpropFilterAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape: [number, number, number, number];
  dilations?: [number, number] | number;
}

/**
 * dW[kh, kw, ci, co] = Σ_{b, oh, ow} xpad[b, oh·sh + kh·dh, ow·sw + kw·dw, ci] · dy[b, oh, ow, co].
 *
 * For each kernel offset (kh, kw) the strided window of the padded input is a
 * [N = B·OH·OW, Cin] matrix; dyᵀ [Cout, N] times it gives [Cout, Cin] (or, im2col, all
 * windows side by side, transposed, times dy). Transposes are explicit: plain 2-D
 * matMul is far faster on wasm than matMul with transposeA/transposeB. The result is computed with ordinary tf ops on the wasm
 * backend (nested kernels are not recorded on the gradient tape), then handed back
 * to the engine as the kernel's output without a copy.
 */
function conv2DBackpropFilterComposed(args: {
  inputs: { x: tf.TensorInfo; dy: tf.TensorInfo };
  backend: tf.KernelBackend;
  attrs: Conv2DBackpropFilterAttrs;
}): tf.TensorInfo {
  const { inputs, backend, attrs } = args;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
  const dilations = attrs.dilations ?? 1;
  const engine = tf.engine();
  const result = tf.tidy(() => {
    // Wrap the inputs' data as tensors; tidy disposes the wrappers only, the
    // engine keeps the refcount of the caller's data (makeTensorFromTensorInfo does
    // not touch the backend refcount, and disposing the wrapper would), so we keep
    // them alive with an explicit incRef that the wrapper's dispose balances.
    backend.incRef(inputs.x.dataId);
    backend.incRef(inputs.dy.dataId);
    let x = engine.makeTensorFromTensorInfo(inputs.x) as tf.Tensor4D;
    let dy = engine.makeTensorFromTensorInfo(inputs.dy) as tf.Tensor4D;
    if (dataFormat === 'NCHW') {
      x = tf.transpose(x, [0, 2, 3, 1]);
      dy = tf.transpose(dy, [0, 2, 3, 1]);
    }
    const info = tf.backend_util.computeConv2DInfo(
      x.shape,
      filterShape,
      strides,
      dilations,
      pad,
      dimRoundingMode,
      false,
      'channelsLast',
    );
    const { batchSize: B, inChannels: cin, outChannels: cout, outHeight: OH, outWidth: OW } = info;
    const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, filterHeight: fh, filterWidth: fw } = info;
    const { top, left, bottom, right } = info.padInfo;
    const N = B * OH * OW;
    // Negative "padding" (possible with explicit pads) is never produced by
    // computeConv2DInfo for valid/same; explicit pads are ≥ 0 by tfjs's own check.
    const xp = top || left || bottom || right ? tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]]) : x;
    const window = (kh: number, kw: number): tf.Tensor4D => {
      const h0 = kh * dh;
      const w0 = kw * dw;
      if (sh === 1 && sw === 1 && h0 === 0 && w0 === 0 && OH === xp.shape[1] && OW === xp.shape[2]) return xp;
      return tf.stridedSlice(xp, [0, h0, w0, 0], [B, h0 + (OH - 1) * sh + 1, w0 + (OW - 1) * sw + 1, cin], [1, sh, sw, 1]) as tf.Tensor4D;
    };
    const K = fh * fw;
    const dy2 = tf.reshape(dy, [N, cout]);
    // Two orders of the same sum; pick the one that moves less data. (a) per offset,
    // dyᵀ·window → [Cout, Cin], then stack and transpose the K results: good when
    // N = B·OH·OW is large (early layers). (b) im2col: windows side by side
    // [N, K·Cin], transposed, times dy → [K·Cin, Cout], already dW's layout: good when
    // N is small and channels are wide (late layers), where (a)'s K×Cout×Cin
    // stack/transpose dominates.
    const costA = N * cout + K * cin * cout;
    const costB = 2 * N * K * cin;
    if (costB < costA) {
      const cols: tf.Tensor2D[] = [];
      for (let kh = 0; kh < fh; kh++) for (let kw = 0; kw < fw; kw++) cols.push(tf.reshape(window(kh, kw), [N, cin]));
      const im2col = cols.length === 1 ? cols[0]! : tf.concat(cols, 1); // [N, K·Cin]
      return tf.reshape(tf.matMul(tf.transpose(im2col), dy2), [fh, fw, cin, cout]);
    }
    const dyT = tf.transpose(dy2); // [Cout, N]
    const parts: tf.Tensor2D[] = [];
    for (let kh = 0; kh < fh; kh++) for (let kw = 0; kw < fw; kw++) parts.push(tf.matMul(dyT, tf.reshape(window(kh, kw), [N, cin]))); // [Cout, Cin]
    const stacked = parts.length === 1 ? tf.expandDims(parts[0]!, 0) : tf.stack(parts); // [K, Cout, Cin]
    return tf.reshape(tf.transpose(stacked, [0, 2, 1]), [fh, fw, cin, cout]);
  });
  // Hand the data to the engine: keep it alive past the wrapper's disposal.
  backend.incRef(result.dataId);
  const out: tf.TensorInfo = { dataId: result.dataId, shape: result.shape, dtype: result.dtype };
  result.dispose();
  return out;
}
