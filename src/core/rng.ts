/**
 * The one seeded random number generator (mulberry32) and the one seed hash of the
 * project. Every random draw (synthetic data, augmentation, weight init, training order,
 * baselines) goes through these, so a seed reproduces a run on any platform.
 */

/** mulberry32: a small, fast, seedable 32-bit PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * 32-bit FNV-1a hash of `key` mixed with a seed (its high 32 bits too): one independent
 * RNG stream per image id, epoch or purpose.
 */
export function hashSeed(seed: number, key: string): number {
  let h = (0x811c9dc5 ^ (seed >>> 0)) >>> 0;
  h = Math.imul(h ^ ((seed / 4294967296) >>> 0), 0x01000193) >>> 0;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * {@link hashSeed} followed by an avalanche step (murmur3-style): the seed of a named
 * stream of the synthetic benchmark and the demo backbones. Equal to the former
 * `streamSeed` for every seed in [0, 2³²).
 */
export function streamSeed(seed: number, stream: string): number {
  let h = hashSeed(seed, stream);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return h >>> 0;
}

/** Fisher–Yates shuffle of `a` in place with `rand`. */
export function shuffleInPlace<T>(a: { [i: number]: T; length: number }, rand: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
}

/** A permutation of 0 … n−1 shuffled by mulberry32(`seed`). */
export function permutation(n: number, seed: number): Int32Array {
  const idx = Int32Array.from({ length: n }, (_, i) => i);
  shuffleInPlace(idx, mulberry32(seed));
  return idx;
}
