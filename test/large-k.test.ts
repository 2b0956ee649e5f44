/**
 * A k far past what the pool holds (k·|S_y| beyond 2³¹) through `dcd select`: Algorithm 1 picks
 * every pool image of the seed's class and stops (the class pool is exhausted), on the native
 * backend (64-bit heap offsets in the addon) and on cpu (the JS search), with no crash, no
 * RangeError and no truncation. On fd5d8b6 k = 100,000 crashed (native: segfault or RangeError;
 * cpu: an int32 cap that wrapped and cut the picks).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildTable, writeArrowFile } from '../src/core/arrow.js';
import { mulberry32 } from '../src/core/rng.js';
import { EmbeddingStore } from '../src/retrieval/store.js';
import { registerNativeBackend } from '../src/backends/native.js';
import { spawnAsync } from './spawn-async.js';

const dir = mkdtempSync(path.join(tmpdir(), 'dcd-large-k-'));
const f = (n: string) => path.join(dir, n);
const CLI = path.resolve('dist/src/cli/main.js');
const DIM = 8;
const META = { 'dcd.backbone': 'toy', 'dcd.weights_sha256': 'abc' };

function table(prefix: string, n: number, classes: number, seed: number) {
  const rnd = mulberry32(seed);
  return buildTable(
    {
      id: { kind: 'utf8', values: Array.from({ length: n }, (_, i) => `${prefix}${i}`) },
      embedding: { kind: 'embedding', values: Float32Array.from({ length: n * DIM }, () => rnd()), dim: DIM },
      label: { kind: 'int32', values: Array.from({ length: n }, (_, i) => i % classes) },
    },
    META,
  );
}

beforeAll(async () => {
  // 100 seeds per class: k = 100,000 asks for (1 + 100,000)·100 ≈ 10⁷ candidates per seed, 4·10⁹ in all.
  await writeArrowFile(f('S.arrow'), table('s', 400, 4, 1));
  await writeArrowFile(f('P.arrow'), table('p', 2000, 4, 2));
});

const backends = ['cpu', ...(registerNativeBackend().ok ? ['native'] : [])];

describe('dcd select with a huge k', () => {
  for (const backend of backends)
    it(`picks every image of each class on ${backend} (k = 100,000, k_val = 1)`, async () => {
      const out = f(`x-${backend}.arrow`);
      const r = await spawnAsync(process.execPath, [CLI, 'select', '--seed', f('S.arrow'), '--pool', f('P.arrow'), '-k', '100000', '--k-val', '1', '--out', out, '--backend', backend], { timeout: 100_000 });
      expect(r.stderr).not.toMatch(/internal error|RangeError/);
      expect(r.status).toBe(0);
      const rows = (file: string) => readFileSync(file, 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));
      // de-val: one per seed (100 per class); debug-train: the other 400 of the class's 500.
      expect(rows(f(`x-${backend}.deval.summary.csv`)).map((c) => c[3])).toEqual(['100', '100', '100', '100']);
      expect(rows(f(`x-${backend}.summary.csv`)).map((c) => [c[2], c[3], c[4]])).toEqual(Array(4).fill(['400', '400', 'true']));
      const ids = new Set([...rows(f(`x-${backend}.csv`)), ...rows(f(`x-${backend}.deval.csv`))].map((c) => c[0]));
      expect(ids.size).toBe(2000);
    });

  it('counts rows per class from the label column alone', async () => {
    const s = await EmbeddingStore.open([f('P.arrow')], { role: 'pool', requireLabel: true });
    const c = await s.rowCounts();
    expect(c.rows).toBe(2000);
    expect([...c.byLabel].sort((a, b) => a[0] - b[0])).toEqual([[0, 500], [1, 500], [2, 500], [3, 500]]);
  });
});
