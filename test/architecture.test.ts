/**
 * The source tree's shape: no import circle in src/ (type-only imports count too), src/models
 * below training (it imports only src/core and src/backends), and the CLI entry point
 * running when started through a symlink (npm link, npm install -g, node_modules/.bin) or npx.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const SRC = path.join(ROOT, 'src');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');

/** Every .ts file under src/ with the src/ files it imports (static, re-export and dynamic imports). */
function importGraph(): Map<string, string[]> {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = path.join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) files.push(p);
    }
  };
  walk(SRC);
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    const deps: string[] = [];
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g)) {
      const spec = (m[1] ?? m[2])!;
      deps.push(path.join(path.dirname(f), spec.replace(/\.js$/, '.ts')));
    }
    graph.set(f, deps);
  }
  return graph;
}

/** The import circles of `graph`, each as the list of files around it. */
function circles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string) => {
    state.set(n, 'open');
    stack.push(n);
    for (const d of graph.get(n) ?? []) {
      if (!graph.has(d)) continue;
      if (state.get(d) === 'open') found.push([...stack.slice(stack.indexOf(d)), d].map((p) => path.relative(ROOT, p)));
      else if (!state.has(d)) visit(d);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return found;
}

describe('source layout', () => {
  it('the import graph finds imports and circles (checked on a made-up graph)', () => {
    const g = new Map([
      ['/a', ['/b']],
      ['/b', ['/c']],
      ['/c', ['/a']],
      ['/d', ['/a']],
    ]);
    expect(circles(g).map((c) => c.length)).toEqual([4]);
    const real = importGraph();
    // a file known to import another, so the pattern does match this code base's imports
    expect(real.get(path.join(SRC, 'pipeline/experiment.ts'))).toContain(path.join(SRC, 'pipeline/stages/index.ts'));
  });

  it('has no import circle in src/', () => {
    expect(circles(importGraph())).toEqual([]);
  });

  it('src/models (the registry and every architecture, the demo\'s small CNN too) imports only src/core and src/backends: training models is src/train\'s job', () => {
    const models = path.join(SRC, 'models') + path.sep;
    const allowed = ['models', 'core', 'backends'].map((d) => path.join(SRC, d) + path.sep);
    const outside = [...importGraph()]
      .filter(([f]) => f.startsWith(models))
      .flatMap(([f, deps]) => deps.filter((d) => !allowed.some((a) => d.startsWith(a))).map((d) => `${path.relative(ROOT, f)} → ${path.relative(ROOT, d)}`));
    expect(outside).toEqual([]);
    // the rule does see imports of src/models: the registry imports the small CNN
    expect(importGraph().get(path.join(SRC, 'models', 'registry.ts'))).toContain(path.join(SRC, 'models', 'small-cnn.ts'));
  });

  it('keeps the layer order: core imports only core; backends (backend choice included) only core and backends; neither reaches pipeline or cli', () => {
    const dirOf = (f: string) => path.relative(SRC, f).split(path.sep)[0]!;
    const allowed: Record<string, string[]> = { core: ['core'], backends: ['core', 'backends'] };
    const upward: string[] = [];
    for (const [f, deps] of importGraph()) {
      const ok = allowed[dirOf(f)];
      if (!ok) continue;
      for (const d of deps) if (!ok.includes(dirOf(d))) upward.push(`${path.relative(ROOT, f)} -> ${path.relative(ROOT, d)}`);
    }
    expect(upward).toEqual([]);
    // the check sees the layers it guards: backend choice lives in backends and imports core
    const chain = importGraph().get(path.join(SRC, 'backends/chain.ts'));
    expect(chain).toContain(path.join(SRC, 'core/errors.ts'));
    expect(existsSync(path.join(SRC, 'core/backend.ts'))).toBe(false);
  });
});

describe('the dcd command', () => {
  it.runIf(existsSync(CLI))('prints its help when started through a symlinked bin', () => {
    const bin = mkdtempSync(path.join(tmpdir(), 'dcd-bin-'));
    symlinkSync(CLI, path.join(bin, 'dcd'));
    const out = execFileSync(process.execPath, [path.join(bin, 'dcd'), '--help'], { encoding: 'utf8' });
    expect(out).toMatch(/^dcd <command>/);
    expect(out).toContain('dcd run <config>');
  }, 60_000);

  it.runIf(existsSync(CLI))('prints its help through `npx dcd` in the checkout', () => {
    // npx runs the bin file itself, and only sets its mode when it (re)links the checkout into its
    // cache: a second build in the same path must leave it executable (`npm run build` does).
    expect((statSync(CLI).mode & 0o111).toString(8), `${CLI} is not executable`).not.toBe('0');
    const out = execFileSync('npx', ['--no-install', 'dcd', '--help'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } });
    expect(out).toMatch(/^dcd <command>/);
    expect(out).toContain('dcd run <config>');
  }, 60_000);
});
