/**
 * Seeded fuzzing of every reader dcd has: random byte flips and truncations of a valid file of each
 * kind (PyTorch zip and legacy pickle checkpoints, safetensors, Arrow embeddings, YAML config, CSV
 * and JSONL pool lists, PNG and JPEG images). Each mutant must either load correctly (finite numbers
 * where numbers come out) or be refused with one of dcd's errors naming the file — never another
 * exception (a crash), a hang (the test's timeout) or NaN garbage. Bounded: a fixed number of mutants
 * per reader, cut short by a time budget per reader so that CI stays quick on a slow machine.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { buildTable, writeArrowFile } from '../src/core/arrow.js';
import { loadConfig } from '../src/core/config.js';
import { DcdError } from '../src/core/errors.js';
import { mulberry32 } from '../src/core/rng.js';
import { readPoolList } from '../src/data/folders.js';
import { loadImage } from '../src/data/images.js';
import { flattenTensors, materialize, readCheckpoint } from '../src/models/checkpoint.js';
import { loadCheckpoint } from '../src/models/load.js';
import { createModel } from '../src/models/registry.js';
import { encodeSafetensors, type SafetensorsInput } from '../src/models/safetensors.js';
import { EmbeddingStore } from '../src/retrieval/store.js';

const ROOT = path.resolve(__dirname, '..');
const FIX = path.join(ROOT, 'test/fixtures/parity');
const dir = mkdtempSync(path.join(tmpdir(), 'dcd-fuzz-'));
/** Mutants per reader, and the time after which a reader's loop stops early (ms). */
const MUTANTS = 60;
const BUDGET_MS = 5000;

/** `good` with a few random bytes changed, cut short, or both (seeded by `rnd`). */
function mutate(good: Uint8Array, rnd: () => number, protect = 0): Uint8Array {
  const kind = rnd();
  let b = Uint8Array.from(good);
  if (kind < 0.7) {
    const flips = 1 + Math.floor(rnd() * 8);
    for (let i = 0; i < flips; i++) {
      const at = protect + Math.floor(rnd() * (b.length - protect));
      b[at] = rnd() < 0.5 ? b[at]! ^ (1 << Math.floor(rnd() * 8)) : Math.floor(rnd() * 256);
    }
  }
  if (kind >= 0.5) b = b.subarray(0, Math.floor(rnd() * b.length));
  return b;
}

function allFinite(xs: ArrayLike<number>): boolean {
  for (let i = 0; i < xs.length; i++) if (!Number.isFinite(xs[i]!)) return false;
  return true;
}

/**
 * Runs `load` on mutants of `good` written to `name`: it must resolve (and `check` its result) or
 * throw a DcdError whose message names the file. Returns [loaded, refused] counts.
 */
