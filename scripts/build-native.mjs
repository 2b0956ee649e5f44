#!/usr/bin/env node
// Builds dcd's native CPU backend (native/ -> native/build/Release/dcd_native.node) during
// `npm install`. It never fails the install: when the addon cannot be built it prints one
// line saying why, and dcd falls back to the wasm backend at run time.
//
// Needs: oneDNN headers and library (Debian/Ubuntu: `apt-get install libdnnl-dev`), a C++
// toolchain (g++, make, python3) and node-gyp (npm's bundled copy, node_modules, or npx).
// Set DCD_SKIP_NATIVE=1 to skip the build.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const quiet = process.argv.includes('--quiet');

function skip(why) {
  console.log(`dcd: native backend not built (${why}); dcd will use the wasm backend.`);
  process.exit(0);
}

if (process.env.DCD_SKIP_NATIVE === '1') skip('DCD_SKIP_NATIVE=1');
if (process.platform !== 'linux' || process.arch !== 'x64') skip(`unsupported platform ${process.platform}-${process.arch}`);
if (!existsSync(join(nativeDir, 'binding.gyp'))) skip('native/binding.gyp missing');
if (!existsSync('/usr/include/oneapi/dnnl/dnnl.hpp'))
  skip('oneDNN headers missing: install them with `sudo apt-get install libdnnl-dev`');
for (const tool of ['g++', 'make', 'python3']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) skip(`${tool} not found: install it with apt`);
}

/** node-gyp: from node_modules, else the copy npm bundles, else npx (may download). */
function nodeGyp() {
  const local = join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(local)) return [process.execPath, local];
  const fromNpm = process.env.npm_config_node_gyp; // set by npm for install scripts
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  const npmCli = process.env.npm_execpath;
  const candidates = [];
  if (npmCli) candidates.push(join(dirname(npmCli), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  for (const c of candidates) if (existsSync(c)) return [process.execPath, c];
  return ['npx', '--yes', 'node-gyp'];
}

// Prefer the installed Node headers (no download needed) when they match this Node.
function nodeDirArgs() {
  for (const dir of [join(dirname(process.execPath), '..'), '/usr', '/usr/local']) {
    const h = join(dir, 'include', 'node', 'node_version.h');
    if (!existsSync(h)) continue;
    const text = readFileSync(h, 'utf8');
    const v = ['MAJOR', 'MINOR', 'PATCH'].map((k) => new RegExp(`#define NODE_${k}_VERSION (\\d+)`).exec(text)?.[1]);
    if (`v${v.join('.')}` === process.version) return [`--nodedir=${dir}`];
  }
  return [];
}

const [cmd, ...pre] = nodeGyp();
const args = [...pre, 'rebuild', ...nodeDirArgs()];
const r = spawnSync(cmd, args, { cwd: nativeDir, encoding: 'utf8', env: { ...process.env, JOBS: '2' } });
if (r.error) skip(`node-gyp could not run: ${r.error.message}`);
if (r.status !== 0) {
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /error/i.test(l));
  skip(`node-gyp failed: ${(lines[0] ?? `exit code ${r.status}`).trim().slice(0, 200)}`);
}
const built = join(nativeDir, 'build', 'Release', 'dcd_native.node');
if (!existsSync(built)) skip(`node-gyp finished but ${built} is missing`);
if (!quiet) console.log(`dcd: native backend built (${built})`);
