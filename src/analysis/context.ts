/**
 * Image contexts and the rule that decides whether a neighbour "keeps the context" of
 * an image (paper Section 3.1, Figure 7).
 *
 * A context is a small record of named attributes, each a set of values:
 *
 * - a single-context data set (the synthetic benchmark, most `context` columns) has one
 *   attribute, `context`, with one value: `"snow"` → `{ context: {snow} }`;
 * - FOCUS has three: `time` (day, night), `weather` (cloudy, foggy, raining, …) and
 *   `locations` (a set: forest, grass, indoors, street, water, …).
 *
 * The manifest's `context` column is a string in one of three spellings, all parsed by
 * {@link parseContext}:
 *
 * | spelling | example |
 * |---|---|
 * | plain value | `snow` |
 * | key=value list (`;` between attributes, `\|` or `+` between set members) | `time=night;weather=snowing;locations=forest\|grass` |
 * | JSON object (arrays are sets) | `{"time":"night","weather":"snowing","locations":["forest","grass"]}` |
 *
 * Values `none`, `unknown`, `-`, `null` and the empty string mean "not annotated".
 *
 * **Rule (default, `lenient`).** A neighbour keeps the context of an image when every
 * attribute that *both* images annotate agrees — a set attribute (two or more values,
 * or the FOCUS `locations`) agrees when the two sets share at least one value, any
 * other attribute when the values are equal — and at least one attribute was compared.
 * For FOCUS this reads: the same time and weather where both are annotated, and at
 * least one shared location. For a single-context data set it is plain equality.
 *
 * **Rule `strict`.** Every attribute is equal, sets included, and "not annotated"
 * equals only "not annotated": the whole context record is identical.
 */
import { DataError } from '../core/errors.js';

/** A parsed context: attribute name → set of values (sorted, lower-cased). Absent = not annotated. */
export type Context = ReadonlyMap<string, readonly string[]>;

/** How "keeps the context" is decided; see the module comment. */
export type ContextRule = 'lenient' | 'strict';

/** Attribute names that are sets even when an image has a single value (FOCUS). */
const SET_ATTRIBUTES = new Set(['locations', 'location']);

const MISSING = new Set(['', 'none', 'unknown', '-', 'null', 'na', 'n/a']);

function normValues(raw: unknown, where: string): string[] {
  const list = Array.isArray(raw) ? raw : [raw];
  const out = new Set<string>();
  for (const v of list) {
    if (v === null || v === undefined) continue;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
      throw new DataError(`${where}: context values must be strings or lists of strings, found ${JSON.stringify(v)}`);
    const s = String(v).trim().toLowerCase();
    if (!MISSING.has(s)) out.add(s);
  }
  return [...out].sort();
}

/**
 * Parses one `context` cell. Returns null when the image has no annotated context.
 * @param cell the manifest's context string (or null)
 * @param where names the file and row in error messages
 */
export function parseContext(cell: string | null | undefined, where = 'context'): Context | null {
  if (cell === null || cell === undefined) return null;
  const s = cell.trim();
  if (MISSING.has(s.toLowerCase())) return null;
  const ctx = new Map<string, string[]>();
  if (s.startsWith('{')) {
    let obj: unknown;
    try {
      obj = JSON.parse(s);
    } catch (e) {
      throw new DataError(`${where}: context ${JSON.stringify(s)} starts with "{" but is not valid JSON (${(e as Error).message})`);
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj))
      throw new DataError(`${where}: a JSON context must be an object of attribute → value(s), found ${s}`);
    for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
      const vals = normValues(v, where);
      if (vals.length) ctx.set(k.trim().toLowerCase(), vals);
    }
  } else if (s.includes('=')) {
    for (const part of s.split(';')) {
      if (!part.trim()) continue;
      const eq = part.indexOf('=');
      if (eq <= 0)
        throw new DataError(`${where}: context part ${JSON.stringify(part)} is not key=value (expected e.g. "time=night;locations=forest|grass")`);
      const key = part.slice(0, eq).trim().toLowerCase();
      const vals = normValues(part.slice(eq + 1).split(/[|+]/), where);
      if (vals.length) ctx.set(key, vals);
    }
  } else {
    const vals = normValues(s.split(/[|+]/), where);
    if (vals.length) ctx.set('context', vals);
  }
  return ctx.size ? ctx : null;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function intersects(a: readonly string[], b: readonly string[]): boolean {
  // Both sorted: a merge walk.
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) return true;
    if (a[i]! < b[j]!) i++;
    else j++;
  }
  return false;
}

/**
 * Whether neighbour context `b` keeps the context `a` of the query image, under `rule`.
 * Null contexts never keep (nor are kept).
 */
export function keepsContext(a: Context | null, b: Context | null, rule: ContextRule = 'lenient'): boolean {
  if (!a || !b) return false;
  if (rule === 'strict') {
    if (a.size !== b.size) return false;
    for (const [k, va] of a) {
      const vb = b.get(k);
      if (!vb || !sameSet(va, vb)) return false;
    }
    return true;
  }
  let compared = 0;
  for (const [k, va] of a) {
    const vb = b.get(k);
    if (!vb) continue;
    compared++;
    const isSet = SET_ATTRIBUTES.has(k) || va.length > 1 || vb.length > 1;
    if (isSet ? !intersects(va, vb) : va[0] !== vb[0]) return false;
  }
  return compared > 0;
}

/** A context written back in the key=value spelling (for tables and messages). */
export function formatContext(c: Context | null): string {
  if (!c) return '';
  if (c.size === 1 && c.has('context')) return c.get('context')!.join('|');
  return [...c].map(([k, v]) => `${k}=${v.join('|')}`).join(';');
}
