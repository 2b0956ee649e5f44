import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** Repository root (works from both `src/` under vitest and `dist/src/` after tsc). */
export const PACKAGE_ROOT: string = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'dcd') return dir;
    } catch {
      /* keep climbing */
    }
    dir = path.dirname(dir);
  }
  throw new Error('dcd: cannot locate package.json above ' + fileURLToPath(import.meta.url));
})();

/** The dcd version from package.json, written into every artifact's metadata. */
export const DCD_VERSION: string = (
  JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;
