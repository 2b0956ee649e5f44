/**
 * A reader for MATLAB Level-5 MAT-files (the format of `save -v7` and scipy's `savemat`),
 * enough for the ILSVRC2012 devkit's `data/meta.mat`: numeric, char, cell and struct
 * arrays, compressed (miCOMPRESSED, zlib) or not, either byte order. Sparse, object,
 * function-handle and v7.3 (HDF5) files are refused with a message naming the file.
 *
 * Every length read from the file is checked against the bytes that hold it, so a
 * truncated or corrupt file throws a {@link DataError} instead of reading out of range.
 * Format reference: MathWorks, "MAT-File Format" (matfile_format.pdf), chapter 1.
 */
import { inflateSync } from 'node:zlib';
import { DataError } from '../core/errors.js';

/** MATLAB array classes (mxCLASS) this reader returns for numeric arrays. */
export type MatNumericClass = 'double' | 'single' | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64';

/**
 * One MATLAB array. `dims` are MATLAB's (at least two); elements are in MATLAB's
 * column-major order. Numbers are widened to float64 whatever their storage type
 * (MATLAB stores integer-valued doubles as uint8/uint16 to save space).
 */
export type MatArray =
  | { kind: 'numeric'; class: MatNumericClass; dims: number[]; data: Float64Array; imag?: Float64Array; logical: boolean }
  /** `data`: all characters, column-major; see {@link matRows}. */
  | { kind: 'char'; dims: number[]; data: string }
  | { kind: 'cell'; dims: number[]; data: MatArray[] }
  /** `data[i][field]`: element i (column-major) of the struct array. */
  | { kind: 'struct'; dims: number[]; fields: string[]; data: Record<string, MatArray>[] };

// Data types (miXXX) and array classes (mxXXX), MAT-File Format tables 1-1 and 1-3.
const MI = { INT8: 1, UINT8: 2, INT16: 3, UINT16: 4, INT32: 5, UINT32: 6, SINGLE: 7, DOUBLE: 9, INT64: 12, UINT64: 13, MATRIX: 14, COMPRESSED: 15, UTF8: 16, UTF16: 17, UTF32: 18 } as const;
const MI_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4 };
const MX_NUMERIC: Record<number, MatNumericClass> = { 6: 'double', 7: 'single', 8: 'int8', 9: 'uint8', 10: 'int16', 11: 'uint16', 12: 'int32', 13: 'uint32', 14: 'int64', 15: 'uint64' };
const MX_UNSUPPORTED: Record<number, string> = { 3: 'object (mxOBJECT_CLASS)', 5: 'sparse (mxSPARSE_CLASS)', 16: 'function handle (mxFUNCTION_CLASS)', 17: 'opaque (mxOPAQUE_CLASS, e.g. a string or table object)' };
const MX_CELL = 1;
const MX_STRUCT = 2;
const MX_CHAR = 4;
/** Nesting deeper than this is a corrupt file, not a data set (and would overflow the stack). */
const MAX_DEPTH = 64;
/** Upper bound on an inflated variable: meta.mat is ~2 MB; this stops a zlib bomb. */
const MAX_INFLATED = 1 << 30;

/** A bounded window [pos, end) over the file's bytes; every read is checked. */
class Cursor {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
    readonly le: boolean,
    readonly fail: (msg: string) => never,
  ) {}
  need(n: number, what: string): void {
    if (n < 0 || this.pos + n > this.end) this.fail(`truncated or corrupt: ${what} needs ${n} byte(s) at offset ${this.pos}, only ${Math.max(0, this.end - this.pos)} left`);
  }
  u32(at: number): number {
    return this.le ? this.buf.readUInt32LE(at) : this.buf.readUInt32BE(at);
  }
  /** Reads a data element's tag (normal or small format) and returns its type and payload window; advances past it and its padding. */
  element(what: string): { type: number; start: number; bytes: number } {
    this.need(8, `the tag of ${what}`);
    const first = this.u32(this.pos);
    // Small data element: byte count in the upper 16 bits, type in the lower; ≤ 4 bytes of data in the tag itself.
    if (first >>> 16 !== 0) {
      const bytes = first >>> 16;
      if (bytes > 4) this.fail(`corrupt: small data element of ${what} claims ${bytes} bytes (at most 4)`);
      const el = { type: first & 0xffff, start: this.pos + 4, bytes };
      this.pos += 8;
      return el;
    }
    const bytes = this.u32(this.pos + 4);
    this.pos += 8;
    this.need(bytes, what);
    const el = { type: first, start: this.pos, bytes };
    // Elements are padded to 8 bytes, except a compressed one (its byte count is exact)
    // and the last one of a window, which may end without padding.
    this.pos = first === MI.COMPRESSED ? this.pos + bytes : Math.min(this.end, this.pos + ((bytes + 7) & ~7));
    return el;
  }
}

