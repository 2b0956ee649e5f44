import type * as tf from '@tensorflow/tfjs';

/** Preprocessing of a backbone or classifier: eval transform plus normalisation. */
export interface Preprocess {
  /** Shorter side is resized to this many pixels. */
  resize: number;
  /** Then centre-cropped to crop × crop. */
  crop: number;
  /** Per-channel RGB mean and std applied to [0,1] pixels. Identity = [0,0,0]/[1,1,1]. */
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/**
 * A classifier or backbone in tfjs, split as timm's forward_features / forward_head.
 * Parameter names keep their PyTorch spelling (`layer1.0.conv1.weight`).
 */
export interface ImageModel {
  /** Registry name, e.g. `resnet50`, `dino_vits16`. */
  readonly name: string;
  /** Width of the penultimate feature. */
  readonly numFeatures: number;
  /** Classes of the head; 0 when the model has none. */
  readonly numClasses: number;
  /**
   * Penultimate features.
   * @param x NHWC float32 [B, H, W, 3], already normalised by the model's Preprocess
   * @param training BatchNorm uses batch statistics (and updates running ones) when true
   * @returns [B, numFeatures]
   */
  forwardFeatures(x: tf.Tensor4D, training?: boolean): tf.Tensor2D;
  /** Logits [B, numClasses] from features [B, numFeatures]. */
  forwardHead(features: tf.Tensor2D): tf.Tensor2D;
  /** Trainable parameters by PyTorch name. */
  params(): Map<string, tf.Variable>;
  /** Non-trainable state (BN running mean/var) by PyTorch name. */
  buffers(): Map<string, tf.Variable>;
  /** Frees every tensor the model holds. */
  dispose(): void;
}
