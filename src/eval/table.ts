/**
 * The paper's result table (Tables 1, 4, 5): rows = methods, columns = Seed and
 * Heldout (incorrectly classified), MFreq / Compl. / INet on the class subset, and the
 * same on all classes; several seeds → mean ± sample std with n. Accuracies are in percent
 * throughout. The one table every report file (Markdown, CSV, JSON, HTML) and the terminal show.
 */

/** A cell: mean and sample std over seeds (std 0 when n = 1). */
export interface Cell {
  mean: number;
  std: number;
  n: number;
}

/** Mean and sample (n − 1) standard deviation. */
export function meanStd(xs: readonly number[]): Cell {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}

/** A Markdown table whose first column is left-aligned and the others right-aligned (numbers). */
export function markdownGrid(head: readonly string[], rows: readonly (readonly string[])[]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ':---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** Metric keys, in table order. */
export const COLUMNS = ['seed', 'heldout', 'mfreq_sub', 'compl_sub', 'test_sub', 'mfreq_all', 'compl_all', 'test_all'] as const;
export type ColumnKey = (typeof COLUMNS)[number];
/** Column headers. */
export const HEADERS: Record<ColumnKey, string> = {
  seed: 'Seed',
  heldout: 'Heldout',
  mfreq_sub: 'MFreq (sub)',
  compl_sub: 'Compl. (sub)',
  test_sub: 'INet (sub)',
  mfreq_all: 'MFreq (all)',
  compl_all: 'Compl. (all)',
  test_all: 'INet (all)',
};

/** Accuracy in percent per column (null: the set was empty or not evaluated). */
export type RowMetrics = Partial<Record<ColumnKey | string, number | null>>;

/** One evaluated model. */
export interface RowResult {
  method: string;
  seed: number;
  variant: string;
  metrics: RowMetrics;
  /** Per subset class: heldout accuracy (fraction) and images added (Figure 10). */
  perClass?: { label: number; name?: string; acc: number; selected: number }[];
}

/** One row of the aggregated table. */
export interface TableRow {
  name: string;
  n: number;
  seeds: number[];
  cells: Record<string, Cell | null>;
}

/** Method order: original, complete, random, then dcd-* in first-seen order. */
function methodRank(m: string): number {
  return m === 'original' ? 0 : m === 'complete' ? 1 : m === 'random' ? 2 : 3;
}

/**
 * The row name of each result (`method`, or `method [variant]` in a sweep where the
 * variants differ), or null for an exact duplicate (one stage shared by several variants).
 */
export function rowNames(results: readonly RowResult[]): (string | null)[] {
  const seen = new Set<string>();
  const multiVariant = new Set(results.map((r) => r.variant)).size > 1;
  return results.map((r) => {
    const same = results.filter((x) => x.method === r.method && x.seed === r.seed);
    const shared = same.filter((x) => JSON.stringify(x.metrics) === JSON.stringify(r.metrics)).length;
    const variants = new Set(same.map((x) => x.variant)).size;
    const name = multiVariant && r.variant && variants > 1 && shared !== variants ? `${r.method} [${r.variant}]` : r.method;
    const key = `${name}|${r.seed}`;
    if (seen.has(key)) return null;
    seen.add(key);
    return name;
  });
}

/** Groups results by row name (see {@link rowNames}) and aggregates over seeds. */
export function aggregate(results: readonly RowResult[], columns: readonly string[] = COLUMNS): TableRow[] {
  const groups = new Map<string, RowResult[]>();
  rowNames(results).forEach((name, i) => {
    if (name === null) return;
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name)!.push(results[i]!);
  });
  const rows: TableRow[] = [];
  for (const [name, rs] of groups) {
    const cells: TableRow['cells'] = {};
    for (const c of columns) {
      const v = rs.map((r) => r.metrics[c]).filter((x): x is number => typeof x === 'number');
      if (!v.length) {
        cells[c] = null;
        continue;
      }
      cells[c] = meanStd(v);
    }
    rows.push({ name, n: rs.length, seeds: rs.map((r) => r.seed), cells });
  }
  const order = [...groups.keys()];
  rows.sort((a, b) => methodRank(a.name) - methodRank(b.name) || order.indexOf(a.name) - order.indexOf(b.name));
  return rows;
}

