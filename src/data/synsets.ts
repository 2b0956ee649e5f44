/**
 * The 1000 ImageNet-1k classes: wnid and synonyms, in class-index order (the order of
 * the sorted wnids, which is the order torchvision's ImageFolder gives ILSVRC2012 train).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DataError } from '../core/errors.js';
import { PACKAGE_ROOT } from '../core/version.js';

/** One class of a synset list. */
export interface Synset {
  index: number;
  wnid: string;
  /** Synonyms, first = the usual class name. */
  names: string[];
}

/** The copy shipped with dcd (`src/data/imagenet-synsets.txt`, lines `wnid name, synonym, ...`). */
export const IMAGENET_SYNSETS_FILE = path.join(PACKAGE_ROOT, 'src', 'data', 'imagenet-synsets.txt');

const cache = new Map<string, Synset[]>();

/** Parses a synset file: one class per line, `wnid synonym, synonym, ...`, in class-index order. */
export function parseSynsets(text: string, file = '<synsets>'): Synset[] {
  const out: Synset[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const s = line.trim();
    if (!s || s.startsWith('#')) return;
    const m = /^(n\d{8})\s+(.*)$/.exec(s);
    if (!m) throw new DataError(`${file}:${i + 1}: expected "nXXXXXXXX name, synonym, ...", found "${s.slice(0, 60)}"`);
    out.push({ index: out.length, wnid: m[1]!, names: m[2]!.split(',').map((x) => x.trim()).filter(Boolean) });
  });
  return out;
}

/** Loads (and caches) a synset file; default: ImageNet-1k. */
export function loadSynsets(file: string = IMAGENET_SYNSETS_FILE): Synset[] {
  let s = cache.get(file);
  if (!s) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new DataError(`${file}: cannot read the synset list (${(e as Error).message})`);
    }
    s = parseSynsets(text, file);
    cache.set(file, s);
  }
  return s;
}

/** wnid → synset. */
export function synsetsByWnid(synsets: readonly Synset[] = loadSynsets()): Map<string, Synset> {
  return new Map(synsets.map((s) => [s.wnid, s]));
}
