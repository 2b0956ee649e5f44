/**
 * Audit of a selection against the true classes a pool records. A web pool knows only
 * weak labels; the synthetic and Fashion-MNIST pools also record the class an image really
 * shows, so there the report can count and show the picks whose weak label is wrong.
 */

/** A pick whose weak label differs from the true class. */
export interface WrongPick {
  /** Index into the selection. */
  index: number;
  /** The class the image shows (-1: no object). */
  truth: number;
}

/** What {@link auditPicks} found. */
export interface PickAudit {
  /** Picks whose true class is known. */
  checked: number;
  /** Of those, the ones whose weak label is wrong, in selection order. */
  wrong: WrongPick[];
}

/**
 * Compares each pick's weak label with its true class.
 * @param weakLabels the selection's weak labels, one per pick
 * @param truthOf the true class of pick `i`, or undefined where the pool does not know it
 */
export function auditPicks(weakLabels: ArrayLike<number>, truthOf: (i: number) => number | undefined): PickAudit {
  let checked = 0;
  const wrong: WrongPick[] = [];
  for (let i = 0; i < weakLabels.length; i++) {
    const truth = truthOf(i);
    if (truth === undefined) continue;
    checked++;
    if (truth !== weakLabels[i]) wrong.push({ index: i, truth });
  }
  return { checked, wrong };
}

/**
 * Up to `n` of `items`, taken in turn from each class (classes ascending, items in their
 * order within a class): a short sample that shows every class rather than the first one.
 */
export function takeAcrossClasses<T>(items: readonly T[], classOf: (x: T) => number, n: number): T[] {
  const by = new Map<number, T[]>();
  for (const x of items) {
    const c = classOf(x);
    const l = by.get(c);
    if (l) l.push(x);
    else by.set(c, [x]);
  }
  const lists = [...by.keys()].sort((a, b) => a - b).map((c) => by.get(c)!);
  const out: T[] = [];
  for (let round = 0; out.length < n && lists.some((l) => round < l.length); round++)
    for (const l of lists) if (round < l.length && out.length < n) out.push(l[round]!);
  return out;
}
