import * as tf from '@tensorflow/tfjs';
import { ConfigError, describeError } from '../core/errors.js';
import { log } from '../core/log.js';
import { registerNativeBackend } from './native.js';
import { registerWasmKernels } from './wasm-kernels.js';
import { describeAdapter, loadWebgpuBackend, webgpuAdapter } from './webgpu.js';

/**
 * Backends dcd knows, in auto-selection order (fastest first). `webgpu` is chosen automatically
 * only on a hardware adapter; a software one (SwiftShader, llvmpipe) only by name.
 */
export const BACKEND_ORDER = ['tensorflow', 'webgpu', 'native', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_ORDER)[number];

let chosen: BackendName | undefined;
let summary: string | undefined;

/** Why each faster backend was not used, for the start-up line. */
const skipped: string[] = [];

async function tryTensorflow(): Promise<boolean> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      if (tf.findBackendFactory('tensorflow') != null) return true;
    } catch (e) {
      const code = (e as { code?: string }).code;
      skipped.push(code === 'ERR_MODULE_NOT_FOUND' ? `${pkg} not installed` : `${pkg}: ${describeError(e).split('\n')[0]}`);
    }
  }
  return false;
}

/** dcd's native CPU backend: the oneDNN addon built from `native/` by `npm install`, when it was built. */
async function tryNative(): Promise<boolean> {
  let r: ReturnType<typeof registerNativeBackend>;
  try {
    r = registerNativeBackend();
  } catch (e) {
    r = { ok: false, why: describeError(e).split('\n')[0]! };
  }
  if (!r.ok) skipped.push(`native: ${r.why}`);
  return r.ok;
}

async function tryWebgpu(byName: boolean): Promise<boolean> {
  const r = await loadWebgpuBackend({ allowSoftware: byName });
  if (!r.ok) skipped.push(r.why.startsWith('webgpu') ? r.why : `webgpu: ${r.why}`);
  return r.ok;
}

async function tryWasm(): Promise<boolean> {
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    registerWasmKernels();
    return tf.findBackendFactory('wasm') != null;
  } catch (e) {
    skipped.push(`wasm: ${describeError(e)}`);
    return false;
  }
}

const loaders: Record<BackendName, (byName: boolean) => Promise<boolean>> = {
  tensorflow: tryTensorflow,
  webgpu: tryWebgpu,
  native: tryNative,
  wasm: tryWasm,
  cpu: async () => true,
};

function isBackendName(s: string): s is BackendName {
  return (BACKEND_ORDER as readonly string[]).includes(s);
}

/**
 * Selects and initialises the tfjs backend: `requested` (from `--backend`), else
 * `DCD_BACKEND`, else the fastest present in {@link BACKEND_ORDER}. Prints one line
 * naming the backend in use (and why faster ones were skipped) unless `quiet`.
 */
export async function initBackend(requested?: string, opts: { quiet?: boolean } = {}): Promise<BackendName> {
  const want = requested ?? process.env.DCD_BACKEND ?? 'auto';
  if (chosen && (want === 'auto' || want === chosen)) return chosen;
  skipped.length = 0;
  let candidates: readonly BackendName[];
  if (want === 'auto') candidates = BACKEND_ORDER;
  else if (isBackendName(want)) candidates = [want];
  else
    throw new ConfigError(
      `--backend / DCD_BACKEND: expected one of auto, ${BACKEND_ORDER.join(', ')}; received "${want}"`,
    );
  for (const name of candidates) {
    if (!(await loaders[name](want !== 'auto'))) continue;
    const ok = await tf.setBackend(name);
    if (!ok) {
      skipped.push(`${name}: setBackend failed`);
      continue;
    }
    await tf.ready();
    chosen = name;
    const adapter = name === 'webgpu' ? webgpuAdapter() : undefined;
    summary = `backend ${name}${adapter ? ` on ${describeAdapter(adapter)}` : ''}${skipped.length && want === 'auto' ? ` (skipped ${skipped.join('; ')})` : ''}`;
    if (!opts.quiet) log.info(summary);
    return name;
  }
  throw new ConfigError(`backend "${want}" is not available here: ${skipped.join('; ')}`);
}

/** "backend native (skipped ...)", "backend webgpu on SwiftShader driver 5.0.0 (google swiftshader, software)": the line {@link initBackend} prints, or undefined before it ran. */
export function backendSummary(): string | undefined {
  return summary;
}

/** The backend chosen by {@link initBackend}, or undefined before it ran. */
export function currentBackend(): BackendName | undefined {
  return chosen;
}
