/**
 * Every command's `--help` reads like a man page's end: an Examples section, then the line
 * naming the page that documents the command, and every page it names exists in the repository.
 * The list below is every command path; `dcd --help` must list no top-level command it lacks.
 */
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { spawnAsync } from './spawn-async.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');

const COMMANDS = [
  '', 'run', 'sweep', 'init', 'export',
  'weights', 'weights fetch', 'weights inspect', 'weights convert', 'weights list',
  'embed', 'embed merge',
  'data', 'data manifest', 'data summary', 'data check',
  'pool', 'pool queries', 'pool search', 'pool download',
  'filter', 'select', 'slices', 'baseline', 'train', 'eval', 'failures', 'report', 'retention', 'bench', 'bench similarity',
];

const help = (cmd: string) => spawnAsync('node', [CLI, ...cmd.split(' ').filter(Boolean), '--help'], { cwd: ROOT, timeout: 120_000 });

describe('--help of every command', () => {
  it('ends with an example and the doc link, and the linked pages exist', async () => {
    const bad: string[] = [];
    const outs = new Map<string, string>();
    // a few at a time: each is a fresh Node process
    for (let i = 0; i < COMMANDS.length; i += 6) {
      const batch = COMMANDS.slice(i, i + 6);
      const rs = await Promise.all(batch.map(help));
      batch.forEach((c, j) => {
        const r = rs[j]!;
        outs.set(c, r.stdout);
        const name = `dcd ${c}`.trim();
        if (r.status !== 0) return void bad.push(`${name}: exit ${r.status} ${r.stderr.slice(0, 200)}`);
        const ex = r.stdout.indexOf('\nExamples:\n');
        const doc = r.stdout.lastIndexOf('\nDocumentation: ');
        if (ex < 0) bad.push(`${name}: no Examples section`);
        if (doc < 0 || doc < ex) bad.push(`${name}: no "Documentation:" line after the examples`);
        if (r.stdout.slice(doc).trim().split('\n').length > 2) bad.push(`${name}: the doc link is not the end of the help`);
        for (const page of r.stdout.slice(doc).match(/[\w./-]+\.md\b/g) ?? []) if (!existsSync(path.join(ROOT, page))) bad.push(`${name}: links ${page}, which does not exist`);
      });
    }
    expect(bad).toEqual([]);
    // the top-level list names no command this test does not cover
    const listed = [...outs.get('')!.matchAll(/^ {2}dcd ([a-z]+)/gm)].map((m) => m[1]!);
    expect(listed.length).toBeGreaterThan(10);
    expect(listed.filter((c) => !COMMANDS.includes(c))).toEqual([]);
  }, 600_000);
});
