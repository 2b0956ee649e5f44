/**
 * Turns zod issues into one line each: the key path, what was expected, what was
 * received, and a fix (`config.train.lr: expected a number > 0, received "0.1"; ...`).
 * An unknown key names the nearest valid one by edit distance.
 */
import type { z } from 'zod';
import { def, schemasAt, unwrap } from './schema-walk.js';

/** Levenshtein distance (small strings: config keys and enum values). */
export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    const cur = [i];
    for (let j = 1; j <= n; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[n]!;
}

/** Names people commonly write for a config key. */
const SYNONYMS: Record<string, string> = {
  learning_rate: 'lr',
  learningrate: 'lr',
  wd: 'weight_decay',
  batchsize: 'batch_size',
  bs: 'batch_size',
  smoothing: 'label_smoothing',
  accumulate: 'grad_accum',
  gradient_accumulation: 'grad_accum',
  kval: 'k_val',
  ktrain: 'k_train',
  seed: 'seeds',
  backbone: 'backbones',
  method: 'methods',
};

/** The candidate closest to `word`, if close enough to be a plausible typo (or a known synonym). */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  const syn = SYNONYMS[word.toLowerCase().replace(/-/g, '_')] ?? SYNONYMS[word.toLowerCase().replace(/[-_]/g, '')];
  if (syn && candidates.includes(syn)) return syn;
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function received(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `a list (${JSON.stringify(v).slice(0, 40)})`;
  if (typeof v === 'object') return `a mapping (keys: ${Object.keys(v).join(', ') || 'none'})`;
  return `${typeof v} ${String(v)}`;
}

function keyName(p: readonly PropertyKey[]): string {
  let s = 'config';
  for (const k of p) s += typeof k === 'number' ? `[${k}]` : `.${String(k)}`;
  return s;
}

const ARTICLE: Record<string, string> = {
  number: 'a number',
  int: 'an integer',
  string: 'a string',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping (key: value lines)',
  record: 'a mapping (key: value lines)',
};

function bound(issue: any): string {
  const op = issue.code === 'too_small' ? (issue.inclusive ? '>=' : '>') : issue.inclusive ? '<=' : '<';
  return `${op} ${issue.minimum ?? issue.maximum}`;
}

/** Options of {@link formatIssues}. */
export interface FormatOptions {
  /**
   * The tag key of a union of objects told apart by one key's value (the config's backbones by
   * `weights`), else undefined: for those, the option the value picked is reported.
   */
  tagOf?: (s: z.ZodType) => string | undefined;
  /** The value that was validated (to pick the option of a tagged union on an issue's path). */
  input?: unknown;
  /** Key path of `schema` itself (when formatting the issues of one union option). */
  prefix?: readonly PropertyKey[];
}

