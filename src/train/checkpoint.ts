/**
 * Training checkpoints. A checkpoint is a folder `step-<global step>/` holding
 *  - `model.safetensors`: params and buffers under their PyTorch names (a plain
 *    state dict: `loadCheckpoint` and PyTorch can read it),
 *  - `optimizer.safetensors`: SGD momentum buffers by parameter name,
 *  - `state.json`: epoch, step, seed and config hash (the RNG state: data order and
 *    augmentation are pure functions of (seed, epoch, id)).
 * The folder is written under a temporary name and renamed, then `latest.json` is
 * replaced atomically: a run killed at any moment leaves the previous checkpoint intact.
 */
import { existsSync } from 'node:fs';
import { readFile, rename, rm, readdir, mkdir } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ArtifactError } from '../core/errors.js';
import { atomicWriteJson, tempPathFor } from '../core/fsutil.js';
import { readSafetensors, writeSafetensors, type SafetensorsInput } from '../models/safetensors.js';
import type { ImageModel } from '../core/types.js';
import type { Sgd } from './optimizer.js';
import { assignWeights } from '../models/load.js';

/** Position of a run, saved with each checkpoint. */
export interface TrainState {
  /** Epoch in progress (0-based). */
  epoch: number;
  /** Optimiser steps already taken in `epoch`. */
  stepInEpoch: number;
  /** Optimiser steps already taken in the run. */
  globalStep: number;
  seed: number;
  /** Hash of the options that must not change on resume. */
  configHash: string;
  model: string;
  numClasses: number;
}

/** Reads the tensors asynchronously (the webgpu backend reads no other way). */
async function hostTensors(vars: Map<string, tf.Tensor>): Promise<Record<string, SafetensorsInput>> {
  const out: Record<string, SafetensorsInput> = {};
  for (const [name, v] of vars) out[name] = { dtype: 'F32', shape: [...v.shape], data: (await v.data()) as Float32Array };
  return out;
}

/** Writes a checkpoint of `model` + `opt` at `state` under `dir`, then points `latest.json` at it. */
export async function saveTrainCheckpoint(dir: string, model: ImageModel, opt: Sgd, state: TrainState, keep = 2): Promise<string> {
  const name = `step-${String(state.globalStep).padStart(8, '0')}`;
  const final = path.join(dir, name);
  const tmp = tempPathFor(final);
  await mkdir(tmp, { recursive: true });
  const weights = new Map<string, tf.Tensor>([...model.params(), ...model.buffers()]);
  await writeSafetensors(path.join(tmp, 'model.safetensors'), await hostTensors(weights), { 'dcd.model': model.name, 'dcd.num_classes': String(model.numClasses) });
  await writeSafetensors(path.join(tmp, 'optimizer.safetensors'), await hostTensors(opt.state()), { 'dcd.optimizer': 'sgd' });
  await atomicWriteJson(path.join(tmp, 'state.json'), state);
  await rm(final, { recursive: true, force: true });
  await rename(tmp, final);
  await atomicWriteJson(path.join(dir, 'latest.json'), { checkpoint: name, ...state });
  // keep the newest `keep` step folders (and every epoch-end one the caller copied out)
  const olds = (await readdir(dir)).filter((f) => /^step-\d+$/.test(f) && f !== name).sort();
  for (const f of olds.slice(0, Math.max(0, olds.length - (keep - 1)))) await rm(path.join(dir, f), { recursive: true, force: true });
  return final;
}

/** The checkpoint `latest.json` in `dir` points at, or undefined when there is none. */
export async function latestCheckpoint(dir: string): Promise<{ folder: string; state: TrainState } | undefined> {
  const f = path.join(dir, 'latest.json');
  if (!existsSync(f)) return undefined;
  let j: TrainState & { checkpoint: string };
  try {
    j = JSON.parse(await readFile(f, 'utf8'));
  } catch (e) {
    throw new ArtifactError(`${f}: not valid JSON (${(e as Error).message}); delete it to start the run afresh`);
  }
  const folder = path.join(dir, j.checkpoint);
  if (!existsSync(path.join(folder, 'state.json')))
    throw new ArtifactError(`${f} points at ${folder}, which is missing or incomplete; delete latest.json to start afresh`);
  const state = JSON.parse(await readFile(path.join(folder, 'state.json'), 'utf8')) as TrainState;
  return { folder, state };
}

/** Restores model weights, optimiser state and the run position from a checkpoint folder. */
export async function loadTrainCheckpoint(folder: string, model: ImageModel, opt: Sgd): Promise<TrainState> {
  const m = await readSafetensors(path.join(folder, 'model.safetensors'));
  assignWeights(model, m.tensors, path.join(folder, 'model.safetensors'));
  const o = await readSafetensors(path.join(folder, 'optimizer.safetensors'));
  const slots = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of o.tensors) slots.set(name, { shape: t.shape, data: t.data as Float32Array });
  opt.load(slots);
  return JSON.parse(await readFile(path.join(folder, 'state.json'), 'utf8')) as TrainState;
}
