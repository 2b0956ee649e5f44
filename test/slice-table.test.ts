import { describe, expect, it } from 'vitest';
import { csvTable, sliceTable, sliceTableMarkdown, type RowResult } from '../src/eval/table.js';

describe('per-slice table (eval/table.ts)', () => {
  const r = (method: string, seed: number, s1: number | null, s2: number | null): RowResult => ({ method, seed, variant: '', metrics: { slice_1: s1, slice_2: s2 } });
  const t = sliceTable([r('dcd-ssl', 0, 50, null), r('random', 0, 0, 25), r('dcd-ssl', 1, 100, null), r('random', 1, 0, 75)], [4, 0], 'world seed 0, backbone ssl');

  it('aggregates each slice over seeds as the main table does (mean, sample std, n), rows in method order', () => {
    expect(t.columns).toEqual([
      { key: 'slice_1', header: 'Slice 1 (n=4)' },
      { key: 'slice_2', header: 'Slice 2 (n=0)' },
    ]);
    expect(t.rows.map((x) => x.name)).toEqual(['random', 'dcd-ssl']);
    const dcd = t.rows[1]!;
    expect(dcd.cells.slice_1!.mean).toBe(75);
    expect(dcd.cells.slice_1!.std).toBeCloseTo(Math.SQRT2 * 25, 12); // sample std of 50, 100
    expect(dcd.cells.slice_2).toBeNull(); // no heldout image in the slice: no accuracy, not 0
    expect(t.rows[0]!.cells.slice_2).toEqual({ mean: 50, std: Math.SQRT2 * 25, n: 2 });
  });

  it('writes Markdown and CSV lines from the same rows', () => {
    const md = sliceTableMarkdown(t);
    expect(md).toContain('## Heldout accuracy per failure slice (world seed 0, backbone ssl)');
    expect(md).toContain('| dcd-ssl | 75.00 ± 35.36 | – |');
    expect(md).toContain('mean ± std over 2 seeds');
    expect(csvTable(t.rows, ['slice_1', 'slice_2'], false).split('\n')).toEqual(['"random",slice_1,0.0000,0.0000,2', '"random",slice_2,50.0000,35.3553,2', '"dcd-ssl",slice_1,75.0000,35.3553,2', '"dcd-ssl",slice_2,,,0', '']);
  });
});
