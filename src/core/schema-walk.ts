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

/** Every schema at `keyPath`: one, or one per option of each union on the way that has the key. */
export function schemasAt(root: AnySchema, keyPath: readonly (string | number)[]): AnySchema[] {
  if (!keyPath.length) return [root];
  const [k, ...rest] = keyPath;
  const d = def(unwrap(root));
  if (d.type === 'union') return (d.options as AnySchema[]).flatMap((o) => schemasAt(o, keyPath));
  const next = d.type === 'object' ? d.shape[k as string] : d.type === 'array' ? d.element : d.type === 'record' ? d.valueType : undefined;
  return next ? schemasAt(next, rest) : [];
}
