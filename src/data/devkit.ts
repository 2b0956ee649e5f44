/**
 * The ILSVRC2012 devkit (`ILSVRC2012_devkit_t12.tar.gz`), as torchvision's `ImageNet`
 * reads it: `data/meta.mat` (the `synsets` struct array: ILSVRC2012_ID → WNID) and
 * `data/ILSVRC2012_validation_ground_truth.txt` (one ILSVRC2012_ID per val image). Either
 * the extracted folder or the tarball itself (read with node built-ins: gunzip + ustar).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DataError } from '../core/errors.js';
import { parseMatFile, type MatArray } from './matfile.js';

const META = 'data/meta.mat';
const GROUND_TRUTH = 'data/ILSVRC2012_validation_ground_truth.txt';
/** The real devkit tarball inflates to ~10 MB; this bounds a gzip bomb. */
const MAX_TAR = 1 << 30;

/** ILSVRC2012 devkit synset, one entry of meta.mat's `synsets`. */
export interface DevkitSynset {
  /** ILSVRC2012_ID: 1..1000 for the classes, 1001.. for their WordNet ancestors. */
  id: number;
  wnid: string;
  words: string;
  /** 0 for the 1000 leaf classes. */
  numChildren: number;
}

/** A devkit file's bytes and the name errors give it (`kit.tar.gz:ILSVRC2012_devkit_t12/data/meta.mat` inside a tarball). */
export interface DevkitFile {
  file: string;
  bytes: Buffer;
}

/** The two devkit files dcd uses; either may be missing from what the user pointed at. */
export interface Devkit {
  source: string;
  metaMat?: DevkitFile;
  groundTruth?: DevkitFile;
}

function readBytes(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new DataError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

const isTarball = (p: string) => /\.(tar\.gz|tgz|tar)$/i.test(p);

/** True for what {@link openDevkit} takes: a folder or a `.tar.gz` / `.tgz` / `.tar`. */
export function isDevkitPath(p: string): boolean {
  return isTarball(p) || (existsSync(p) && statSync(p).isDirectory());
}

/**
 * Entries of a tar archive (ustar, GNU or pax; gzipped or not) whose names `want`
 * accepts, by name. Checksums and every size are checked: a truncated or corrupt archive
 * throws a {@link DataError} naming `file`.
 */
export function readTarEntries(buf: Buffer, file: string, want: (name: string) => boolean): Map<string, Buffer> {
  if (buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf, { maxOutputLength: MAX_TAR });
    } catch (e) {
      throw new DataError(`${file}: does not gunzip (${(e as Error).message}); the download is truncated or corrupt`);
    }
  }
  const out = new Map<string, Buffer>();
  let longName: string | undefined;
  let pos = 0;
  while (pos + 512 <= buf.length) {
    const h = buf.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) return out; // end-of-archive marker
    const field = (at: number, len: number) => {
      const s = h.toString('latin1', at, at + len);
      const z = s.indexOf('\0');
      return z < 0 ? s : s.slice(0, z);
    };
    const octal = (at: number, len: number, what: string) => {
      const s = field(at, len).trim();
      if (!/^[0-7]*$/.test(s)) throw new DataError(`${file}: corrupt tar header at offset ${pos}: ${what} "${s}" is not octal`);
      return s ? parseInt(s, 8) : 0;
    };
    // The checksum counts its own 8 bytes as spaces.
    let sum = 8 * 0x20;
    for (let i = 0; i < 512; i++) if (i < 148 || i >= 156) sum += h[i]!;
    if (octal(148, 8, 'checksum') !== sum) throw new DataError(`${file}: not a tar archive, or corrupt (header checksum mismatch at offset ${pos})`);
    if (h[124]! & 0x80) throw new DataError(`${file}: tar entry at offset ${pos} uses a base-256 size (> 8 GiB), which is not supported`);
    const size = octal(124, 12, 'size');
    const type = String.fromCharCode(h[156]!);
    const start = pos + 512;
    if (start + size > buf.length) throw new DataError(`${file}: truncated: tar entry at offset ${pos} needs ${size} byte(s), ${buf.length - start} left`);
    const data = buf.subarray(start, start + size);
    pos = start + Math.ceil(size / 512) * 512;
    const prefix = h.toString('latin1', 257, 262) === 'ustar' ? field(345, 155) : '';
    const name = longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    longName = undefined;
    if (type === 'L') longName = data.toString('utf8').replace(/\0.*$/s, ''); // GNU long name of the next entry
    else if (type === 'x') {
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(data.toString('utf8')); // pax extended header of the next entry
      if (m) longName = m[1];
    } else if ((type === '0' || type === '\0' || type === '7') && want(name)) out.set(name, data);
  }
  if (pos !== buf.length) throw new DataError(`${file}: truncated tar archive (${buf.length - pos} stray byte(s) at the end)`);
  return out;
}