/** Reads one element's payload as numbers, whatever its miXXX storage type. */
function numbers(c: Cursor, el: { type: number; start: number; bytes: number }, what: string): Float64Array {
  const size = MI_SIZE[el.type];
  if (size === undefined || el.type === MI.UTF8 || el.type === MI.UTF16 || el.type === MI.UTF32)
    c.fail(`${what}: expected numeric data, found data type ${el.type}`);
  if (el.bytes % size !== 0) c.fail(`corrupt: ${what} has ${el.bytes} bytes, not a multiple of ${size}`);
  const n = el.bytes / size;
  const out = new Float64Array(n);
  const b = c.buf;
  const le = c.le;
  for (let i = 0, p = el.start; i < n; i++, p += size) {
    switch (el.type) {
      case MI.INT8: out[i] = b.readInt8(p); break;
      case MI.UINT8: out[i] = b[p]!; break;
      case MI.INT16: out[i] = le ? b.readInt16LE(p) : b.readInt16BE(p); break;
      case MI.UINT16: out[i] = le ? b.readUInt16LE(p) : b.readUInt16BE(p); break;
      case MI.INT32: out[i] = le ? b.readInt32LE(p) : b.readInt32BE(p); break;
      case MI.UINT32: out[i] = le ? b.readUInt32LE(p) : b.readUInt32BE(p); break;
      case MI.SINGLE: out[i] = le ? b.readFloatLE(p) : b.readFloatBE(p); break;
      case MI.DOUBLE: out[i] = le ? b.readDoubleLE(p) : b.readDoubleBE(p); break;
      case MI.INT64:
      case MI.UINT64: {
        const v = el.type === MI.INT64 ? (le ? b.readBigInt64LE(p) : b.readBigInt64BE(p)) : le ? b.readBigUInt64LE(p) : b.readBigUInt64BE(p);
        const x = Number(v);
        if (!Number.isSafeInteger(x)) c.fail(`${what}: 64-bit integer ${v} is beyond 2^53, which this reader does not support`);
        out[i] = x;
        break;
      }
    }
  }
  return out;
}

/** Builds a string from character codes in slices (spreading a long array would overflow the stack). */
function fromCodes(codes: Float64Array, f: (...codes: number[]) => string): string {
  let s = '';
  for (let i = 0; i < codes.length; i += 4096) s += f(...codes.subarray(i, i + 4096));
  return s;
}

function chars(c: Cursor, el: { type: number; start: number; bytes: number }, n: number, what: string): string {
  const raw = c.buf.subarray(el.start, el.start + el.bytes);
  let s: string;
  if (el.type === MI.UTF8) s = raw.toString('utf8');
  else if (el.type === MI.UINT8 || el.type === MI.INT8) s = raw.toString('latin1');
  else if (el.type === MI.UINT16 || el.type === MI.UTF16) {
    // MATLAB's char is one UTF-16 code unit per element.
    s = fromCodes(numbers(c, { ...el, type: MI.UINT16 }, what), String.fromCharCode);
  } else if (el.type === MI.UTF32) {
    const cps = numbers(c, { ...el, type: MI.UINT32 }, what);
    if (cps.some((x) => x > 0x10ffff)) c.fail(`corrupt: ${what} holds a UTF-32 value beyond U+10FFFF`);
    s = fromCodes(cps, String.fromCodePoint);
  }
  else return c.fail(`${what}: char data of type ${el.type} is not supported (expected miUINT16, miUTF8, miUTF16 or miUINT8)`);
  // Count characters as MATLAB does (code points for UTF-8/32, code units for UTF-16).
  const count = el.type === MI.UINT16 || el.type === MI.UTF16 ? s.length : [...s].length;
  if (count !== n) c.fail(`corrupt: ${what} holds ${count} character(s), its dimensions say ${n}`);
  return s;
}

