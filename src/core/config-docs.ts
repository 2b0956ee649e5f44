/**
 * The config reference (docs/config.md), generated from the config schema itself: every key
 * with its type, default and the description the schema gives it. `npm run docs` writes it;
 * test/config-docs.test.ts fails when the file and the schema disagree.
 */
import type { z } from 'zod';
import { ConfigSchema, isPathSchema } from './config.js';
import { def } from './schema-walk.js';

type AnySchema = z.ZodType;

/** One documented key. */
export interface ConfigKeyDoc {
  /** Dotted path; `[]` steps into a list's items, `<name>` into a map's values. */
  key: string;
  type: string;
  /** The default as YAML-ish text; '' when the key has none. */
  default: string;
  required: boolean;
  description: string;
}

const WRAPPERS = new Set(['optional', 'default', 'prefault', 'nullable', 'readonly']);

/** A schema's own description (zod's `.describe()`). */
function descriptionOf(s: AnySchema): string | undefined {
  return (s as { description?: string }).description;
}

/** Unwraps optional/default/... layers, collecting the outermost description and the default. */
function peel(s: AnySchema): { inner: AnySchema; description?: string; default?: unknown; hasDefault: boolean; optional: boolean } {
  let cur = s;
  let description = descriptionOf(s);
  let dflt: unknown;
  let hasDefault = false;
  let optional = false;
  for (let i = 0; i < 20; i++) {
    const d = def(cur);
    if (!WRAPPERS.has(d.type) && d.type !== 'pipe') break;
    if (d.type === 'default' && !hasDefault) {
      hasDefault = true;
      dflt = typeof d.defaultValue === 'function' ? d.defaultValue() : d.defaultValue;
    }
    if (d.type === 'optional' || d.type === 'prefault') optional = true;
    cur = d.type === 'pipe' ? d.in : d.innerType;
    description ??= descriptionOf(cur);
  }
  return { inner: cur, ...(description !== undefined ? { description } : {}), ...(hasDefault ? { default: dflt } : {}), hasDefault, optional };
}

function literal(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** A short type name of a schema: `number (integer ≥ 0)`, `` `a` \| `b` ``, `list of string`, ... */
export function typeName(s: AnySchema): string {
  if (isPathSchema(s)) return 'path';
  const { inner } = peel(s);
  if (isPathSchema(inner)) return 'path';
  const d = def(inner);
  switch (d.type) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'boolean';
    case 'number': {
      const checks = ((d.checks ?? []) as { _zod: { def: { check: string; value?: number; inclusive?: boolean; format?: string } } }[]).map((c) => c._zod.def);
      const parts: string[] = [];
      if (checks.some((c) => c.check === 'number_format' && /int/.test(c.format ?? ''))) parts.push('integer');
      for (const c of checks) {
        if (c.check === 'greater_than') parts.push(`${c.inclusive ? '≥' : '>'} ${c.value}`);
        if (c.check === 'less_than') parts.push(`${c.inclusive ? '≤' : '<'} ${c.value}`);
      }
      return parts.length ? `number (${parts.join(', ')})` : 'number';
    }
    case 'enum':
      return Object.values(d.entries as Record<string, string>).map((v) => `\`${v}\``).join(' | ');
    case 'literal':
      return (d.values as unknown[]).map((v) => `\`${literal(v)}\``).join(' | ');
    case 'array':
      return `list of ${typeName(d.element)}`;
    case 'record':
      return `map of ${typeName(d.valueType)}`;
    case 'union':
      return (d.options as AnySchema[]).map(typeName).join(' | ');
    case 'object':
      return 'section';
    case 'unknown':
    case 'any':
      return 'any';
    default:
      return String(d.type);
  }
}

