import { describe, expect, it, beforeAll } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backends/chain.js';
import type { ImageModel } from '../src/core/types.js';
import { lpipsDims } from '../src/analysis/lpips.js';
import { benchSimilarity, PAPER, similarityMarkdown } from '../src/analysis/similarity.js';
import { main } from '../src/cli/main.js';
import { writeSafetensors } from '../src/models/safetensors.js';

/** A 6-d "backbone": per-channel mean and max of the image. Enough to exercise the bench. */
function poolingModel(): ImageModel {
  return {
    name: 'pooling6',
    numFeatures: 6,
    numClasses: 0,
    forwardFeatures: (x) => tf.tidy(() => tf.concat([tf.mean(x, [1, 2]), tf.max(x, [1, 2])], 1) as tf.Tensor2D),
    forwardHead: (f) => f,
    params: () => new Map(),
    buffers: () => new Map(),
    dispose: () => undefined,
  };
}

beforeAll(async () => {
  await initBackend(undefined, { quiet: true });
});

describe('bench similarity', () => {
  it('measures both methods, projects the paper setting and frees its tensors', async () => {
    const before = tf.memory().numTensors;
    const r = await benchSimilarity({
      backbones: ['pooling6'],
      poolSizes: [8, 4],
      embedPoolSizes: [8, 4],
      size: 64,
      batch: 2,
      repeats: 1,
      k: 3,
      queryBatch: 3,
      createModel: poolingModel,
      inputSize: () => 32,
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.methods.map((m) => m.method)).toEqual(['lpips_alexnet', 'pooling6']);
    const [lp, emb] = r.methods as [(typeof r.methods)[0], (typeof r.methods)[0]];
    expect(lp.dims).toBe(lpipsDims(64));
    expect(lp.bytesPerImage).toBe(4 * lpipsDims(64));
    expect(emb.dims).toBe(6);
    expect(emb.bytesPerImage).toBe(24);
    for (const m of r.methods) {
      expect(m.rank.map((p) => p.pool)).toEqual([4, 8]);
      for (const p of m.rank) expect(p.seconds).toBeGreaterThan(0);
      expect(m.embedSecondsPerImage).toBeGreaterThan(0);
      expect(m.projected.storageBytes).toBe(PAPER.pool * m.bytesPerImage);
      // The projection is the fitted line at the paper's pool, times its queries.
      expect(m.fit.slope).toBeGreaterThan(0);
      expect(m.projected.rankSeconds).toBeCloseTo(Math.max(0, m.fit.intercept + m.fit.slope * PAPER.pool) * PAPER.queries, 6);
      expect(m.projected.rankSeconds).toBeGreaterThan(0);
      expect(m.rankBatch.map((p) => p.pool)).toEqual([4, 8]);
      expect(m.projected.rankBatchedSeconds).toBeCloseTo(Math.max(0, m.fitBatch!.intercept + m.fitBatch!.slope * PAPER.pool) * Math.ceil(PAPER.queries / 3), 6);
    }
    const md = similarityMarkdown(r);
    expect(md).toContain('99.58%');
    expect(md).toContain('1147.58 s');
    expect(md).toContain(`| lpips_alexnet | 64 | ${lpipsDims(64).toLocaleString('en-US')} |`);
    expect(md).not.toContain('NaN');
  });

  it('rejects bad pool sizes with the flag name', async () => {
    await expect(benchSimilarity({ poolSizes: [0], createModel: poolingModel, inputSize: () => 32 })).rejects.toThrow(/--pool-sizes/);
  });

  it('runs through the CLI on a registry backbone (resnet_tiny) and writes the tables', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-simbench-'));
    const out = path.join(dir, 'sim.md');
    const json = path.join(dir, 'sim.json');
    const code = await main(['bench', 'similarity', '--backbones', 'resnet_tiny', '--pool-sizes', '4,8', '--embed-pool-sizes', '16,32', '--size', '64', '--batch', '2', '--repeats', '1', '--k', '3', '--query-batch', '2', '--out', out, '--json', json]);
    expect(code).toBe(0);
    const r = JSON.parse(readFileSync(json, 'utf8'));
    expect(r.methods.map((m: { method: string }) => m.method)).toEqual(['lpips_alexnet', 'resnet_tiny']);
    expect(r.methods[1].dims).toBe(128); // resnet_tiny: widths 16/32/64/128, BasicBlocks
    expect(r.methods[1].inputSize).toBe(32);
    expect(r.methods[1].rank.map((p: { pool: number }) => p.pool)).toEqual([16, 32]);
    expect(readFileSync(out, 'utf8')).toMatch(/\| resnet_tiny \| 32 \| 128 \| 0\.50 KiB \| [^|]+ \| – \| – \| [0-9.]+ \| [0-9.]+ \|/);
  });

  it('loads --lpips-weights from safetensors and names a key that does not fit', async () => {
    const fx = JSON.parse(readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/analysis/lpips-tiny.json'), 'utf8')) as {
      weights: Record<string, { shape: number[]; data: number[] }>;
    };
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-simbench-'));
    const file = path.join(dir, 'narrow.safetensors');
    await writeSafetensors(file, Object.fromEntries(Object.entries(fx.weights).map(([k, v]) => [k, { dtype: 'F32' as const, shape: v.shape, data: Float32Array.from(v.data) }])));
    const errs: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((c: string) => (errs.push(String(c)), true)) as typeof process.stderr.write;
    try {
      const code = await main(['bench', 'similarity', '--backbones', 'resnet_tiny', '--pool-sizes', '4', '--size', '64', '--lpips-weights', file]);
      expect(code).toBe(1);
    } finally {
      process.stderr.write = orig;
    }
    expect(errs.join('')).toMatch(/features\.0\.weight has shape \[4,3,11,11\], expected \[64,3,11,11\]/);
  });
});
