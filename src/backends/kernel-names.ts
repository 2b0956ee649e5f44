/**
 * Names of the kernels dcd adds to tfjs on the `native` backend, and the backend's name.
 * The models (src/models/ops.ts) and the optimizer call these kernels by name; the
 * kernels themselves live in ./kernels/, registered by ./native.ts.
 */

/** Backend name registered with tfjs. */
export const NATIVE_BACKEND = 'native';

/** The native kernel behind FusedBatchNorm's gradient on this backend (see installBatchNormGrad). */
export const BN_GRAD_KERNEL = 'DcdFusedBatchNormGrad';
/** Native-only inference kernels: LayerNorm over the last axis (inputs x, weight, bias; attr eps) and exact GELU (input x). */
export const LAYER_NORM_KERNEL = 'DcdLayerNorm';
export const GELU_KERNEL = 'DcdGelu';
/**
 * ViT self-attention from the qkv projection (input qkv [B·T, 3·D]: q | k | v, each `heads` blocks
 * of D/heads; attrs batch, tokens, heads, scale) to the heads side by side [B·T, D]:
 * softmax(Q·Kᵀ·scale)·V per batch item and head, without the transposes and slices. Inference only.
 */
export const ATTENTION_KERNEL = 'DcdAttention';
/**
 * Training-mode BatchNorm over the last axis with the batch statistics, optionally followed by a
 * residual add and ReLU: inputs x, scale, offset and optionally residual (x's shape); attrs eps,
 * activation ('linear' | 'relu'), residual (true when that input is given); outputs [y = act(bn(x) + residual), mean, variance (biased)].
 * Its gradient (through the statistics, the ReLU and to the residual) is the native
 * {@link BN_TRAIN_GRAD_KERNEL}. The models call it on this backend (src/models/ops.ts).
 */
export const BN_TRAIN_KERNEL = 'DcdBatchNormTrain';
export const BN_TRAIN_GRAD_KERNEL = 'DcdBatchNormTrainGrad';
/**
 * One torch.optim.SGD update (dampening 0) in one pass: inputs param, grad and optionally buf (the
 * momentum buffer; absent = zeros); attrs lr, momentum, weightDecay, nesterov; outputs [param',
 * buf']. dcd's optimizer calls it on this backend (src/train/optimizer.ts). No gradient.
 */
export const SGD_KERNEL = 'DcdSgdStep';
/** ReLU's gradient dy·step(x) in one kernel (inputs dy, x); see installReluGrad. */
export const RELU_GRAD_KERNEL = 'DcdReluGrad';
/**
 * act(conv(x, filter) + bias + residual), act linear or relu: FusedConv2D's inputs plus
 * `residual` (the conv's output shape), as one oneDNN convolution with a sum post-op. ResNet's
 * eval blocks end with it (the residual add and ReLU fused, as inference runtimes do). No gradient.
 */
export const CONV_ADD_KERNEL = 'DcdFusedConv2DAdd';
/**
 * A linear layer with constant weights, act(x·Wᵀ + bias + residual): inputs x [M, K], weight
 * [N, K] (PyTorch's layout), optionally bias [N] and residual [M, N]; attr activation 'linear' |
 * 'gelu' (exact). One oneDNN matmul with GELU and the residual add as post-ops, the weights kept
 * in the primitive's packed layout for as long as their data lives. A ViT block's linear layers
 * at inference. No gradient.
 */
export const LINEAR_KERNEL = 'DcdLinear';
/**
 * The 3×3 "same" patches of NHWC x [n, h, w, c] (zero padding 1) as rows [n·h·w, 9·c], column
 * block k = dy·3 + dx: input x, attrs n, h, w, c. Exactly tfjs's pad + nine slices + concat in one
 * pass (the small CNN's convolution, src/models/small-cnn.ts). Its gradient is
 * {@link COL2IM_KERNEL} (input dy, same attrs), bit-identical to tfjs's autodiff of the composed
 * form (src/backends/gradients.ts).
 */
export const IM2COL_KERNEL = 'DcdIm2col3x3';
export const COL2IM_KERNEL = 'DcdCol2im3x3';
