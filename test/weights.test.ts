import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import http from 'node:http';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { captureCli } from './cli-capture.js';
import { WeightsError, DataError } from '../src/core/errors.js';
import { readSafetensors, writeSafetensors } from '../src/models/safetensors.js';
import { readCheckpoint, flattenTensors, materialize } from '../src/models/checkpoint.js';
import { loadCheckpoint, saveCheckpoint, stateDictOf } from '../src/models/load.js';
import { createModel } from '../src/models/registry.js';
import { fetchWeights } from '../src/models/fetch.js';
import { mapCheckpointKeys } from '../src/models/keymap.js';
import { unpickle } from '../src/models/pickle.js';

const FIX = path.resolve('test/fixtures/parity');
const tmp = mkdtempSync(path.join(tmpdir(), 'dcd-weights-'));

const cli = captureCli;

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('safetensors', () => {
  it('round-trips F32, I64 and I32 tensors and metadata, 8-byte aligned', async () => {
    const f = path.join(tmp, 'a.safetensors');
    await writeSafetensors(
      f,
      {
        'b.w': { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, -6.5]) },
        'a.n': { dtype: 'I64', shape: [], data: BigInt64Array.from([1234n]) },
        c: { dtype: 'I32', shape: [2], data: Int32Array.from([-1, 7]) },
      },
      { note: 'x' },
    );
    const buf = readFileSync(f);
    const hlen = Number(buf.readBigUInt64LE(0));
    expect((8 + hlen) % 8).toBe(0);
    const r = await readSafetensors(f);
    expect(r.metadata).toEqual({ note: 'x' });
    expect(Array.from(r.tensors.get('b.w')!.data as Float32Array)).toEqual([1, 2, 3, 4, 5, -6.5]);
    expect(r.tensors.get('b.w')!.shape).toEqual([2, 3]);
    expect(r.tensors.get('a.n')!.dtype).toBe('I64');
    expect((r.tensors.get('a.n')!.data as BigInt64Array)[0]).toBe(1234n);
    expect(Array.from(r.tensors.get('c')!.data as Int32Array)).toEqual([-1, 7]);
    // Truncated: the error names the file and the first tensor cut off, and says what to do.
    writeFileSync(path.join(tmp, 'trunc.safetensors'), buf.subarray(0, buf.length - 4));
    await expect(readSafetensors(path.join(tmp, 'trunc.safetensors'))).rejects.toThrow(/trunc\.safetensors: truncated safetensors file: .*tensor c and the ones after it are cut off\. .*Download it again/);
  });
});

describe('pickle VM', () => {
  it('reads protocol-2 structures: dict, list, tuple, long, float, memo', () => {
    // /usr/bin/python3: pickle.dumps({'a': [1, -2, 3.5, 'x'], 'b': (True, None), 'big': 2**70}, protocol=2).hex()
    const py = Buffer.from(
      '80027d71002858010000006171015d7102284b014afeffffff47400c0000000000005801000000787103655801000000627104884e867105580300000062696771068a09000000000000000040752e',
      'hex',
    );
    const v = unpickle(new Uint8Array(py), 0, () => undefined, () => null).value as Map<string, unknown>;
    expect(v.get('a')).toEqual([1, -2, 3.5, 'x']);
    expect(v.get('b')).toEqual([true, null]);
    expect(v.get('big')).toBe(2n ** 70n);
  });
});

