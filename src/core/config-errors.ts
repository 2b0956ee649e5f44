/**
 * Turns zod issues into one line each: the key path, what was expected, what was
 * received, and a fix (`config.train.lr: expected a number > 0, received "0.1"; ...`).
 * An unknown key names the nearest valid one by edit distance.
 */
import type { z } from 'zod';
import { keysAt } from './schema-walk.js';

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

/** One message line per issue; `schema` is the root schema, for key suggestions. */
export function formatIssues(issues: readonly z.core.$ZodIssue[], schema: z.ZodType): string[] {
  const out: string[] = [];
  for (const issue of issues) {
    const i = issue as any;
    const at = keyName(issue.path);
    const input = i.input;
    switch (issue.code) {
      case 'unrecognized_keys': {
        const valid = keysAt(schema, issue.path as (string | number)[]);
        for (const k of i.keys as string[]) {
          const near = nearest(k, valid);
          out.push(
            `${keyName([...issue.path, k])}: unknown key; ${near ? `did you mean "${near}"? ` : ''}valid keys here: ${valid.join(', ') || '(none)'}`,
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
      default:
        out.push(`${at}: ${issue.message}${input !== undefined ? `, received ${received(input)}` : ''}`);
    }
  }
  return out;
}