async function fuzz(name: string, good: Uint8Array, seed: number, load: (file: string) => Promise<void>): Promise<[number, number]> {
  const rnd = mulberry32(seed);
  const file = path.join(dir, name);
  const t0 = Date.now();
  let ok = 0;
  let refused = 0;
  for (let i = 0; i < MUTANTS && Date.now() - t0 < BUDGET_MS; i++) {
    const m = mutate(good, rnd);
    writeFileSync(file, m);
    try {
      await load(file);
      ok++;
    } catch (e) {
      const what = `${name} mutant ${i} (seed ${seed}): ${(e as Error)?.stack ?? String(e)}`;
      expect(e instanceof DcdError, what).toBe(true);
      expect((e as Error).message, what).toContain(name);
      refused++;
    }
  }
  expect(ok + refused).toBeGreaterThan(0);
  return [ok, refused];
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('fuzzed readers: a correct load or a named dcd error', () => {
  it('PyTorch zip, legacy and safetensors checkpoints (loaded strictly into the model)', async () => {
    const model = createModel('resnet_bottleneck_tiny');
    const before = tf.memory().numTensors;
    const load = async (file: string) => {
      await loadCheckpoint(model, file);
      for (const [, v] of model.params()) expect(allFinite(v.dataSync() as Float32Array)).toBe(true);
    };
    const zip = new Uint8Array(readFileSync(path.join(FIX, 'resnet_bottleneck_tiny.pth')));
    const legacy = new Uint8Array(readFileSync(path.join(FIX, 'resnet_bottleneck_tiny_legacy.pth')));
    const sd: Record<string, SafetensorsInput> = {};
    for (const [k, leaf] of flattenTensors((await readCheckpoint(path.join(FIX, 'resnet_bottleneck_tiny.pth'))).tree)) {
      const t = materialize(leaf);
      sd[k] = { dtype: t.dtype, shape: t.shape, data: t.data } as SafetensorsInput;
    }
    const counts = [await fuzz('ck.pth', zip, 1, load), await fuzz('ck-legacy.pth', legacy, 2, load), await fuzz('ck.safetensors', encodeSafetensors(sd), 3, load)];
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
    // both outcomes occur: the fuzzing reaches past the first check
    for (const [ok, refused] of counts) expect(refused).toBeGreaterThan(0), expect(ok + refused).toBeGreaterThan(10);
  });

  it('Arrow embedding files (read whole through the store)', async () => {
    const rnd = mulberry32(7);
    const n = 50;
    const dim = 8;
    await writeArrowFile(
      path.join(dir, 'good.arrow'),
      buildTable(
        {
          id: { kind: 'utf8', values: Array.from({ length: n }, (_, i) => `p${i}`) },
          embedding: { kind: 'embedding', values: Float32Array.from({ length: n * dim }, () => rnd() - 0.5), dim },
          label: { kind: 'int32', values: Array.from({ length: n }, (_, i) => i % 3) },
        },
        { 'dcd.backbone': 'toy' },
      ),
    );
    const [ok, refused] = await fuzz('emb.arrow', new Uint8Array(readFileSync(path.join(dir, 'good.arrow'))), 4, async (file) => {
      const s = await EmbeddingStore.open([file], { role: 'pool', requireLabel: true });
      const all = await s.readAll();
      expect(allFinite(all.data)).toBe(true);
      expect(all.ids.length * all.dim).toBe(all.data.length);
    });
    expect(refused).toBeGreaterThan(0);
    expect(ok + refused).toBeGreaterThan(10);
  });

  it('YAML configs', async () => {
    const good = new Uint8Array(readFileSync(path.join(ROOT, 'test/fixtures/pipeline/tiny.yaml')));
    const [, refused] = await fuzz('config.yaml', good, 5, async (file) => void loadConfig(file));
    expect(refused).toBeGreaterThan(0);
  });

  it('CSV and JSONL pool lists', async () => {
    const classes = ['cat', 'dog'];
    const csv = new Uint8Array(Buffer.from('id,path,weak_label\n' + Array.from({ length: 20 }, (_, i) => `i${i},img/${i}.png,${classes[i % 2]}`).join('\n') + '\n'));
    const jsonl = new Uint8Array(Buffer.from(Array.from({ length: 20 }, (_, i) => JSON.stringify({ id: `i${i}`, path: `img/${i}.png`, weak_label: classes[i % 2] })).join('\n') + '\n'));
    const load = async (file: string) => {
      const rows = await readPoolList(file, classes);
      for (const r of rows) expect(r.weak_label === 0 || r.weak_label === 1).toBe(true);
    };
    const a = await fuzz('pool.csv', csv, 6, load);
    const b = await fuzz('pool.jsonl', jsonl, 8, load);
    expect(a[1] + b[1]).toBeGreaterThan(0);
  });

  it('PNG and JPEG images', async () => {
    const raw = Buffer.from(Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 37) % 256));
    const img = sharp(raw, { raw: { width: 32, height: 32, channels: 3 } });
    const png = new Uint8Array(await img.clone().png().toBuffer());
    const jpg = new Uint8Array(await img.clone().jpeg().toBuffer());
    const t = { resize: 16, crop: 16, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
    const load = async (file: string) => expect(allFinite(await loadImage(file, t))).toBe(true);
    const a = await fuzz('img.png', png, 9, load);
    const b = await fuzz('img.jpg', jpg, 10, load);
    expect(a[1] + b[1]).toBeGreaterThan(0);
  });
});