/**
 * Finds meta.mat and the val ground truth in a devkit folder (the extracted
 * `ILSVRC2012_devkit_t12/`, its parent, or its `data/`) or tarball.
 */
export function openDevkit(p: string): Devkit {
  if (!existsSync(p)) throw new DataError(`${p}: not found; expected the ILSVRC2012 devkit (ILSVRC2012_devkit_t12.tar.gz, or the folder it extracts to)`);
  const kit: Devkit = { source: p };
  if (statSync(p).isDirectory()) {
    for (const base of [p, path.join(p, 'ILSVRC2012_devkit_t12'), path.dirname(p)]) {
      const meta = path.join(base, META);
      const gt = path.join(base, GROUND_TRUTH);
      if (!existsSync(meta) && !existsSync(gt)) continue;
      if (existsSync(meta)) kit.metaMat = { file: meta, bytes: readBytes(meta) };
      if (existsSync(gt)) kit.groundTruth = { file: gt, bytes: readBytes(gt) };
      return kit;
    }
    return kit;
  }
  const entries = readTarEntries(readBytes(p), p, (n) => n === META || n.endsWith(`/${META}`) || n === GROUND_TRUTH || n.endsWith(`/${GROUND_TRUTH}`));
  for (const [name, bytes] of entries) {
    const f = { file: `${p}:${name}`, bytes };
    if (name.endsWith(META)) kit.metaMat ??= f;
    else kit.groundTruth ??= f;
  }
  return kit;
}

/** The devkit's meta.mat, or a DataError saying it is not there. */
export function devkitMetaMat(kit: Devkit): DevkitFile {
  if (!kit.metaMat) throw new DataError(`${kit.source}: no ${META} in it; expected the ILSVRC2012 devkit (ILSVRC2012_devkit_t12.tar.gz or its extracted folder)`);
  return kit.metaMat;
}

/** The devkit's val ground truth, or a DataError saying it is not there. */
export function devkitGroundTruth(kit: Devkit): DevkitFile {
  if (!kit.groundTruth) throw new DataError(`${kit.source}: no ${GROUND_TRUTH} in it; expected the ILSVRC2012 devkit (ILSVRC2012_devkit_t12.tar.gz or its extracted folder)`);
  return kit.groundTruth;
}

/**
 * Reads `synsets` from meta.mat's bytes (`file` names it in errors): 1860 entries in the
 * real file, the 1000 classes with ILSVRC2012_ID 1..1000 and num_children 0.
 */
export function parseDevkitSynsets(buf: Buffer, file: string): DevkitSynset[] {
  const s = parseMatFile(buf, file).get('synsets');
  if (!s) throw new DataError(`${file}: no variable "synsets"; expected the ILSVRC2012 devkit's ${META}`);
  if (s.kind !== 'struct') throw new DataError(`${file}: "synsets" is a ${s.kind} array, expected a struct array`);
  const missing = ['ILSVRC2012_ID', 'WNID', 'words', 'num_children'].filter((f) => !s.fields.includes(f));
  if (missing.length) throw new DataError(`${file}: "synsets" lacks field(s) ${missing.join(', ')}; found ${s.fields.join(', ')}`);
  const scalar = (a: MatArray, where: string): number => {
    if (a.kind !== 'numeric' || a.data.length !== 1) throw new DataError(`${file}: ${where} should be a numeric scalar, found ${a.kind} ${a.dims.join('x')}`);
    return a.data[0]!;
  };
  const str = (a: MatArray, where: string): string => {
    if (a.kind !== 'char' || a.dims.filter((d) => d !== 1).length > 1) throw new DataError(`${file}: ${where} should be a string (1xN char), found ${a.kind} ${a.dims.join('x')}`);
    return a.data;
  };
  return s.data.map((r, i) => {
    const at = (f: string) => `synsets(${i + 1}).${f}`;
    return { id: scalar(r.ILSVRC2012_ID!, at('ILSVRC2012_ID')), wnid: str(r.WNID!, at('WNID')), words: str(r.words!, at('words')), numChildren: scalar(r.num_children!, at('num_children')) };
  });
}

/**
 * ILSVRC2012_ID → wnid of the leaf synsets (num_children 0: the 1000 classes), the map
 * the val ground truth needs. Duplicate IDs are a corrupt file.
 */
export function devkitIdMap(synsets: readonly DevkitSynset[], file: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const s of synsets) {
    if (s.numChildren !== 0) continue;
    if (out.has(s.id)) throw new DataError(`${file}: ILSVRC2012_ID ${s.id} appears twice among the leaf synsets (${out.get(s.id)}, ${s.wnid})`);
    out.set(s.id, s.wnid);
  }
  if (!out.size) throw new DataError(`${file}: no leaf synsets (num_children 0) in "synsets"; expected the 1000 ILSVRC2012 classes`);
  return out;
}