/** One message line per issue; `schema` is the validated schema (for key suggestions). */
export function formatIssues(issues: readonly z.core.$ZodIssue[], schema: z.ZodType, opts: FormatOptions = {}): string[] {
  const tagOf = opts.tagOf ?? (() => undefined);
  const prefix = opts.prefix ?? [];
  const out: string[] = [];
  for (const issue of issues) {
    const i = issue as any;
    const at = keyName([...prefix, ...issue.path]);
    const input = i.input;
    switch (issue.code) {
      case 'unrecognized_keys': {
        const valid = objectKeys(resolveAt(schema, issue.path as (string | number)[], opts.input, tagOf));
        const tagged = taggedKeys(schema, issue.path as (string | number)[], tagOf, input);
        for (const k of i.keys as string[]) {
          const own = tagged?.keysOf(k);
          if (own) {
            out.push(`${keyName([...prefix, ...issue.path, k])}: not a key when ${tagged!.tag} is ${received(tagged!.value)}, only when it is ${own}; remove it or change ${tagged!.tag}`);
            continue;
          }
          const near = nearest(k, valid);
          out.push(
            `${keyName([...prefix, ...issue.path, k])}: unknown key; ${near ? `did you mean "${near}"? ` : ''}valid keys here: ${valid.join(', ') || '(none)'}`,
          );
        }
        break;
      }
      case 'invalid_type': {
        const want = ARTICLE[i.expected] ?? i.expected;
        let fix = '';
        if (input === undefined) fix = `; add the key ${at.split('.').pop()}: (it is required)`;
        else if ((i.expected === 'number' || i.expected === 'int') && typeof input === 'string' && input.trim() !== '' && !Number.isNaN(Number(input)))
          fix = `; write the number without quotes (${input})`;
        else if (i.expected === 'boolean' && typeof input === 'string' && /^(true|false|yes|no)$/i.test(input))
          fix = `; write true or false without quotes`;
        else if (i.expected === 'array' && typeof input === 'string' && input.includes(','))
          fix = `; write a list, e.g. [${input.split(',').map((x) => x.trim()).map((x) => (x !== '' && !Number.isNaN(Number(x)) ? x : JSON.stringify(x))).join(', ')}]`;
        else if (i.expected === 'array' && input !== null && typeof input !== 'object') fix = `; write a list, e.g. [${JSON.stringify(input)}]`;
        out.push(`${at}: expected ${want}, received ${received(input)}${fix}`);
        break;
      }
      case 'too_small':
      case 'too_big': {
        if (i.origin === 'array') {
          out.push(`${at}: expected a list with ${bound(i)} items, received ${received(input)}`);
        } else if (i.origin === 'string') {
          out.push(`${at}: expected a string of length ${bound(i)}, received ${received(input)}`);
        } else {
          out.push(`${at}: expected a number ${bound(i)}, received ${received(input)}; change it to a value ${bound(i)}`);
        }
        break;
      }
      case 'invalid_value': {
        const values = (i.values as unknown[]).map((v) => JSON.stringify(v));
        const near = typeof input === 'string' ? nearest(input, (i.values as unknown[]).map(String)) : undefined;
        out.push(`${at}: expected one of ${values.join(', ')}, received ${received(input)}${near ? `; did you mean "${near}"?` : ''}`);
        break;
      }
      case 'invalid_format': {
        const fix = i.format === 'regex' ? '; use letters, digits, ".", "_" and "-" only, starting with a letter or digit' : '';
        out.push(`${at}: expected a string matching ${i.pattern ?? i.format}, received ${received(input)}${fix}`);
        break;
      }
      case 'not_multiple_of':
        out.push(`${at}: expected a multiple of ${i.divisor}, received ${received(input)}`);
        break;
      case 'invalid_union': {
        const tagged = taggedOption(issue, schema, tagOf);
        if (tagged?.option) {
          out.push(...formatIssues(tagged.issues, tagged.option, { tagOf, input, prefix: [...prefix, ...issue.path] }));
          break;
        }
        if (tagged) {
          const value = typeof input === 'object' && input !== null ? (input as Record<string, unknown>)[tagged.tag] : undefined;
          out.push(`${keyName([...prefix, ...issue.path, tagged.tag])}: expected ${tagged.values}, received ${received(value)}`);
          break;
        }
        // Each option failed: report what each option wanted, shortest first.
        const wants = new Set<string>();
        for (const errs of i.errors as any[][]) {
          const e = errs[0];
          if (!e) continue;
          if (e.code === 'invalid_value') wants.add((e.values as unknown[]).map((v) => JSON.stringify(v)).join(' | '));
          else if (e.code === 'invalid_type') wants.add(ARTICLE[e.expected] ?? e.expected);
          else if (e.code === 'too_small') wants.add(`${e.origin} ${bound(e)}`);
          else wants.add(e.message);
        }
        out.push(`${at}: expected ${[...wants].join(', or ')}; received ${received(input)}`);
        break;
      }
      default: {
        // a custom check's message is "expected ...; fix": the received value goes between
        const [want, ...fix] = issue.message.split('; ');
        out.push(`${at}: ${want}${input !== undefined ? `, received ${received(input)}` : ''}${fix.length ? `; ${fix.join('; ')}` : ''}`);
      }
    }
  }
  return out;
}

/**
 * The schema at `path` of `root`, where the value validated against `root` is `input`: at a tagged
 * union the option whose tag accepts the input's tag value, elsewhere the first of {@link schemasAt}.
 */
