/**
 * The report's retrieval grid: for a few seed images (spread over the subset classes), the
 * pool images each backbone's Algorithm 1 picked for them, nearest first, with distances;
 * and each DCD row's picks whose weak label is wrong (known where the pool has a true label, as the
 * synthetic and Fashion-MNIST pools do).
 */
import { float32Column, int32Column, readArrowFile, stringColumn } from '../core/arrow.js';
import type { ManifestRow } from '../data/manifest.js';
import { auditPicks, takeAcrossClasses } from '../retrieval/audit.js';
import { poolReference, selectionQuality } from './selection-quality.js';
import type { RetrievedImage, WrongPicks } from './report.js';

/** Seed images shown, neighbours per backbone, and wrongly labelled picks listed. */
export const GALLERY_SEEDS = 8;
export const GALLERY_NEIGHBOURS = 6;
/** Wrongly labelled picks shown per DCD row. */
export const GALLERY_WRONG = 12;

/** One backbone's debug-train picks (a select stage's `debug_train-picks.arrow`). */
export interface GalleryPicks {
  ids: string[];
  labels: Int32Array;
  seeds: string[];
  dist: Float32Array;
  rank: Int32Array;
}

/** Reads a picks file (columns id, label, seed_id, distance, rank). */
export async function readPicks(file: string): Promise<GalleryPicks> {
  const t = await readArrowFile(file);
  return { ids: stringColumn(t, 'id', file), labels: int32Column(t, 'label', file), seeds: stringColumn(t, 'seed_id', file), dist: float32Column(t, 'distance', file), rank: int32Column(t, 'rank', file) };
}

/** An image of the grid: a retrieved image (src/eval/report.ts) with its distance and label. */
type GalleryImage = Required<RetrievedImage>;

/** What {@link buildGallery} needs: the sets' rows, the picks, and where each shown image is. */
export interface GalleryInput {
  seedRows: ManifestRow[];
  poolRows: ManifestRow[];
  classNames: string[];
  /** Per backbone its picks; under select.clean also the uncleaned picks and the dropped ones (id, label added under). */
  backbones: { label: string; picks: GalleryPicks; before?: GalleryPicks; dropped?: { ids: string[]; labels: Int32Array } }[];
  /** The select stage ran with `candidates: any_label` (the complete-pool variant). */
  anyLabel: boolean;
  /** The path to show for row `i` of the seed set or the pool (may write the image). */
  seedImage: (i: number) => Promise<string>;
  poolImage: (i: number) => Promise<string>;
}

/**
 * The true class of a pool image, where the pool knows it (synthetic and Fashion-MNIST
 * pools record it as context.true_label; -1 = no object); undefined for a web pool.
 */
function truthOf(r: ManifestRow): number | undefined {
  if (!r.context) return undefined;
  try {
    const t = (JSON.parse(r.context) as { true_label?: unknown }).true_label;
    return typeof t === 'number' ? t : undefined;
  } catch {
    return undefined;
  }
}

/** Seed rows shown: round-robin over classes (ascending), in manifest order within a class. */
function chooseSeeds(rows: ManifestRow[], n: number): number[] {
  const byClass = new Map<number, number[]>();
  rows.forEach((r, i) => byClass.set(r.label, [...(byClass.get(r.label) ?? []), i]));
  const chosen: number[] = [];
  for (let round = 0; chosen.length < n && round < rows.length; round++) {
    let any = false;
    for (const idx of [...byClass.keys()].sort((a, b) => a - b).map((k) => byClass.get(k)!))
      if (round < idx.length && chosen.length < n) (chosen.push(idx[round]!), (any = true));
    if (!any) break;
  }
  return chosen;
}

/** One DCD row's wrongly labelled picks: counts over all its picks, and a sample of images. */
type WrongPicksOfRow = Required<Omit<WrongPicks, 'images'>> & { images: GalleryImage[] };

