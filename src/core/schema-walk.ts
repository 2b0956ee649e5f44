/** Walking a zod v4 schema by key path (its internals: `_zod.def`), for config errors and path fields. */
import type { z } from 'zod';

type AnySchema = z.ZodType;

/** A schema's definition (zod v4 internals). */
export function def(s: AnySchema): any {
  return (s as any)._zod.def;
}

/** Strips optional/default/nullable/pipe wrappers. */
export function unwrap(s: AnySchema): AnySchema {
  let cur = s;
  for (let i = 0; i < 20; i++) {
    const d = def(cur);
    if (d.type === 'optional' || d.type === 'default' || d.type === 'nullable' || d.type === 'prefault' || d.type === 'readonly') cur = d.innerType;
    else if (d.type === 'pipe') cur = d.in;
    else return cur;
  }
  return cur;
}

/** The schema at `keyPath` (string keys; numbers step into arrays and records), or undefined. */
export function schemaAt(root: AnySchema, keyPath: readonly (string | number)[]): AnySchema | undefined {
  let cur: AnySchema | undefined = root;
  for (const k of keyPath) {
    if (!cur) return undefined;
    const d = def(unwrap(cur));
    if (d.type === 'object') cur = d.shape[k as string];
    else if (d.type === 'array') cur = d.element;
    else if (d.type === 'record') cur = d.valueType;
    else if (d.type === 'union') {
      cur = (d.options as AnySchema[]).map((o) => schemaAt(o, [k])).find((x) => x !== undefined);
    } else return undefined;
  }
  return cur;
}

/** Every schema at `keyPath`: one, or one per option of each union on the way that has the key. */
export function schemasAt(root: AnySchema, keyPath: readonly (string | number)[]): AnySchema[] {
  if (!keyPath.length) return [root];
  const [k, ...rest] = keyPath;
  const d = def(unwrap(root));
  if (d.type === 'union') return (d.options as AnySchema[]).flatMap((o) => schemasAt(o, keyPath));
  const next = d.type === 'object' ? d.shape[k as string] : d.type === 'array' ? d.element : d.type === 'record' ? d.valueType : undefined;
  return next ? schemasAt(next, rest) : [];
}

/** The description of `s`: its own, else the first one found on the wrappers inside it (optional, default, ...). */
export function descriptionOf(s: AnySchema): string | undefined {
  let cur = s;
  for (let i = 0; i < 20; i++) {
    if (cur.description) return cur.description;
    const d = def(cur);
    if (d.type === 'optional' || d.type === 'default' || d.type === 'nullable' || d.type === 'prefault' || d.type === 'readonly') cur = d.innerType;
    else if (d.type === 'pipe') cur = d.in;
    else return undefined;
  }
  return undefined;
}

/**
 * Every key of `root` (objects inside arrays, records and union options included) as a dotted
 * path (`backbones[].pretrain.crops.globalSize`), with its description.
 */
export function keysWithDescriptions(root: AnySchema, at = ''): { key: string; description: string | undefined }[] {
  const d = def(unwrap(root));
  if (d.type === 'object')
    return Object.entries(d.shape as Record<string, AnySchema>).flatMap(([k, v]) => {
      const key = at ? `${at}.${k}` : k;
      return [{ key, description: descriptionOf(v) }, ...keysWithDescriptions(v, key)];
    });
  if (d.type === 'array') return keysWithDescriptions(d.element, `${at}[]`);
  if (d.type === 'record') return keysWithDescriptions(d.valueType, `${at}.*`);
  if (d.type === 'union') {
    const seen = new Map<string, string | undefined>();
    for (const o of d.options as AnySchema[]) for (const e of keysWithDescriptions(o, at)) if (!seen.get(e.key)) seen.set(e.key, e.description);
    return [...seen].map(([key, description]) => ({ key, description }));
  }
  return [];
}