describe('checkpoint readers', () => {
  it('read int64 num_batches_tracked from zip and legacy files', async () => {
    for (const f of ['resnet_bottleneck_tiny.pth', 'resnet_bottleneck_tiny_legacy.pth']) {
      const ck = await readCheckpoint(path.join(FIX, f));
      const t = flattenTensors(ck.tree).get('bn1.num_batches_tracked')!;
      const h = materialize(t);
      expect(h.dtype).toBe('I64');
      expect((h.data as BigInt64Array)[0]).toBe(1234n);
    }
  });

  it('zip and legacy give identical tensors', async () => {
    const a = flattenTensors((await readCheckpoint(path.join(FIX, 'resnet_bottleneck_tiny.pth'))).tree);
    const b = flattenTensors((await readCheckpoint(path.join(FIX, 'resnet_bottleneck_tiny_legacy.pth'))).tree);
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const k of a.keys()) expect(Array.from(materialize(b.get(k)!).data as Float32Array)).toEqual(Array.from(materialize(a.get(k)!).data as Float32Array));
  });

  it('key maps: MadryLab drops attacker copies, DINO picks the teacher and strips prefixes', async () => {
    const madry = await readCheckpoint(path.join(FIX, 'resnet_robust_tiny_madry_legacy.pt'));
    const m = mapCheckpointKeys(madry.tree, 'madrylab');
    expect(m.tensors.has('normalizer.new_mean')).toBe(true);
    expect(m.tensors.has('conv1.weight')).toBe(true);
    expect([...m.tensors.keys()].some((k) => k.includes('attacker') || k.endsWith('num_batches_tracked'))).toBe(false);
    const dino = await readCheckpoint(path.join(FIX, 'vit_fixture_full.pth'));
    const plain = await readCheckpoint(path.join(FIX, 'vit_fixture.pth'));
    const t = mapCheckpointKeys(dino.tree, 'dino');
    const p = mapCheckpointKeys(plain.tree, 'dino');
    expect([...t.tensors.keys()].sort()).toEqual([...p.tensors.keys()].sort());
    expect(t.source.get('norm.weight')).toBe('backbone.norm.weight');
    expect(Array.from(materialize(t.tensors.get('norm.weight')!).data)).toEqual(Array.from(materialize(p.tensors.get('norm.weight')!).data));
    const s = mapCheckpointKeys(dino.tree, 'dino', { dinoBranch: 'student' });
    expect(s.source.get('norm.weight')).toBe('module.backbone.norm.weight');
  });
});

