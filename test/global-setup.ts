/**
 * Every test file's temporary folders (mkdtemp under os.tmpdir()) go into one folder per
 * `vitest run`, removed at the end: TMPDIR is set here, before the worker processes (and the
 * CLI processes the tests spawn) start, and they inherit it. DCD_KEEP_TEST_TMP=1 keeps it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(path.join(tmpdir(), 'dcd-tests-'));
  process.env.TMPDIR = dir;
  return () => {
    if (process.env.DCD_KEEP_TEST_TMP === '1') console.log(`dcd tests: temporary files kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  };
}
