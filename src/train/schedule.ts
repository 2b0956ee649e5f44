/** Learning-rate schedules, evaluated per optimiser step (like a per-iteration PyTorch scheduler). */
import { ConfigError } from '../core/errors.js';

/** A learning-rate schedule. Epoch-based settings are converted to steps by the trainer. */
export type Schedule =
  | { kind: 'constant' }
  | { kind: 'cosine'; /** final lr as a fraction of the base lr (default 0) */ minFactor?: number }
  | { kind: 'step'; /** epochs at which lr is multiplied by gamma */ milestones: number[]; gamma?: number };

/** Options shared by every schedule. */
export interface ScheduleOptions {
  schedule: Schedule;
  baseLr: number;
  /** Linear warm-up from `warmupStartFactor`·lr to lr over this many epochs (default 0). */
  warmupEpochs?: number;
  warmupStartFactor?: number;
}

/**
 * Learning rate at optimiser step `step` (0-based), with `stepsPerEpoch` steps per epoch
 * and `totalSteps` in the run. Cosine decays over the steps after warm-up.
 */
export function learningRate(o: ScheduleOptions, step: number, stepsPerEpoch: number, totalSteps: number): number {
  if (!(o.baseLr > 0)) throw new ConfigError(`train.lr: expected a number > 0, received ${o.baseLr}`);
  const warm = Math.round((o.warmupEpochs ?? 0) * stepsPerEpoch);
  if (step < warm) {
    const f0 = o.warmupStartFactor ?? 0;
    return o.baseLr * (f0 + ((1 - f0) * step) / warm);
  }
  const s = o.schedule;
  switch (s.kind) {
    case 'constant':
      return o.baseLr;
    case 'cosine': {
      const T = Math.max(1, totalSteps - warm);
      const t = Math.min(step - warm, T);
      const m = s.minFactor ?? 0;
      return o.baseLr * (m + (1 - m) * 0.5 * (1 + Math.cos((Math.PI * t) / T)));
    }
    case 'step': {
      const epoch = Math.floor(step / stepsPerEpoch);
      const passed = s.milestones.filter((m) => epoch >= m).length;
      return o.baseLr * (s.gamma ?? 0.1) ** passed;
    }
  }
}