describe('strict loading (bad input)', () => {
  const model = () => createModel('resnet_bottleneck_tiny', { seed: 3 });
  const snapshot = (m: ReturnType<typeof model>) => Array.from(m.params().get('conv1.weight')!.dataSync());

  async function sdFile(name: string, edit: (sd: Map<string, { dtype: 'F32' | 'I64' | 'I32'; shape: number[]; data: Float32Array }>) => void) {
    const src = createModel('resnet_bottleneck_tiny', { seed: 9 });
    const sd = (await stateDictOf(src)) as Map<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>;
    src.dispose();
    edit(sd);
    const f = path.join(tmp, name);
    await writeSafetensors(f, Object.fromEntries(sd));
    return f;
  }

  it('missing key: names it with its shape, loads nothing', async () => {
    const f = await sdFile('missing.safetensors', (sd) => sd.delete('layer2.0.bn1.running_var'));
    const m = model();
    const before = snapshot(m);
    await expect(loadCheckpoint(m, f)).rejects.toThrow(/missing from the checkpoint \(1\):\n {2}layer2\.0\.bn1\.running_var \[8\][\s\S]*nothing was loaded|nothing was loaded[\s\S]*layer2\.0\.bn1\.running_var \[8\]/);
    expect(snapshot(m)).toEqual(before);
    m.dispose();
  });

  it('extra key and wrong shape are both listed', async () => {
    const f = await sdFile('extra.safetensors', (sd) => {
      sd.set('layer5.0.conv1.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) });
      sd.set('fc.bias', { dtype: 'F32', shape: [11], data: new Float32Array(11) });
    });
    const m = model();
    const before = snapshot(m);
    const err = await loadCheckpoint(m, f).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(WeightsError);
    expect(err.message).toMatch(/unexpected in the checkpoint \(1\):\n {2}layer5\.0\.conv1\.weight \[2\]/);
    expect(err.message).toMatch(/shape mismatch \(1\):\n {2}fc\.bias: checkpoint \[11\].*model \[10\]/);
    expect(snapshot(m)).toEqual(before);
    m.dispose();
  });

  it('wrong architecture: a ResNet checkpoint into a ViT', async () => {
    const m = createModel('vit_tiny');
    await expect(loadCheckpoint(m, path.join(FIX, 'resnet_bottleneck_tiny.pth'))).rejects.toThrow(/does not fit vit_tiny; nothing was loaded[\s\S]*missing from the checkpoint[\s\S]*cls_token/);
    m.dispose();
  });

  it('truncated zip and legacy checkpoints, non-checkpoint and empty files', async () => {
    const m = model();
    const cut = (src: string, dst: string, frac: number) => {
      const b = readFileSync(path.join(FIX, src));
      writeFileSync(path.join(tmp, dst), b.subarray(0, Math.floor(b.length * frac)));
      return path.join(tmp, dst);
    };
    await expect(loadCheckpoint(m, cut('resnet_bottleneck_tiny.pth', 'cut.pth', 0.6))).rejects.toThrow(/cut\.pth: .*truncated/);
    await expect(loadCheckpoint(m, cut('resnet_bottleneck_tiny_legacy.pth', 'cut_legacy.pth', 0.6))).rejects.toThrow(/cut_legacy\.pth: .*truncated/);
    await expect(loadCheckpoint(m, cut('resnet_bottleneck_tiny_legacy.pth', 'cut_legacy2.pth', 0.02))).rejects.toThrow(WeightsError);
    const txt = path.join(tmp, 'notes.txt');
    writeFileSync(txt, 'hello, not weights');
    await expect(loadCheckpoint(m, txt)).rejects.toThrow(/notes\.txt: not a checkpoint: expected a PyTorch file/);
    writeFileSync(path.join(tmp, 'empty.pth'), '');
    await expect(loadCheckpoint(m, path.join(tmp, 'empty.pth'))).rejects.toThrow(/empty\.pth: empty file/);
    await expect(loadCheckpoint(m, path.join(tmp, 'nope.pth'))).rejects.toThrow(/nope\.pth: no such checkpoint file/);
    m.dispose();
  });
});

describe('save / convert', () => {
  it('safetensors and tfjs round trips give identical features', async () => {
    const a = createModel('vit_tiny', { seed: 4 });
    const x = tf.randomNormal([1, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const fa = a.forwardFeatures(x);
    await saveCheckpoint(a, path.join(tmp, 'v.safetensors'), 'safetensors');
    await saveCheckpoint(a, path.join(tmp, 'v_tfjs'), 'tfjs');
    for (const f of ['v.safetensors', 'v_tfjs', 'v_tfjs/model.json']) {
      const b = createModel('vit_tiny', { seed: 5 });
      await loadCheckpoint(b, path.join(tmp, f));
      const fb = b.forwardFeatures(x);
      expect(Array.from(fb.dataSync())).toEqual(Array.from(fa.dataSync()));
      fb.dispose();
      b.dispose();
    }
    tf.dispose([x, fa]);
    a.dispose();
  });

  it('CLI: inspect lists names, dtypes, shapes; convert --backbone writes loadable files', async () => {
    const r = await cli(['weights', 'inspect', path.join(FIX, 'resnet_bottleneck_tiny_legacy.pth')]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/torch-legacy, \d+ tensors/);
    expect(r.out).toMatch(/layer1\.0\.conv2\.weight\s+F32\s+\[4, 4, 3, 3\]/);
    expect(r.out).toMatch(/bn1\.num_batches_tracked\s+I64\s+\[\]/);
    const out = path.join(tmp, 'robust.safetensors');
    const c = await cli(['weights', 'convert', path.join(FIX, 'resnet_robust_tiny_madry_legacy.pt'), '--backbone', 'resnet_robust_tiny', '--to', 'safetensors', '--out', out]);
    expect(c.code, c.err).toBe(0);
    const st = await readSafetensors(out);
    expect(st.tensors.has('normalizer.new_std')).toBe(true);
    expect(st.metadata['dcd.model']).toBe('resnet_robust_tiny');
    const m = createModel('resnet_robust_tiny');
    await loadCheckpoint(m, out);
    m.dispose();
    const raw = await cli(['weights', 'convert', path.join(FIX, 'vit_fixture.pth'), '--to', 'tfjs', '--out', path.join(tmp, 'raw_tfjs')]);
    expect(raw.code).toBe(0);
    expect(JSON.parse(readFileSync(path.join(tmp, 'raw_tfjs/model.json'), 'utf8')).weightsManifest[0].weights.length).toBeGreaterThan(10);
    const bad = await cli(['weights', 'inspect', path.join(tmp, 'nothing-here.pth')]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/nothing-here\.pth: no such checkpoint file/);
  });
});

describe('weights fetch (loopback HTTP server)', () => {
  const payload = Buffer.alloc(3_000_000);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) % 251;
  const sha = createHash('sha256').update(payload).digest('hex');
  let server: http.Server;
  let base = '';
  const ranges: string[] = [];
  let cutFirst = true;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const range = req.headers.range;
      ranges.push(range ?? '');
      if (req.url === '/missing.bin') return void res.writeHead(404).end();
      let start = 0;
      if (range) start = Number(/bytes=(\d+)-/.exec(range)![1]);
      const body = payload.subarray(start);
      res.writeHead(range ? 206 : 200, { 'content-length': body.length, ...(range ? { 'content-range': `bytes ${start}-${payload.length - 1}/${payload.length}` } : {}) });
      if (cutFirst) {
        // Simulate a dropped connection half-way.
        cutFirst = false;
        res.write(body.subarray(0, 1_000_000), () => setTimeout(() => res.destroy(), 50));
        return;
      }
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => server.close());

  it('resumes an interrupted download with Range and verifies sha256', async () => {
    const cache = path.join(tmp, 'cache');
    await expect(fetchWeights('resnet_tiny', { url: `${base}/w.bin`, sha256: sha, cache })).rejects.toThrow(/interrupted.*run the command again to resume/);
    const part = path.join(cache, 'weights', 'w.bin.part');
    expect(existsSync(part)).toBe(true);
    const r = await fetchWeights('resnet_tiny', { url: `${base}/w.bin`, sha256: sha, cache });
    expect(r.resumedFrom).toBeGreaterThan(0);
    expect(ranges[ranges.length - 1]).toBe(`bytes=${r.resumedFrom}-`);
    expect(r.verified).toBe('sha256');
    expect(createHash('sha256').update(readFileSync(r.file)).digest('hex')).toBe(sha);
    expect(existsSync(part)).toBe(false);
    // Cached: no new request.
    const n = ranges.length;
    const again = await fetchWeights('resnet_tiny', { url: `${base}/w.bin`, sha256: sha, cache });
    expect(again.downloaded).toBe(false);
    expect(ranges.length).toBe(n);
  });

  it('a wrong sha256 or HTTP error leaves no file; CLI honours DCD_CACHE', async () => {
    const cache = path.join(tmp, 'cache2');
    await expect(fetchWeights('resnet_tiny', { url: `${base}/w.bin`, sha256: 'ab'.repeat(32), cache })).rejects.toThrow(DataError);
    expect(readdirSync(path.join(cache, 'weights'))).toEqual([]);
    await expect(fetchWeights('resnet_tiny', { url: `${base}/missing.bin`, cache })).rejects.toThrow(/HTTP 404/);
    process.env.DCD_CACHE = path.join(tmp, 'cache3');
    try {
      const r = await cli(['weights', 'fetch', 'resnet_tiny', '--url', `${base}/x.bin`, '--sha256', sha]);
      expect(r.code, r.err).toBe(0);
      expect(r.out.trim()).toBe(path.join(tmp, 'cache3', 'weights', 'x.bin'));
      const none = await cli(['weights', 'fetch', 'resnet_tiny']);
      expect(none.code).toBe(2);
      expect(none.err).toMatch(/no official download URL.*--url/);
    } finally {
      delete process.env.DCD_CACHE;
    }
  });
});