/** Parses the miMATRIX payload in [start, start+bytes). */
function matrix(c0: Cursor, start: number, bytes: number, what: string, depth: number): { name: string; value: MatArray } {
  if (depth > MAX_DEPTH) c0.fail(`corrupt: arrays nested more than ${MAX_DEPTH} deep at ${what}`);
  // MATLAB writes an empty cell element as a miMATRIX of 0 bytes: a 0x0 double.
  if (bytes === 0) return { name: '', value: { kind: 'numeric', class: 'double', dims: [0, 0], data: new Float64Array(0), logical: false } };
  const c = new Cursor(c0.buf, start, start + bytes, c0.le, c0.fail);
  const flagsEl = c.element(`the array flags of ${what}`);
  if (flagsEl.type !== MI.UINT32 || flagsEl.bytes !== 8) c.fail(`corrupt: array flags of ${what} should be 8 bytes of miUINT32, found type ${flagsEl.type}, ${flagsEl.bytes} bytes`);
  const flags = c.u32(flagsEl.start);
  const cls = flags & 0xff;
  const complex = (flags & 0x800) !== 0;
  const logical = (flags & 0x200) !== 0;
  const dimsEl = c.element(`the dimensions of ${what}`);
  if (dimsEl.type !== MI.INT32 || dimsEl.bytes % 4 !== 0 || dimsEl.bytes < 8) c.fail(`corrupt: dimensions of ${what} should be ≥ 2 miINT32 values, found type ${dimsEl.type}, ${dimsEl.bytes} bytes`);
  const dims = Array.from(numbers(c, dimsEl, `the dimensions of ${what}`));
  if (dims.some((d) => d < 0)) c.fail(`corrupt: negative dimension in ${dims.join('x')} of ${what}`);
  const count = dims.reduce((a, b) => a * b, 1);
  const nameEl = c.element(`the name of ${what}`);
  if (nameEl.type !== MI.INT8 && nameEl.type !== MI.UINT8) c.fail(`corrupt: the array name of ${what} should be miINT8, found type ${nameEl.type}`);
  const name = c.buf.toString('latin1', nameEl.start, nameEl.start + nameEl.bytes);
  const here = name ? `${what} "${name}"` : what;
  if (MX_UNSUPPORTED[cls]) c.fail(`${here} is a ${MX_UNSUPPORTED[cls]} array, which this reader does not support`);
  const numeric = MX_NUMERIC[cls];
  if (numeric) {
    const data = numbers(c, c.element(`the data of ${here}`), `the data of ${here}`);
    if (data.length !== count) c.fail(`corrupt: ${here} has ${data.length} value(s), its dimensions ${dims.join('x')} say ${count}`);
    const value: MatArray = { kind: 'numeric', class: numeric, dims, data, logical };
    if (complex) {
      value.imag = numbers(c, c.element(`the imaginary part of ${here}`), `the imaginary part of ${here}`);
      if (value.imag.length !== count) c.fail(`corrupt: imaginary part of ${here} has ${value.imag.length} value(s), expected ${count}`);
    }
    return { name, value };
  }
  if (cls === MX_CHAR) {
    // An empty char array may come with no data element at all.
    const data = count === 0 && c.pos >= c.end ? '' : chars(c, c.element(`the characters of ${here}`), count, `the characters of ${here}`);
    return { name, value: { kind: 'char', dims, data } };
  }
  if (cls === MX_CELL) {
    // Each element needs at least an 8-byte tag: checked before looping so a huge count cannot hang.
    c.need(count * 8, `the ${count} element(s) of cell ${here}`);
    const data: MatArray[] = [];
    for (let i = 0; i < count; i++) data.push(child(c, `${here}{${i + 1}}`, depth));
    return { name, value: { kind: 'cell', dims, data } };
  }
  if (cls === MX_STRUCT) {
    const lenEl = c.element(`the field-name length of ${here}`);
    const len = numbers(c, lenEl, `the field-name length of ${here}`)[0];
    if (len === undefined || !Number.isInteger(len) || len < 1) c.fail(`corrupt: field-name length of ${here} is ${len}`);
    const namesEl = c.element(`the field names of ${here}`);
    if (namesEl.bytes % len !== 0) c.fail(`corrupt: field names of ${here} take ${namesEl.bytes} bytes, not a multiple of the name length ${len}`);
    const fields: string[] = [];
    for (let p = namesEl.start; p < namesEl.start + namesEl.bytes; p += len) {
      const raw = c.buf.subarray(p, p + len);
      const z = raw.indexOf(0);
      fields.push(raw.toString('latin1', 0, z < 0 ? len : z));
    }
    if (!fields.length && count > 1e6) c.fail(`corrupt: struct ${here} has no fields but ${count} elements`);
    c.need(count * fields.length * 8, `the ${count}x${fields.length} field value(s) of struct ${here}`);
    const data: Record<string, MatArray>[] = [];
    for (let i = 0; i < count; i++) {
      const rec: Record<string, MatArray> = {};
      for (const f of fields) rec[f] = child(c, `${here}(${i + 1}).${f}`, depth);
      data.push(rec);
    }
    return { name, value: { kind: 'struct', dims, fields, data } };
  }
  return c.fail(`${here}: array class ${cls} is not supported`);
}