function resolveAt(root: z.ZodType, path: readonly (string | number)[], input: unknown, tagOf: (s: z.ZodType) => string | undefined): z.ZodType | undefined {
  let cur: z.ZodType | undefined = root;
  let value = input;
  for (let i = 0; cur; i++) {
    const u = unwrap(cur);
    const tag = tagOf(u);
    if (tag && typeof value === 'object' && value !== null) {
      const v = (value as Record<string, unknown>)[tag];
      cur = (def(u).options as z.ZodObject[]).find((o) => (def(o).shape[tag] as z.ZodType).safeParse(v).success) ?? cur;
    }
    if (i === path.length) return cur;
    const k = path[i]!;
    cur = schemasAt(cur, [k])[0];
    value = typeof value === 'object' && value !== null ? (value as Record<string | number, unknown>)[k] : undefined;
  }
  return undefined;
}

/** The keys of an object schema (every option's, for an untagged union). */
function objectKeys(s: z.ZodType | undefined): string[] {
  if (!s) return [];
  const d = def(unwrap(s));
  if (d.type === 'object') return Object.keys(d.shape);
  if (d.type === 'union') return [...new Set((d.options as z.ZodType[]).flatMap(objectKeys))];
  return [];
}

/** The values an option's tag schema takes, as words ("demo", or "a checkpoint file"). */
function tagValues(s: z.ZodType): string[] {
  const d = def(unwrap(s));
  if (d.type === 'literal') return (d.values as unknown[]).map((v) => JSON.stringify(v));
  if (d.type === 'enum') return Object.values(d.entries as Record<string, string>).map((v) => JSON.stringify(v));
  if (d.type === 'union') return (d.options as z.ZodType[]).flatMap(tagValues);
  return [(s as any).description ?? (d.type === 'string' ? 'a string' : d.type)];
}

/** The tagged union at `path` (see `formatIssues`) with its tag key and options, else undefined. */
function taggedAt(schema: z.ZodType, path: readonly (string | number)[], tagOf: (s: z.ZodType) => string | undefined): { tag: string; options: z.ZodObject[] } | undefined {
  const at = schemasAt(schema, path)[0];
  const union = at && unwrap(at);
  const tag = union && tagOf(union);
  return union && tag ? { tag, options: def(union).options as z.ZodObject[] } : undefined;
}

/**
 * For unknown keys of an object in a tagged union: which tag values have the key (a backbone's
 * `pretrain` belongs to weights demo and ssl), so the message can say so.
 */
function taggedKeys(schema: z.ZodType, path: readonly (string | number)[], tagOf: (s: z.ZodType) => string | undefined, input: unknown) {
  const t = taggedAt(schema, path, tagOf);
  if (!t || typeof input !== 'object' || input === null) return undefined;
  return {
    tag: t.tag,
    value: (input as Record<string, unknown>)[t.tag],
    keysOf: (k: string): string | undefined => {
      const values = t.options.filter((o) => k in def(o).shape).flatMap((o) => tagValues(def(o).shape[t.tag]));
      return values.length ? values.join(' or ') : undefined;
    },
  };
}

/**
 * For an invalid_union issue of a tagged union (see `formatIssues`): the one option whose tag
 * matched the input, and its issues (paths relative to the union); without `option` when the tag
 * matched none (then `values` says what it may be); undefined for other unions.
 */
function taggedOption(
  issue: z.core.$ZodIssue,
  schema: z.ZodType,
  tagOf: (s: z.ZodType) => string | undefined,
): { tag: string; values: string; option?: z.ZodType; issues: z.core.$ZodIssue[] } | undefined {
  const t = taggedAt(schema, issue.path as (string | number)[], tagOf);
  if (!t) return undefined;
  const errors = (issue as any).errors as z.core.$ZodIssue[][];
  const matched = t.options.map((option, k) => ({ option, issues: errors[k] ?? [] })).filter((o) => !o.issues.some((e) => e.path[0] === t.tag));
  const all = t.options.flatMap((o) => tagValues(def(o).shape[t.tag]));
  const values = all.length > 1 ? `${all.slice(0, -1).join(', ')} or ${all[all.length - 1]}` : all.join('');
  return matched.length === 1 ? { tag: t.tag, values, ...matched[0]! } : { tag: t.tag, values, issues: [] };
}
