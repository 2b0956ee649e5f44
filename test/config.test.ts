import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigSchema, loadConfig, parseSet, canonicalJson, deepMerge, pretrainOf } from '../src/core/config.js';
import { configKeys } from '../src/core/config-docs.js';
import { editDistance, nearest } from '../src/core/config-errors.js';
import { ConfigError } from '../src/core/errors.js';

const MINIMAL = `
experiment: { name: t }
data: { kind: synthetic }
backbones: [{ name: b, weights: demo }]
`;

function dirWith(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'dcd-config-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/** The error message of loading `text`, with the temp folder replaced by <dir>. */
function errorOf(text: string, set: string[] = []): string {
  const dir = dirWith({ 'c.yaml': text });
  try {
    loadConfig(path.join(dir, 'c.yaml'), { set, cwd: dir });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message.split(dir).join('<dir>');
  }
  throw new Error('expected a ConfigError');
}

describe('config errors (snapshots)', () => {
  it('a quoted number', () => {
    expect(errorOf(MINIMAL + 'train: { lr: "0.1" }')).toMatchSnapshot();
  });
  it('a number out of range', () => {
    expect(errorOf(MINIMAL + 'train: { lr: 0, epochs: -3 }')).toMatchSnapshot();
  });
  it('unknown keys suggest the nearest valid key', () => {
    expect(errorOf(MINIMAL + 'train: { learning_rate: 0.1, epoch: 3 }\nfilter: { scop: all }\nselct: { k_val: 5 }')).toMatchSnapshot();
  });
  it('a wrong enum value suggests the nearest option', () => {
    expect(errorOf(MINIMAL + 'train: { schedule: cosin }\nfilter: { scope: clas }')).toMatchSnapshot();
  });
  it('missing required sections and wrong types', () => {
    expect(errorOf('experiment: { name: "has space" }\nseeds: 3\nbackbones: []')).toMatchSnapshot();
  });
  it('a bad value given with --set names the key too', () => {
    expect(errorOf(MINIMAL, ['select.k_train=lots', 'methods=[original, dcdd]'])).toMatchSnapshot();
  });
  it('a backbone is checked as the kind its weights name (demo, ssl, or given weights)', () => {
    const bb = (b: string) => MINIMAL.replace('backbones: [{ name: b, weights: demo }]', `backbones: [${b}]`);
    expect(errorOf(bb('{ name: b, weights: demo, pretrain: { kind: broad_cn, steps: "x", stesp: 3 } }'))).toMatchSnapshot();
    expect(errorOf(bb('{ name: b, weights: ssl, pretrain: { method: byol, epochs: 0, kind: broad_cnn, crops: { globalSize: 2 } } }'))).toMatchSnapshot();
    expect(errorOf(bb('{ name: b, weights: random, pretrain: { kind: broad_cnn } }'))).toMatchSnapshot();
    expect(errorOf(bb('{ name: b, weights: 5 }'))).toMatchSnapshot();
  });
  it('data.synthetic and data.fashion are typed', () => {
    expect(errorOf(MINIMAL, ['data.synthetic={imageSize: 0, pool: {size: -5}, train: {homeRate: 1.5}, objectScale: [0.5], imagesize: 3}'])).toMatchSnapshot();
    expect(errorOf(MINIMAL, ['data.kind=fashion-mnist', 'data.fashion={classes: [1, 1, 12], numClasses: 3}'])).toMatchSnapshot();
  });
  it('not YAML, not a mapping, a missing extends file, an unknown variable', () => {
    expect(errorOf('a: [1, 2')).toMatchSnapshot();
    expect(errorOf('- 1\n- 2')).toMatchSnapshot();
    expect(errorOf('extends: nope.yaml\n' + MINIMAL)).toMatchSnapshot();
    expect(errorOf(MINIMAL + 'original: { checkpoint: "${ckpt}/m.pth" }')).toMatchSnapshot();
  });
});

describe('config loading', () => {
  it('fills defaults, merges extends (deep, relative to each file), resolves paths against the file that holds them', () => {
    const dir = dirWith({
      'bases/base.yaml': 'vars: { root: data }\ntrain: { lr: 0.2, epochs: 7 }\noriginal: { checkpoint: ckpt/orig.pth }\nfilter: { backbone: { name: resnet50_robust, weights: "${root}/robust.pt" } }',
      'exp/x.yaml': 'extends: ../bases/base.yaml\nexperiment: { name: t }\ndata: { kind: synthetic }\ntrain: { epochs: 9 }\nbackbones: [{ name: resnet50, weights: w/r50.pth }, { name: dino_vits16, weights: random }]',
    });
    const cfg = loadConfig(path.join(dir, 'exp/x.yaml'));
    expect(cfg.train.lr).toBe(0.2); // from the base
    expect(cfg.train.epochs).toBe(9); // the file wins
    expect(cfg.train.momentum).toBe(0.9); // default
    expect(cfg.select.k_val).toBe(5);
    expect(cfg.select.k_train).toBe(46);
    expect(cfg.seeds).toEqual([0]);
    expect(cfg.original.checkpoint).toBe(path.join(dir, 'bases/ckpt/orig.pth'));
    expect(cfg.filter.backbone.weights).toBe(path.join(dir, 'bases/data/robust.pt'));
    expect(cfg.backbones[0]!.weights).toBe(path.join(dir, 'exp/w/r50.pth'));
    expect(cfg.backbones[1]!.weights).toBe('random'); // a keyword, not a path
  });

  it('--set overrides (YAML values, paths relative to the working directory, null restores the default, vars)', () => {
    const dir = dirWith({ 'c.yaml': MINIMAL + 'vars: { root: /data }\nselect: { k_train: 10 }\noriginal: { checkpoint: "${root}/o.pth" }' });
    const cwd = path.join(dir, 'elsewhere');
    const cfg = loadConfig(path.join(dir, 'c.yaml'), {
      cwd,
      set: ['train.lr=0.05', 'seeds=[0,1,2]', 'select.k_train=null', 'filter.enabled=false', 'backbones=[{name: x, weights: rel/w.pt}]', 'vars.root=/other'],
    });
    expect(cfg.train.lr).toBe(0.05);
    expect(cfg.seeds).toEqual([0, 1, 2]);
    expect(cfg.select.k_train).toBe(46);
    expect(cfg.filter.enabled).toBe(false);
    expect(cfg.backbones[0]!.weights).toBe(path.join(cwd, 'rel/w.pt'));
    expect(cfg.original.checkpoint).toBe('/other/o.pth');
    expect(() => parseSet('novalue')).toThrow(/expected KEY=VALUE/);
  });

  it('resolves the paths of every backbone kind, and leaves their keywords alone', () => {
    const dir = dirWith({
      'c.yaml':
        'experiment: { name: t }\ndata: { kind: synthetic }\nbackbones:\n  - { name: a, weights: demo, pretrain: { data: pool } }\n  - { name: b, weights: ssl, pretrain: { data: broad } }\n' +
        '  - { name: c, weights: ssl, pretrain: { data: imgs } }\n  - { name: d, weights: demo, pretrain: { data: imgs } }\n  - { name: e, weights: official }\n  - { name: f, weights: w.pt }',
    });
    const cfg = loadConfig(path.join(dir, 'c.yaml'));
    expect(cfg.backbones.map((b) => [b.weights, pretrainOf(b)?.data])).toEqual([
      ['demo', 'pool'],
      ['ssl', 'broad'],
      ['ssl', path.join(dir, 'imgs')],
      ['demo', path.join(dir, 'imgs')],
      ['official', undefined],
      [path.join(dir, 'w.pt'), undefined],
    ]);
  });

  it('every key of the schema has a description (docs/config.md is written from them)', () => {
    const keys = configKeys();
    expect(keys.length).toBeGreaterThan(250);
    expect(keys.map((k) => k.key)).toContain('backbones[].pretrain.crops.globalSize');
    expect(keys.map((k) => k.key)).toContain('data.synthetic.pool.objectlessRate');
    expect(keys.filter((k) => !k.description).map((k) => k.key)).toEqual([]);
  });

  it('detects extends cycles', () => {
    const dir = dirWith({ 'a.yaml': 'extends: b.yaml', 'b.yaml': 'extends: a.yaml' });
    expect(() => loadConfig(path.join(dir, 'a.yaml'))).toThrow(/extends: cycle/);
  });

  it('edit distance, nearest key, canonical JSON, deep merge', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(nearest('lrr', ['lr', 'epochs'])).toBe('lr');
    expect(nearest('zzzzzz', ['lr', 'epochs'])).toBeUndefined();
    expect(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] })).toBe('{"a":[{"c":2,"d":1}],"b":1}');
    expect(deepMerge({ a: { b: 1, c: [1] } }, { a: { c: [2] } })).toEqual({ a: { b: 1, c: [2] } });
  });
});