/** A cell as text: `62.89`, `62.89 ± 0.41` over several seeds, `–` where no run has the column. */
export function formatCell(c: TableRow['cells'][string]): string {
  if (!c) return '–';
  return c.n > 1 ? `${c.mean.toFixed(2)} ± ${c.std.toFixed(2)}` : c.mean.toFixed(2);
}

/** The table as Markdown (also what `dcd run` prints). */
export function markdownTable(rows: readonly TableRow[], title?: string, seedNote?: string): string {
  const n = Math.max(0, ...rows.map((r) => r.n));
  const grid = markdownGrid(['method', ...COLUMNS.map((c) => HEADERS[c])], rows.map((r) => [r.name, ...COLUMNS.map((c) => formatCell(r.cells[c]!))]));
  const note = `Accuracy (%)${n > 1 ? `, mean ± std over ${n} seeds` : ''}. Seed/Heldout: images the original model gets wrong; (sub): classes of the debug subset; (all): all classes.${seedNote ? ` ${seedNote}` : ''}`;
  return [title ? `## ${title}\n` : '', grid, '', note, ''].join('\n');
}

/** CSV: one line per (row, column) with mean, std and n. */
export function csvTable(rows: readonly TableRow[], columns: readonly string[] = COLUMNS, header = true): string {
  const out = header ? ['method,column,mean,std,n'] : [];
  for (const r of rows) for (const c of columns) {
    const x = r.cells[c];
    out.push(`${JSON.stringify(r.name)},${c},${x ? x.mean.toFixed(4) : ''},${x ? x.std.toFixed(4) : ''},${x ? x.n : 0}`);
  }
  return out.join('\n') + '\n';
}

/** Paired differences of two rows over the seeds both ran: mean ± sample std, t, and how many seeds favour the first. */
export interface PairedGap {
  /** `a − b`, e.g. `dcd-ssl − random`. */
  a: string;
  b: string;
  /** The seeds both rows ran (the pairing). */
  seeds: number[];
  cells: Record<string, { mean: number; std: number; n: number; t: number | null; wins: number } | null>;
}

/** Columns of the paired table: the debug sets and the full test set. */
export const PAIRED_COLUMNS: readonly ColumnKey[] = ['seed', 'heldout', 'test_all'];

/** `name [variant]` → `[variant]` (sweeps pair rows within one variant only), `''` otherwise. */
const variantOf = (name: string) => /( \[.*\])$/.exec(name)?.[1] ?? '';
const baseOf = (name: string) => name.slice(0, name.length - variantOf(name).length);

/**
 * Per-seed paired differences (Heldout etc. of row a minus row b on the same seed): each DCD row
 * against Random, and each pair of DCD rows in table order. Rows of one seed share its data draw
 * and original model, so their unpaired stds include a spread that every row shares; the paired
 * std does not. Empty when fewer than two seeds are shared. `rows`: the table of `results`
 * (its row order), when the caller has it.
 */
export function pairedGaps(results: readonly RowResult[], rows: readonly TableRow[] = aggregate(results)): PairedGap[] {
  const names = rowNames(results);
  const bySeed = new Map<string, Map<number, RowMetrics>>();
  results.forEach((r, i) => {
    const n = names[i];
    if (n === null || n === undefined) return;
    if (!bySeed.has(n)) bySeed.set(n, new Map());
    bySeed.get(n)!.set(r.seed, r.metrics);
  });
  const pairs: [string, string][] = [];
  const order = rows.map((r) => r.name);
  for (const v of new Set(order.map(variantOf))) {
    const dcd = order.filter((n) => variantOf(n) === v && baseOf(n).startsWith('dcd-'));
    // a Random row that every variant shares carries no variant
    const random = order.find((n) => variantOf(n) === v && baseOf(n) === 'random') ?? order.find((n) => n === 'random');
    if (random) for (const a of dcd) pairs.push([a, random]);
    for (let i = 0; i < dcd.length; i++) for (let j = i + 1; j < dcd.length; j++) pairs.push([dcd[i]!, dcd[j]!]);
  }
  const out: PairedGap[] = [];
  for (const [a, b] of pairs) {
    const ma = bySeed.get(a)!;
    const mb = bySeed.get(b)!;
    const seeds = [...ma.keys()].filter((s) => mb.has(s)).sort((x, y) => x - y);
    if (seeds.length < 2) continue;
    const cells: PairedGap['cells'] = {};
    for (const c of PAIRED_COLUMNS) {
      const d = seeds.map((s) => [ma.get(s)![c], mb.get(s)![c]]).filter((x): x is [number, number] => typeof x[0] === 'number' && typeof x[1] === 'number').map(([x, y]) => x - y);
      if (d.length < 2) {
        cells[c] = null;
        continue;
      }
      const { mean, std, n } = meanStd(d);
      cells[c] = { mean, std, n, t: std > 1e-9 ? mean / (std / Math.sqrt(n)) : null /* identical differences (up to rounding): no t */, wins: d.filter((x) => x > 0).length };
    }
    out.push({ a, b, seeds, cells });
  }
  return out;
}