/** Every key under `s`, depth first, in schema order; `self` adds the row of `key` itself. */
function walk(s: AnySchema, key: string, out: ConfigKeyDoc[], self = true): void {
  const p = peel(s);
  const d = def(p.inner);
  const isObject = d.type === 'object' && !isPathSchema(p.inner);
  if (key && self) {
    out.push({
      key,
      type: typeName(s),
      default: p.hasDefault && !isObject ? literal(p.default) : '',
      required: !p.optional && !p.hasDefault,
      description: p.description ?? '',
    });
  }
  const child = (k: string) => (key ? `${key}.${k}` : k);
  if (isObject) {
    const shape = d.shape as Record<string, AnySchema>;
    const names = Object.keys(shape);
    // three or more keys that share one schema (executor.slurm's stage kinds) are documented once
    for (let i = 0; i < names.length; ) {
      let j = i + 1;
      while (j < names.length && peel(shape[names[j]!]!).inner === peel(shape[names[i]!]!).inner) j++;
      if (j - i >= 3) {
        const at = out.length;
        walk(shape[names[i]!]!, child('<key>'), out);
        const row = out[at]!;
        row.description = `one section per key, \`<key>\` being any of ${names.slice(i, j).map((n) => `\`${n}\``).join(', ')}${row.description ? `: ${row.description}` : ''}`;
      }
      else for (let k = i; k < j; k++) walk(shape[names[k]!]!, child(names[k]!), out);
      i = j;
    }
  } else if (d.type === 'array') {
    // a list of sections (backbones): the keys of one item
    const t = def(peel(d.element).inner).type;
    if (t === 'object' || t === 'union') walk(d.element, `${key}[]`, out, false);
  } else if (d.type === 'union') {
    // sections among the options (a backbone per `weights` kind): their keys under this key, one
    // row per key, merged over the options that have it
    const rows: ConfigKeyDoc[] = [];
    for (const o of d.options as AnySchema[]) if (def(peel(o).inner).type === 'object') walk(o, key, rows, false);
    const merged = new Map<string, ConfigKeyDoc>();
    for (const r of rows) {
      const m = merged.get(r.key);
      if (!m) {
        merged.set(r.key, { ...r });
        continue;
      }
      const types = [...new Set([...m.type.split(' | '), ...r.type.split(' | ')])];
      m.type = [...types.filter((x) => x !== 'path'), ...types.filter((x) => x === 'path')].join(' | ');
      m.default ||= r.default;
      m.required &&= r.required;
      if (r.description && !m.description.split(' / ').includes(r.description)) m.description = m.description ? `${m.description} / ${r.description}` : r.description;
    }
    out.push(...merged.values());
  }
}

/** Every key of the experiment config, in schema order. */
export function configKeys(): ConfigKeyDoc[] {
  const out: ConfigKeyDoc[] = [];
  walk(ConfigSchema as unknown as AnySchema, '', out);
  return out;
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** docs/config.md: one table per top-level section. */
export function configReference(): string {
  const keys = configKeys();
  const lines = [
    '# Config reference',
    '',
    '<!-- Generated by `npm run docs` from the schema in src/core/config.ts; do not edit by hand',
    '     (test/config-docs.test.ts fails when this file and the schema disagree). -->',
    '',
    'A dcd config is one YAML file (`dcd run CONFIG`), validated against one schema: an unknown key is an',
    'error that names the nearest valid one. Paths are relative to the file that contains them;',
    '`extends:` merges base files underneath, `vars:` fills `${name}`, and `--set key=value` overrides any',
    'key from the command line (`--set key=null` restores its default). `dcd init` writes a config for',
    'your own folder dataset.',
    '',
    'In the key column, `[]` steps into the items of a list and `<key>` stands for each of the keys its row lists.',
    'Types: `path` is a file or folder, `section` holds the keys below it; "required" marks keys without a default.',
    '',
  ];
  const top = keys.filter((k) => !k.key.includes('.') && !k.key.includes('['));
  for (const t of top) {
    const below = keys.filter((k) => k.key.startsWith(`${t.key}.`) || k.key.startsWith(`${t.key}[]`));
    lines.push(`## \`${t.key}\``, '');
    lines.push('| key | type | default | meaning |', '|---|---|---|---|');
    for (const k of [t, ...below]) {
      const dflt = k.default !== '' ? `\`${cell(k.default)}\`` : k.required ? 'required' : '';
      lines.push(`| \`${cell(k.key)}\` | ${cell(k.type)} | ${dflt} | ${cell(k.description)} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}
