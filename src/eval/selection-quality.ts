/**
 * How clean and how on-target a selection is, where the pool knows more than its weak
 * labels: the noise rate (picks whose true class differs from the label they are added
 * under) and, where images carry a context, the share of picks in the context of the seed
 * image they were picked for. The pool itself gives the reference a uniform draw (Random)
 * would reach in expectation.
 */
import type { ManifestRow } from '../data/manifest.js';

/** The `true_label` and `context` a manifest row records in its context JSON (absent = unknown). */
export function rowFacts(r: Pick<ManifestRow, 'context'>): { truth?: number; context?: string } {
  if (!r.context || !r.context.startsWith('{')) return r.context ? { context: r.context } : {};
  try {
    const j = JSON.parse(r.context) as { true_label?: unknown; context?: unknown };
    return {
      ...(typeof j.true_label === 'number' ? { truth: j.true_label } : {}),
      ...(typeof j.context === 'string' && j.context !== '' ? { context: j.context } : {}),
    };
  } catch {
    return {};
  }
}

/** One line of the selection-quality table. */
export interface SelectionQuality {
  /** dcd-<backbone>, or `pool` for the reference. */
  name: string;
  picks: number;
  /** Picks with a known true class, and the % of them whose true class ≠ the added label. */
  withTruth: number;
  noise: number | null;
  /** Picks whose seed and own context are both known, and the % of them that share it. */
  withContext: number;
  sameContext: number | null;
}

/**
 * Quality of one selection.
 * @param picks pool id, the label it is added under, and the seed image it was picked for
 */
export function selectionQuality(
  name: string,
  picks: readonly { id: string; label: number; seedId: string }[],
  pool: ReadonlyMap<string, Pick<ManifestRow, 'context'>>,
  seeds: ReadonlyMap<string, Pick<ManifestRow, 'context'>>,
): SelectionQuality {
  let withTruth = 0;
  let wrong = 0;
  let withContext = 0;
  let same = 0;
  for (const p of picks) {
    const f = rowFacts(pool.get(p.id) ?? {});
    if (f.truth !== undefined) {
      withTruth++;
      if (f.truth !== p.label) wrong++;
    }
    const s = rowFacts(seeds.get(p.seedId) ?? {}).context;
    if (f.context !== undefined && s !== undefined) {
      withContext++;
      if (f.context === s) same++;
    }
  }
  return { name, picks: picks.length, withTruth, noise: withTruth ? (100 * wrong) / withTruth : null, withContext, sameContext: withContext ? (100 * same) / withContext : null };
}

/**
 * The reference of a uniform draw from the pool: per seed image, the noise rate and the
 * share in the seed's context of the pool images weakly labelled with the seed's class,
 * averaged over the seed images.
 */
export function poolReference(pool: readonly ManifestRow[], seeds: readonly ManifestRow[]): SelectionQuality {
  const byClass = new Map<number, { truth: number; wrong: number; ctx: Map<string, number>; withCtx: number }>();
  for (const r of pool) {
    const y = r.weak_label ?? -1;
    let c = byClass.get(y);
    if (!c) byClass.set(y, (c = { truth: 0, wrong: 0, ctx: new Map(), withCtx: 0 }));
    const f = rowFacts(r);
    if (f.truth !== undefined) (c.truth++, f.truth !== y && c.wrong++);
    if (f.context !== undefined) (c.withCtx++, c.ctx.set(f.context, (c.ctx.get(f.context) ?? 0) + 1));
  }
  let nN = 0;
  let noise = 0;
  let nC = 0;
  let same = 0;
  for (const s of seeds) {
    const c = byClass.get(s.label);
    if (!c) continue;
    if (c.truth) (nN++, (noise += c.wrong / c.truth));
    const sc = rowFacts(s).context;
    if (sc !== undefined && c.withCtx) (nC++, (same += (c.ctx.get(sc) ?? 0) / c.withCtx));
  }
  const seedClasses = new Set(seeds.map((s) => s.label));
  const n = pool.filter((r) => seedClasses.has(r.weak_label ?? -1)).length;
  return { name: 'pool', picks: n, withTruth: nN, noise: nN ? (100 * noise) / nN : null, withContext: nC, sameContext: nC ? (100 * same) / nC : null };
}

/** Markdown of the table (report.md). */
export function selectionQualityMarkdown(rows: readonly SelectionQuality[]): string {
  const pct = (x: number | null) => (x === null ? '—' : x.toFixed(2));
  return [
    '| selection | images | noise rate (%, true class ≠ label) | same context as its seed image (%) |',
    '|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.name === 'pool' ? 'pool, uniform draw (Random, expected)' : `picks of ${r.name}`} | ${r.picks} | ${pct(r.noise)} | ${pct(r.sameContext)} |`),
  ].join('\n');
}