/** Paired per-seed differences between rows, formatted (cells as text). */
export interface PairedTable {
  /** Column headers after the first (e.g. `Seed`, `Heldout`, `INet (all)`). */
  columns: string[];
  rows: { name: string; cells: string[] }[];
  /** What the cells mean (printed under the table). */
  note: string;
}

/** The paired table as Markdown, with its heading and note. */
export function pairedTableMarkdown(t: PairedTable): string {
  const grid = markdownGrid(['difference', ...t.columns], t.rows.map((r) => [r.name, ...r.cells]));
  return ['### Paired differences per seed', '', grid, '', t.note, ''].join('\n');
}

/** The paired table, formatted (cells as text): what report.md and the HTML report show. */
export function pairedTable(gaps: readonly PairedGap[]): PairedTable | undefined {
  if (!gaps.length) return undefined;
  const fmt = (x: PairedGap['cells'][string]) =>
    x ? `${x.mean >= 0 ? '+' : ''}${x.mean.toFixed(2)} ± ${x.std.toFixed(2)} (t ${x.t === null ? '–' : x.t.toFixed(1)}; ${x.wins}/${x.n} > 0)` : '–';
  const n = Math.max(...gaps.map((g) => g.seeds.length));
  return {
    columns: PAIRED_COLUMNS.map((c) => HEADERS[c]),
    rows: gaps.map((g) => ({ name: `${g.a} − ${g.b}`, cells: PAIRED_COLUMNS.map((c) => fmt(g.cells[c]!)) })),
    note:
      `Paired per seed (points): mean ± sample std over the ${n} seeds of (row a − row b) on the same seed, whose data draw and original model both rows share; ` +
      `t = mean / (std / √n), n − 1 degrees of freedom (|t| > 4.30 is the two-sided 5% level for n = 3, 2.78 for n = 5); how many seeds favour row a.`,
  };
}

/** Heldout accuracy per failure slice: one column per slice (`slice_1`, …), rows as in the main table. */
export interface SliceTable {
  /** What the slices are of, e.g. `seed 0's world, backbone ssl`. */
  scope: string;
  /** Column keys and headers (`Slice 1 (n=12)`: heldout images in the slice). */
  columns: { key: string; header: string }[];
  rows: TableRow[];
  /** Debug-train picks per slice (a pick counts in its seed image's slice), one row per dcd selection of the slices' world. */
  picks?: { name: string; counts: number[] }[];
}

/** The per-slice table from results whose metrics hold `slice_<i>` (percent), aggregated as the main table. */
export function sliceTable(results: readonly RowResult[], heldoutPerSlice: readonly number[], scope: string): SliceTable {
  const columns = heldoutPerSlice.map((n, i) => ({ key: `slice_${i + 1}`, header: `Slice ${i + 1} (n=${n})` }));
  return { scope, columns, rows: aggregate(results, columns.map((c) => c.key)) };
}

/** The per-slice table as Markdown. */
export function sliceTableMarkdown(t: SliceTable): string {
  const n = Math.max(0, ...t.rows.map((r) => r.n));
  const grid = markdownGrid(['method', ...t.columns.map((c) => c.header)], t.rows.map((r) => [r.name, ...t.columns.map((c) => formatCell(r.cells[c.key] ?? null))]));
  const out = [`## Heldout accuracy per failure slice (${t.scope})`, '', grid, '', `Accuracy (%) on the debug-heldout images nearest each slice of the debug-seed failures${n > 1 ? `, mean ± std over ${n} seeds` : ''}; – where a slice has no heldout image.`, ''];
  if (t.picks?.length)
    out.push(
      markdownGrid(['debug-train picks', ...t.columns.map((_, i) => `Slice ${i + 1}`)], t.picks.map((p) => [p.name, ...p.counts.map(String)])),
      '',
      'Debug-train picks of each selection per slice (a pick counts in the slice of the seed image it was picked for).',
      '',
    );
  return out.join('\n');
}