function child(c: Cursor, what: string, depth: number): MatArray {
  const el = c.element(what);
  if (el.type !== MI.MATRIX) c.fail(`corrupt: ${what} should be a miMATRIX element, found data type ${el.type}`);
  return matrix(c, el.start, el.bytes, what, depth + 1).value;
}

/**
 * Parses a Level-5 MAT-file held in `buf`; `file` names it in errors. Returns the
 * variables by name, in file order.
 */
export function parseMatFile(buf: Buffer, file = '<mat>'): Map<string, MatArray> {
  const fail = (msg: string): never => {
    throw new DataError(`${file}: ${msg}`);
  };
  const text = buf.toString('latin1', 0, Math.min(buf.length, 116));
  if (text.startsWith('MATLAB 7.3')) fail('is a MATLAB v7.3 (HDF5) MAT-file; re-save it with `save -v7` or read it with h5py');
  if (buf.length < 128 || !text.startsWith('MATLAB 5.0 MAT-file'))
    fail('not a MATLAB Level-5 MAT-file (no "MATLAB 5.0 MAT-file" header); expected e.g. the devkit\'s data/meta.mat');
  const endian = buf.toString('latin1', 126, 128);
  if (endian !== 'IM' && endian !== 'MI') fail(`corrupt MAT-file header: endian indicator "${endian}", expected "IM" or "MI"`);
  const le = endian === 'IM';
  const top = new Cursor(buf, 128, buf.length, le, fail);
  const vars = new Map<string, MatArray>();
  while (top.pos < top.end) {
    const el = top.element(`variable ${vars.size + 1}`);
    if (el.type === MI.COMPRESSED) {
      let inner: Buffer;
      try {
        inner = inflateSync(buf.subarray(el.start, el.start + el.bytes), { maxOutputLength: MAX_INFLATED });
      } catch (e) {
        return fail(`compressed variable ${vars.size + 1} does not inflate (${(e as Error).message}); the file is truncated or corrupt`);
      }
      const ic = new Cursor(inner, 0, inner.length, le, (msg) => fail(`${msg} (inside compressed variable ${vars.size + 1})`));
      const m = ic.element(`variable ${vars.size + 1}`);
      if (m.type !== MI.MATRIX) ic.fail(`corrupt: a compressed variable should hold a miMATRIX, found data type ${m.type}`);
      const { name, value } = matrix(ic, m.start, m.bytes, `variable ${vars.size + 1}`, 0);
      vars.set(name, value);
    } else if (el.type === MI.MATRIX) {
      const { name, value } = matrix(top, el.start, el.bytes, `variable ${vars.size + 1}`, 0);
      vars.set(name, value);
    } else fail(`corrupt: top-level data element of type ${el.type} at offset ${el.start - 8}, expected miMATRIX (14) or miCOMPRESSED (15)`);
  }
  return vars;
}
