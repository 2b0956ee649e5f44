/**
 * What a new user meets first, through the real CLI (node dist/src/cli/main.js, one fresh
 * process per call): usage errors that point to the right help, one-line errors without a
 * backend line above them, errors that say what to do, and `dcd run --help`.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readSafetensors, writeSafetensors } from '../src/models/safetensors.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const ENV = { ...process.env, DCD_BACKEND: 'wasm', DCD_LOG: 'info' };

/** Runs the CLI in a child process (asynchronously: a blocked test worker misses vitest's heartbeats). */
function dcd(args: string[], cwd = ROOT): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env: ENV, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });
}

let tmp: string;
beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npx tsc -p tsconfig.json first`);
  tmp = mkdtempSync(path.join(tmpdir(), 'dcd-cli-usage-'));
});

describe('usage errors', () => {
  it("point to the help of the command being typed, not the top-level list", async () => {
    const sel = await dcd(['select', '--seed', 'a.arrow']);
    expect(sel.code).toBe(2);
    expect(sel.stderr).toBe('dcd: Missing required arguments: pool, k-train, out\nRun `dcd select --help` for usage.\n');
    const fetch = await dcd(['weights', 'fetch']);
    expect(fetch.code).toBe(2);
    expect(fetch.stderr).toMatch(/\nRun `dcd weights fetch --help` for usage\.\n$/);
    // a .check() failure is a usage error too (exit 2, the command's help), not an internal error
    const base = await dcd(['baseline', 'random', '--pool', 'p.arrow', '--out', 'r.arrow']);
    expect(base.code).toBe(2);
    expect(base.stderr).toBe('dcd: baseline random needs --counts SELECTION.arrow\nRun `dcd baseline --help` for usage.\n');
    const top = await dcd([]);
    expect(top.code).toBe(2);
    expect(top.stderr).toMatch(/\nRun `dcd --help` for usage\.\n$/);
  });

  it('select has one name for k_train: --k-train in its help and example (-k an alias)', async () => {
    const h = await dcd(['select', '--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^ +-k, --k-train +debug-train picks per seed/m);
    expect(h.stdout).toMatch(/dcd select .*--k-train 46 --k-val 5/);
    expect(h.stdout).not.toMatch(/--k \d/);
    expect(readFileSync(path.join(ROOT, 'README.md'), 'utf8')).toMatch(/dcd select .* --k-train 46 --k-val 5/);
  });
});

describe('one-line errors', () => {
  it('come alone: the backend line is printed only under --verbose', async () => {
    const args = ['select', '--seed', path.join(tmp, 'missing.arrow'), '--pool', path.join(tmp, 'missing.arrow'), '--k-train', '2', '--out', path.join(tmp, 'x.arrow')];
    const r = await dcd(args);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`dcd: error: ${path.join(tmp, 'missing.arrow')}: no such Arrow file\n`);
    const v = await dcd([...args, '--verbose']);
    expect(v.code).toBe(1);
    expect(v.stderr.split('\n')[0]).toBe('dcd: [debug] backend wasm');
    // dcd run names the backend once, when the run starts: never above a config error
    const bad = path.join(tmp, 'bad.yaml');
    writeFileSync(bad, 'experiment: { name: bad }\ndata: { kind: synthetic }\ntrain: { lr: "0.1" }\n');
    const run = await dcd(['run', bad], tmp);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^dcd: error: .*bad\.yaml: invalid config[^]*config\.train\.lr: expected a number/);
    expect(run.stderr).not.toMatch(/backend/);
  });

  it('a missing --images folder says what to pass, before the backend and weights load', async () => {
    const r = await dcd(['embed', '--backbone', 'resnet_tiny', '--weights', 'random', '--images', 'no-such-pool/', '--out', path.join(tmp, 'e.arrow'), '--verbose'], tmp);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/backend/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`dcd: error: --images no-such-pool/: no such folder or manifest (looked for ${path.join(tmp, 'no-such-pool')}).`);
    expect(r.stderr).toMatch(/Pass a folder of images \(searched recursively: .*\) or a manifest \.arrow written by `dcd data manifest`/);
  });

  it('a truncated safetensors file says so and what to do, whether cut in the data or in the header', async () => {
    const file = path.join(tmp, 'w.safetensors');
    await writeSafetensors(file, { 'a.weight': { dtype: 'F32', shape: [4, 4], data: new Float32Array(16) }, 'b.weight': { dtype: 'F32', shape: [64], data: new Float32Array(64) } });
    const bytes = readFileSync(file);
    const data = path.join(tmp, 'cut-data.safetensors');
    writeFileSync(data, bytes.subarray(0, bytes.length - 100)); // inside b.weight (bytes 64..320 of the data)
    await expect(readSafetensors(data)).rejects.toThrow(/cut-data\.safetensors: truncated safetensors file: \d+ of its \d+ bytes \(\d+\.\d%\); tensor b\.weight and the ones after it are cut off\. An interrupted download or copy\? Download it again/);
    const r = await dcd(['weights', 'inspect', data]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^dcd: error: .*cut-data\.safetensors: truncated safetensors file: .*Download it again \(`dcd weights fetch NAME` resumes and checks sha256\)/);
    const head = path.join(tmp, 'cut-header.safetensors');
    writeFileSync(head, bytes.subarray(0, 40)); // inside the JSON header
    const h = await dcd(['weights', 'inspect', head]);
    expect(h.code).not.toBe(0);
    expect(h.stderr).toMatch(/cut-header\.safetensors: truncated safetensors file: its \d+-byte header runs past the end of the file \(40 bytes\)\. An interrupted download/);
  });
});

describe('dcd run --help', () => {
  it('shows an example and where the results go by default', async () => {
    const r = await dcd(['run', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Examples:\n +dcd run configs\/demo\.yaml +the embedded demo/);
    expect(r.stdout).toContain('by default runs/<experiment.name>/ under the current folder');
    expect(r.stdout).toMatch(/report\/<name>-<hash>\/html\/report\.html: the HTML report/);
  });
});
