/**
 * Inputs that used to load as silent garbage or crash, each refused with a clear error naming the
 * file (or key) through the CLI where the user meets it (issue 28; each case passed or crashed on
 * fd5d8b6): safetensors headers the format forbids, NaN weights, pickles that name code, 0-row and
 * all-zero embedding files, pool paths through symlinks, a full disk, and the small gaps (an empty
 * train class folder, `--seeds=`, list hints, the duplicate-backbone message, a config path that is a
 * folder, downloads that do not decode).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { captureCli } from './cli-capture.js';
import { buildTable, writeArrowFile } from '../src/core/arrow.js';
import { mulberry32 } from '../src/core/rng.js';
import { readCheckpoint, flattenTensors, materialize } from '../src/models/checkpoint.js';
import { decodeSafetensors, encodeSafetensors, type SafetensorsInput } from '../src/models/safetensors.js';
import { readPoolList, readFolderDataset } from '../src/data/folders.js';
import { downloadPool } from '../src/data/download.js';
import { spawnAsync } from './spawn-async.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const FIX = path.join(ROOT, 'test/fixtures/parity');
const TINY = path.join(ROOT, 'test/fixtures/pipeline/tiny.yaml');
const dir = mkdtempSync(path.join(tmpdir(), 'dcd-hardening-'));
const f = (n: string) => path.join(dir, n);

const cli = (args: string[]) => captureCli([...args, '--backend', 'cpu']);

/** A safetensors file from a header object and data bytes as given (no checks). */
function rawSafetensors(header: object, data: Uint8Array): Uint8Array {
  const h = Buffer.from(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/** resnet_bottleneck_tiny's state dict as safetensors inputs (float tensors F32, the rest I64). */
async function tinyStateDict(): Promise<Record<string, SafetensorsInput>> {
  const ck = await readCheckpoint(path.join(FIX, 'resnet_bottleneck_tiny.pth'));
  const out: Record<string, SafetensorsInput> = {};
  for (const [k, leaf] of flattenTensors(ck.tree)) {
    const t = materialize(leaf);
    out[k] = { dtype: t.dtype === 'F32' ? 'F32' : t.dtype === 'I64' ? 'I64' : 'I32', shape: t.shape, data: t.data as Float32Array };
  }
  return out;
}

const convert = (file: string) => cli(['weights', 'convert', file, '--backbone', 'resnet_bottleneck_tiny', '--to', 'safetensors', '--out', f('out.safetensors')]);

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('checkpoints', () => {
  it('safetensors: overlapping ranges, a negative offset, a hole, trailing bytes and a shape/length mismatch are refused, naming the tensor', async () => {
    const a = new Float32Array([1, 2, 3, 4]);
    const bytes = new Uint8Array(a.buffer);
    const bad = (header: object, data = bytes) => () => decodeSafetensors(rawSafetensors(header, data), 'x.safetensors');
    expect(bad({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } })).toThrow(/x\.safetensors: safetensors header: tensor [wb] \(bytes 0\.\.16\) overlaps the tensor before it/);
    expect(bad({ w: { dtype: 'F32', shape: [4], data_offsets: [-8, 8] } })).toThrow(/tensor w has data_offsets \[-8,8\], expected \[begin, end\] with 0 ≤ begin ≤ end/);
    expect(bad({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } })).toThrow(/bytes 0\.\.8 before tensor w belong to no tensor/);
    expect(bad({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } })).toThrow(/the tensors end at data byte 8, but the file has 16 data bytes/);
    expect(bad({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } })).toThrow(/tensor w \(F32 \[3\]\) spans bytes 0\.\.16 \(16 bytes\), but its shape needs 12/);
    expect(bad({ w: { dtype: 'F32', shape: [2.5], data_offsets: [0, 16] } })).toThrow(/tensor w has shape \[2\.5\]/);
    expect(bad([1, 2])).toThrow(/expected a JSON object of tensors/);
    expect(decodeSafetensors(rawSafetensors({ __metadata__: { a: 'b' }, w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, bytes)).tensors.get('w')!.data).toEqual(a);

    // through the CLI: bn1.bias aliasing bn1.weight (it loaded on fd5d8b6); its own bytes are then no tensor's
    const sd = await tinyStateDict();
    const good = encodeSafetensors(sd);
    const hlen = Number(new DataView(good.buffer).getBigUint64(0, true));
    const header = JSON.parse(Buffer.from(good.subarray(8, 8 + hlen)).toString());
    header['bn1.bias'].data_offsets = header['bn1.weight'].data_offsets;
    writeFileSync(f('alias.safetensors'), rawSafetensors(header, good.subarray(8 + hlen)));
    const r = await convert(f('alias.safetensors'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/alias\.safetensors: safetensors header: bytes 0\.\.\d+ before tensor bn1\.num_batches_tracked belong to no tensor; the file is corrupt: export or download it again/);
  });

  it('a checkpoint with NaN or Inf weights is refused, naming each tensor', async () => {
    const sd = await tinyStateDict();
    (sd['conv1.weight']!.data as Float32Array)[5] = NaN;
    (sd['fc.bias']!.data as Float32Array)[0] = -Infinity;
    writeFileSync(f('nan.safetensors'), encodeSafetensors(sd));
    const r = await convert(f('nan.safetensors'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/nan\.safetensors: non-finite weights; nothing was loaded\.\n {2}conv1\.weight: 1 of \d+ values are NaN or ±Inf \(first at flat index 5: NaN\)\n {2}fc\.bias: 1 of \d+ values .*-Infinity/);
    expect(existsSync(f('out.safetensors'))).toBe(false);
  });

  it('a pickle naming posix.system or builtins.eval is refused with the key (legacy format), whether beside the weights or in place of one', async () => {
    const u32 = (n: number) => Buffer.from(Uint32Array.of(n).buffer);
    const str = (s: string) => Buffer.concat([Buffer.from('X'), u32(Buffer.byteLength(s)), Buffer.from(s)]);
    const call = (mod: string, name: string, arg: string) => Buffer.concat([Buffer.from(`c${mod}\n${name}\n`), str(arg), Buffer.from([0x85]), Buffer.from('R')]);
    const magic = Buffer.concat([Buffer.from([0x80, 0x02, 0x8a, 0x0a]), Buffer.from('6c fc 9c 46 f9 20 6a a8 50 19'.split(' ').map((h) => parseInt(h, 16))), Buffer.from('.')]);
    const proto = Buffer.from([0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e]); // 1001
    const sysInfo = Buffer.from([0x80, 0x02, 0x7d, 0x2e]); // {}
    const obj = Buffer.concat([Buffer.from([0x80, 0x02, 0x7d]), str('extra'), call('posix', 'system', 'echo hi'), Buffer.from('s'), str('conv1.weight'), call('builtins', 'eval', '1+1'), Buffer.from('s.')]);
    const keys = Buffer.from([0x80, 0x02, 0x5d, 0x2e]); // []
    writeFileSync(f('evil.pth'), Buffer.concat([magic, proto, sysInfo, obj, keys]));
    const r = await cli(['weights', 'inspect', f('evil.pth')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/evil\.pth: refused: the pickle names Python global\(s\) outside the allow-list .*posix\.system at key extra; builtins\.eval at key conv1\.weight\. Nothing was run or loaded/);
    // DINO's full checkpoints (argparse.Namespace beside the weights) still read
    expect((await cli(['weights', 'inspect', path.join(FIX, 'vit_fixture_full.pth')])).code).toBe(0);
  });
});

describe('embedding files', () => {
  const DIM = 4;
  const META = { 'dcd.backbone': 'toy', 'dcd.weights_sha256': 'abc' };
  const table = (prefix: string, n: number, zero = false) => {
    const rnd = mulberry32(n + 1);
    return buildTable(
      {
        id: { kind: 'utf8', values: Array.from({ length: n }, (_, i) => `${prefix}${i}`) },
        embedding: { kind: 'embedding', values: Float32Array.from({ length: n * DIM }, () => (zero ? 0 : rnd())), dim: DIM },
        label: { kind: 'int32', values: Array.from({ length: n }, (_, i) => i % 2) },
      },
      META,
    );
  };
  beforeAll(async () => {
    await writeArrowFile(f('S.arrow'), table('s', 4));
    await writeArrowFile(f('S0.arrow'), table('s', 0));
    await writeArrowFile(f('P.arrow'), table('p', 40));
    await writeArrowFile(f('P0.arrow'), table('p', 0));
    await writeArrowFile(f('Pz.arrow'), table('p', 40, true));
  });

  it('a 0-row seed or pool file and an all-zero pool are refused by dcd select, naming the file', async () => {
    const sel = (seed: string, pool: string) => cli(['select', '--seed', f(seed), '--pool', f(pool), '--k-train', '2', '--out', f('sel.arrow')]);
    const s0 = await sel('S0.arrow', 'P.arrow');
    expect([s0.code, s0.err]).toEqual([1, expect.stringMatching(/S0\.arrow \(seed\): no rows; a seed set must hold at least one embedding/)]);
    const p0 = await sel('S.arrow', 'P0.arrow');
    expect([p0.code, p0.err]).toEqual([1, expect.stringMatching(/P0\.arrow \(pool\): no rows/)]);
    const pz = await sel('S.arrow', 'Pz.arrow');
    expect([pz.code, pz.err]).toEqual([1, expect.stringMatching(/Pz\.arrow \(pool\): all 40 embeddings are zero vectors/)]);
    expect(existsSync(f('sel.arrow'))).toBe(false);
  });

  it('dcd filter with a 0-row test file is refused (the leakage filter would do nothing), naming it', async () => {
    const r = await cli(['filter', '--pool', f('P.arrow'), '--test', f('S.arrow'), f('S0.arrow'), '--train', f('P.arrow'), '--val', f('S.arrow'), '--out', f('filt.arrow')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/S0\.arrow \(test\): no rows/);
  });
});

describe('folder data', () => {
  it('pool paths may not leave the list folder through a symlinked file or folder, nor by a dangling link', async () => {
    const root = f('pool-sym');
    const outside = f('outside');
    mkdirSync(path.join(root, 'imgs'), { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(path.join(outside, 'x.png'), 'x');
    writeFileSync(path.join(root, 'imgs', 'ok.png'), 'x');
    symlinkSync(path.join(outside, 'x.png'), path.join(root, 'imgs', 'link.png'));
    symlinkSync(outside, path.join(root, 'dirlink'));
    symlinkSync('/etc/passwd', path.join(root, 'passwd.png'));
    symlinkSync(path.join(outside, 'gone.png'), path.join(root, 'dangling.png'));
    symlinkSync(path.join(root, 'imgs'), path.join(root, 'inner')); // stays inside: fine
    const list = (name: string, rows: string) => {
      writeFileSync(path.join(root, name), `path,weak_label\n${rows}`);
      return path.join(root, name);
    };
    expect((await readPoolList(list('ok.csv', 'imgs/ok.png,a\ninner/ok.png,b\n'), ['a', 'b'])).length).toBe(2);
    for (const [name, p] of [['l1.csv', 'imgs/link.png'], ['l2.csv', 'dirlink/x.png'], ['l3.csv', 'passwd.png'], ['l4.csv', 'dangling.png']] as const)
      await expect(readPoolList(list(name, `imgs/ok.png,a\n${p},b\n`), ['a', 'b'])).rejects.toThrow(new RegExp(`${name.replace('.', '\\.')}:3: path "${p.replace('.', '\\.')}" leaves the list's folder .* \\(by name or through a symlink\\)`));
  });

  it('without classes.txt an empty train/<class>/ folder is refused, naming it', async () => {
    const root = f('folders');
    for (const set of ['train', 'test', 'mfreq', 'complement'])
      for (const c of ['cat', 'dog']) {
        mkdirSync(path.join(root, set, c), { recursive: true });
        if (!(set === 'train' && c === 'dog')) await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).png().toFile(path.join(root, set, c, 'a.png'));
      }
    const spec = { train: path.join(root, 'train'), test: path.join(root, 'test'), mfreq: path.join(root, 'mfreq'), complement: path.join(root, 'complement'), pool: path.join(root, 'pool.csv') };
    await expect(readFolderDataset(spec as never)).rejects.toThrow(/data\.folders\.train: class folder\(s\) .*train\/dog hold no images; without a classes\.txt every train folder is a class/);
  });
});

describe('config and flags', () => {
  it('a config path that is a folder, seeds "0,1", --seeds= and a duplicate backbone get messages that say what to do', async () => {
    const folder = await cli(['run', dir, '--dry-run']);
    expect(folder.err).toMatch(/: is a folder; expected a YAML config file/);
    writeFileSync(f('seeds.yaml'), `extends: ${TINY}\nseeds: "0,1"\n`);
    expect((await cli(['run', f('seeds.yaml'), '--dry-run'])).err).toMatch(/config\.seeds: expected a list, received "0,1"; write a list, e\.g\. \[0, 1\]/);
    const empty = await cli(['run', TINY, '--seeds=', '--dry-run']);
    expect([empty.code, empty.err]).toEqual([2, expect.stringMatching(/--seeds: expected comma-separated integers/)]);
    writeFileSync(f('dup.yaml'), `extends: ${TINY}\nbackbones:\n  - { name: resnet_tiny, weights: random }\n  - { name: resnet_tiny, weights: random }\n`);
    expect((await cli(['run', f('dup.yaml'), '--dry-run'])).err).toMatch(/config\.backbones: expected one row label per backbone, but two backbones have the label \\?"resnet_tiny\\?"; give one of them another \(label: NAME\)\n/);
  });
});

describe('dcd pool download', () => {
  let server: Server;
  let base = '';
  beforeAll(async () => {
    const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#336699' } }).png({ compressionLevel: 0 }).toBuffer();
    // A pixel bomb: the same PNG claiming 20000 × 20000 pixels (IHDR patched, its CRC recomputed).
    const bomb = Buffer.from(png);
    bomb.writeUInt32BE(20000, 16);
    bomb.writeUInt32BE(20000, 20);
    bomb.writeUInt32BE(crc32(bomb.subarray(12, 29)), 29);
    const files: Record<string, Buffer> = { '/good.png': png, '/cut.png': png.subarray(0, Math.floor(png.length / 2)), '/bomb.png': bomb };
    server = createServer((req, res) => {
      const b = files[req.url ?? ''];
      res.writeHead(b ? 200 : 404, { 'content-type': 'image/png' }).end(b ?? '');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    return () => new Promise<void>((r) => server.close(() => r()));
  });

  it('records a truncated PNG and a pixel bomb as failures, not ok', async () => {
    const rows = ['/good.png', '/cut.png', '/bomb.png'].map((u, i) => ({ id: String(i), path: '', url: base + u, label: 0, wnid: '', class_name: 'a', set: 'pool' }));
    const r = await downloadPool(rows, f('dl'), { retries: 1 });
    const status = Object.fromEntries(r.records.map((x) => [x.url.slice(base.length), x.status]));
    expect(status).toEqual({ '/good.png': 'ok', '/cut.png': 'corrupt-image', '/bomb.png': 'too-many-pixels' });
    expect(readdirSync(path.join(f('dl'), 'images')).length).toBe(1);
  });
});

describe('a full disk', () => {
  // A 128 KiB tmpfs (needs root, as the Slurm tests do; where mount is refused the reason is printed)
  const mnt = f('full');
  const mount = () => execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', mnt], { stdio: 'pipe' });
  let why = '';
  try {
    mkdirSync(mnt, { recursive: true });
    mount();
    execFileSync('umount', [mnt]);
  } catch (e) {
    why = `cannot mount a small tmpfs (${(e as Error).message.split('\n')[0]})`;
    console.warn(`test/hardening.test.ts: full-disk test skipped: ${why}`);
  }
  it.skipIf(!!why)('is an error naming the file and saying a rerun resumes; no half file or lock is left; the rerun with space completes', async () => {
    const env = { ...process.env, DCD_BACKEND: 'wasm' };
    mount();
    try {
      const args = [CLI, 'run', TINY, '--only', 'data', '--set', `experiment.out=${mnt}/runs`];
      const r = await spawnAsync(process.execPath, args, { env, timeout: 120_000 });
      expect(r.stderr).not.toMatch(/internal error/);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`dcd: error: ${mnt}/runs/data/synthetic-s0-[0-9a-f]+/\\S+: no space left on device; nothing was written under that name\\. Free space .* rerun the same command: .* resumes`));
      const left = execFileSync('find', [mnt, '-name', '*.tmp*', '-o', '-name', '.dcd.lock'], { encoding: 'utf8' });
      expect(left).toBe('');
      execFileSync('mount', ['-o', 'remount,size=64m', mnt]);
      const again = await spawnAsync(process.execPath, args, { env, timeout: 120_000 });
      expect(again.status, again.stderr).toBe(0);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