/** The grid as the report reads it (gallery.json). */
export async function buildGallery(g: GalleryInput) {
  const cls = (y: number) => (y >= 0 ? (g.classNames[y] ?? String(y)) : 'none');
  const poolAt = new Map(g.poolRows.map((r, i) => [r.id, i]));
  const poolImage = (id: string) => g.poolImage(poolAt.get(id)!);
  const seeds = [];
  for (const si of chooseSeeds(g.seedRows, GALLERY_SEEDS)) {
    const r = g.seedRows[si]!;
    const neighbours: Record<string, GalleryImage[]> = {};
    for (const { label, picks: p } of g.backbones) {
      const mine = p.ids.map((_, j) => j).filter((j) => p.seeds[j] === r.id).sort((a, c) => p.rank[a]! - p.rank[c]!).slice(0, GALLERY_NEIGHBOURS);
      neighbours[label] = [];
      for (const j of mine) {
        const truth = truthOf(g.poolRows[poolAt.get(p.ids[j]!)!]!);
        neighbours[label]!.push({ id: p.ids[j]!, path: await poolImage(p.ids[j]!), distance: p.dist[j]!, label: truth !== undefined && truth !== p.labels[j] ? `${cls(p.labels[j]!)}, shows ${cls(truth)}` : cls(p.labels[j]!) });
      }
    }
    seeds.push({ image: { id: r.id, path: await g.seedImage(si), label: cls(r.label) }, neighbours });
  }
  // every DCD row's wrongly labelled picks, where the pool knows the truth
  const wrong: WrongPicksOfRow[] = [];
  for (const { label, picks: p } of g.backbones) {
    const audit = auditPicks(p.labels, (j) => truthOf(g.poolRows[poolAt.get(p.ids[j]!)!]!));
    const images: GalleryImage[] = [];
    for (const { index: j, truth } of takeAcrossClasses(audit.wrong, (w) => p.labels[w.index]!, GALLERY_WRONG))
      images.push({ id: p.ids[j]!, path: await poolImage(p.ids[j]!), distance: p.dist[j]!, label: `${cls(p.labels[j]!)} → ${cls(truth)}` });
    const title = g.anyLabel ? `dcd-${label} (complete-pool variant: true class differs from the seed's)` : `dcd-${label}`;
    wrong.push({ method: `dcd-${label}`, title, checked: audit.checked, wrong: audit.wrong.length, images });
  }
  // under select.clean: what the label check dropped (wrongly labelled ones first, then correctly labelled ones it also dropped)
  for (const { label, dropped: d } of g.backbones) {
    if (!d) continue;
    const truth = (j: number) => truthOf(g.poolRows[poolAt.get(d.ids[j]!)!]!);
    const audit = auditPicks(d.labels, truth);
    const shown = takeAcrossClasses(audit.wrong, (w) => d.labels[w.index]!, GALLERY_WRONG).map((w) => w.index);
    const right = d.ids.map((_, j) => j).filter((j) => truth(j) === d.labels[j]);
    shown.push(...right.slice(0, Math.max(0, GALLERY_WRONG - shown.length)));
    const images: GalleryImage[] = [];
    for (const j of shown) {
      const t = truth(j);
      images.push({ id: d.ids[j]!, path: await poolImage(d.ids[j]!), distance: Number.NaN, label: t !== undefined && t !== d.labels[j] ? `${cls(d.labels[j]!)} → ${cls(t)}` : `${cls(d.labels[j]!)} (label right)` });
    }
    wrong.push({ method: `dcd-${label}`, title: `dcd-${label}: picks dropped by select.clean (${d.ids.length}, counted over every round)`, checked: audit.checked, wrong: audit.wrong.length, images });
  }
  // noise rate and seed-context share of every pick, where the pool records true_label / context
  const poolById = new Map(g.poolRows.map((r) => [r.id, r]));
  const seedById = new Map(g.seedRows.map((r) => [r.id, r]));
  const quality = [
    ...g.backbones.flatMap(({ label, picks: p, before: b }) => [
      ...(b ? [selectionQuality(`dcd-${label} before select.clean`, b.ids.map((id, j) => ({ id, label: b.labels[j]!, seedId: b.seeds[j]! })), poolById, seedById)] : []),
      selectionQuality(b ? `dcd-${label} after select.clean` : `dcd-${label}`, p.ids.map((id, j) => ({ id, label: p.labels[j]!, seedId: p.seeds[j]! })), poolById, seedById),
    ]),
    poolReference(g.poolRows, g.seedRows),
  ];
  const known = quality.some((q) => q.noise !== null || q.sameContext !== null);
  return { backbones: g.backbones.map((b) => b.label), seeds, wrong, ...(known ? { quality } : {}) };
}
