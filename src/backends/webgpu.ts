import * as tf from '@tensorflow/tfjs';
import { existsSync, readdirSync } from 'node:fs';
import { ConfigError, DcdError, describeError } from '../core/errors.js';
import { registerSoftwareWebgpuKernels } from './webgpu-kernels.js';

/**
 * The `webgpu` backend: tfjs's own WebGPU backend (`@tensorflow/tfjs-backend-webgpu`) on Dawn's
 * Node binding (the `webgpu` npm package: WebGPU over Vulkan, Metal or D3D12). Both packages are
 * optional dependencies; when either is missing or Dawn finds no adapter, the backend chain moves
 * on with the reason (./select.ts).
 *
 * dcd's own kernels (./kernel-names.ts) are not registered here: src/models/ops.ts and the
 * optimizer look each one up per backend and use tfjs's ops where it is absent, and tfjs's webgpu
 * backend has every kernel those ops need (Conv2DBackpropFilter, SplitV, PadV2, Erf, ...).
 */
export const WEBGPU_BACKEND = 'webgpu';

/** What Dawn says about the adapter in use, and the limits dcd checks allocations against. */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU implementation (SwiftShader, llvmpipe, lavapipe, WARP): correct, but slow. */
  software: boolean;
  /** Largest buffer a kernel may bind as storage, in bytes. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer the device may create, in bytes. */
  maxBufferSize: number;
}

/** Vulkan ICDs of software devices tried when `--backend webgpu` is asked for and no adapter shows. */
export const SOFTWARE_VULKAN_ICDS = [
  '/usr/lib/chromium/vk_swiftshader_icd.json', // Debian/Ubuntu `chromium`: SwiftShader
];

let adapterSummary: AdapterSummary | undefined;

/** Where the Vulkan loader looks for drivers on Linux (besides VK_ICD_FILENAMES / VK_DRIVER_FILES). */
const VULKAN_ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];

/**
 * On Linux, whether any Vulkan driver is installed. Auto-selection asks first: without one Dawn
 * only prints the loader's "Found no drivers" warnings, on every command of a CPU-only machine.
 */
export function hasVulkanDriver(): boolean {
  if (process.platform !== 'linux') return true;
  if (process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return true;
  return VULKAN_ICD_DIRS.some((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith('.json')));
}

/** The adapter the `webgpu` backend runs on, or undefined before it was set up. */
export function webgpuAdapter(): AdapterSummary | undefined {
  return adapterSummary;
}

/** "SwiftShader driver 5.0.0 (google swiftshader, software)": the adapter in one phrase. */
export function describeAdapter(a: AdapterSummary): string {
  const what = a.description || a.device || 'unnamed adapter';
  const who = [a.vendor, a.architecture].filter((s) => s !== '').join(' ');
  return `${what}${who ? ` (${who}${a.software ? ', software' : ''})` : a.software ? ' (software)' : ''}`;
}

const SOFTWARE_NAMES = /swiftshader|llvmpipe|lavapipe|softpipe|microsoft basic render|warp/i;

/** Reads Dawn's adapter info; `software` from the spec's isFallbackAdapter or a known CPU driver's name. */
export function summariseAdapter(info: Record<string, unknown>, limits: { maxStorageBufferBindingSize: number; maxBufferSize: number }): AdapterSummary {
  const str = (k: string) => (typeof info[k] === 'string' ? (info[k] as string) : '');
  const vendor = str('vendor');
  const architecture = str('architecture');
  const device = str('device');
  const description = str('description');
  const software = info.isFallbackAdapter === true || SOFTWARE_NAMES.test([vendor, architecture, device, description].join(' '));
  return {
    vendor,
    architecture,
    device,
    description,
    software,
    maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
    maxBufferSize: limits.maxBufferSize,
  };
}

/**
 * Throws when a buffer of `bytes` does not fit the adapter: the error names the limit and the
 * option to lower. `what` says what the buffer holds; `fix`, what to do (default: the batch size).
 */
export function checkBufferFits(
  bytes: number,
  storage: boolean,
  a: Pick<AdapterSummary, 'maxBufferSize' | 'maxStorageBufferBindingSize' | 'description'>,
  what = 'a tensor',
  fix = 'lower --batch-size (train.batch_size / embed batch size in the config), or run on --backend native',
): void {
  const [limit, name] = storage && a.maxStorageBufferBindingSize < a.maxBufferSize ? [a.maxStorageBufferBindingSize, 'maxStorageBufferBindingSize'] : [a.maxBufferSize, 'maxBufferSize'];
  if (bytes <= limit) return;
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  throw new ConfigError(
    `webgpu: ${what} needs a buffer of ${bytes} bytes (${mib(bytes)}), over the adapter's ${name} of ${limit} bytes (${mib(limit)}) on ${a.description || 'this adapter'}: ${fix}`,
  );
}

type Loaded = { ok: true; adapter: AdapterSummary } | { ok: false; why: string };

interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}
interface AdapterLike {
  info: Record<string, unknown>;
  limits: Record<string, number>;
  features: Set<string>;
  requestDevice(d: unknown): Promise<DeviceLike>;
}
interface GpuLike {
  requestAdapter(o?: unknown): Promise<AdapterLike | null>;
}
interface DeviceLike {
  lost: Promise<{ message: string }>;
}
/** The parts of tfjs's WebGPUBackend that dcd reaches into. */
interface WebgpuBackendLike {
  bufferManager: { acquireBuffer(size: number, usage: number, ...rest: unknown[]): unknown };
  readSync(dataId: unknown): unknown;
}

/**
 * Dawn toggles dcd sets on a software adapter (unless `DCD_DAWN_FLAGS` names its own): SwiftShader
 * runs every shader invocation on the CPU, and two of Dawn's safety transforms cost it most of its
 * time: `disable_robustness` drops the bounds clamp Dawn adds to every buffer access (tfjs's
 * shaders check their own bounds), `disable_workgroup_init` drops the zeroing of workgroup memory
 * and its barrier at the start of each workgroup (tfjs's shaders write their tiles before reading
 * them). Results are unchanged (the webgpu parity and identity tests run with them); a small-CNN
 * training step takes ≈ 1.6–1.8× less CPU time on SwiftShader (docs/gpu.md). Hardware adapters keep
 * Dawn's defaults.
 */
export const SOFTWARE_DAWN_FLAGS = ['enable-dawn-features=disable_robustness,disable_workgroup_init'];

/** `DCD_DAWN_FLAGS`: flags for Dawn's `create()`, separated by `;` (a flag's own list uses commas). */
export function dawnFlagsFromEnv(env: string | undefined): string[] {
  return (env ?? '').split(';').map((s) => s.trim()).filter((s) => s !== '');
}

/** Dawn's adapter, found once per process (Dawn enumerates its drivers when the instance is made). */
async function findAdapter(dawn: DawnModule, allowSoftware: boolean): Promise<{ gpu: GpuLike; adapter: AdapterLike } | { why: string }> {
  const flags = dawnFlagsFromEnv(process.env.DCD_DAWN_FLAGS);
  // With no driver installed at all, go straight to the software device (Dawn would only warn first).
  const icd = allowSoftware && process.env.VK_ICD_FILENAMES == null ? SOFTWARE_VULKAN_ICDS.find((p) => existsSync(p)) : undefined;
  if (icd != null && !hasVulkanDriver()) process.env.VK_ICD_FILENAMES = icd;
  let gpu = dawn.create(flags);
  let adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (adapter == null && icd != null && process.env.VK_ICD_FILENAMES == null) {
    // A driver is installed but gives no adapter: the software Vulkan device, only when webgpu was asked for by name.
    process.env.VK_ICD_FILENAMES = icd; // read by the Vulkan loader when Dawn makes its instance
    gpu = dawn.create(flags);
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  }
  if (adapter == null)
    return {
      why: `no WebGPU adapter (Dawn found no Vulkan/Metal/D3D12 driver${allowSoftware ? `; for a software device install the chromium package (SwiftShader) and libvulkan1, or set VK_ICD_FILENAMES` : ''})`,
    };
  if (allowSoftware && !flags.some((f) => f.includes('dawn-features=')) && summariseAdapter(adapter.info, { maxStorageBufferBindingSize: 0, maxBufferSize: 0 }).software) {
    // Toggles are the instance's: make it again with them and take the same (software) adapter.
    const fast = dawn.create([...flags, ...SOFTWARE_DAWN_FLAGS]);
    const again = await fast.requestAdapter({ powerPreference: 'high-performance' });
    if (again != null) return { gpu: fast, adapter: again };
  }
  return { gpu, adapter };
}

/**
 * Sets up the `webgpu` backend when the packages load and Dawn finds an adapter; a software
 * adapter is used only when `allowSoftware` (asked for by name: `--backend webgpu`). Registers a
 * tfjs backend factory under {@link WEBGPU_BACKEND}; the caller sets it.
 */
export async function loadWebgpuBackend(opts: { allowSoftware: boolean }): Promise<Loaded> {
  if (adapterSummary != null && tf.findBackendFactory(WEBGPU_BACKEND) != null) {
    return !adapterSummary.software || opts.allowSoftware ? { ok: true, adapter: adapterSummary } : { ok: false, why: softwareWhy(adapterSummary) };
  }
  if (!opts.allowSoftware && !hasVulkanDriver()) return { ok: false, why: `no Vulkan driver (no ICD file in ${VULKAN_ICD_DIRS.join(', ')})` };
  let dawn: DawnModule;
  let webgpuTf: { WebGPUBackend: new (device: unknown, info: unknown) => tf.KernelBackend };
  try {
    dawn = (await import('webgpu' as string)) as DawnModule;
    webgpuTf = (await import('@tensorflow/tfjs-backend-webgpu' as string)) as typeof webgpuTf;
  } catch (e) {
    const code = (e as { code?: string }).code;
    return { ok: false, why: code === 'ERR_MODULE_NOT_FOUND' ? 'packages webgpu / @tensorflow/tfjs-backend-webgpu not installed' : describeError(e).split('\n')[0]! };
  }
  let found: Awaited<ReturnType<typeof findAdapter>>;
  try {
    found = await findAdapter(dawn, opts.allowSoftware);
  } catch (e) {
    return { ok: false, why: describeError(e).split('\n')[0]! };
  }
  if ('why' in found) return { ok: false, why: found.why };
  const { gpu, adapter } = found;
  const L = adapter.limits;
  const summary = summariseAdapter(adapter.info, { maxStorageBufferBindingSize: L.maxStorageBufferBindingSize!, maxBufferSize: L.maxBufferSize! });
  if (summary.software && !opts.allowSoftware) return { ok: false, why: softwareWhy(summary) };

  // tfjs's webgpu backend reads WebGPU's constants (GPUBufferUsage, ...) and navigator.gpu as globals.
  Object.assign(globalThis, dawn.globals);
  const g = globalThis as unknown as { navigator?: Record<string, unknown> };
  if (g.navigator == null) g.navigator = { userAgent: `Node.js/${process.versions.node}` };
  Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });

  // The limits tfjs's own factory asks for: the adapter's, not WebGPU's defaults (128 MiB bindings).
  const requiredLimits = Object.fromEntries(
    ['maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension', 'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupSizeX', 'maxComputeInvocationsPerWorkgroup'].map((k) => [k, L[k]]),
  );
  const requiredFeatures = ['timestamp-query'].filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  void device.lost.then((info) => {
    if (!tearingDown) process.emitWarning(`webgpu: device lost on ${describeAdapter(summary)}: ${info.message}`);
  });
  if (tf.findBackendFactory(WEBGPU_BACKEND) != null) tf.removeBackend(WEBGPU_BACKEND);
  tf.registerBackend(WEBGPU_BACKEND, () => {
    const backend = new webgpuTf.WebGPUBackend(device, adapter.info);
    guardBackend(backend as unknown as WebgpuBackendLike, summary);
    return backend;
  });
  // A CPU runs tfjs's tiled matmul shader badly: plain-loop kernels instead (./webgpu-kernels.ts).
  if (summary.software) registerSoftwareWebgpuKernels(WEBGPU_BACKEND);
  adapterSummary = summary;
  return { ok: true, adapter: summary };
}

let tearingDown = false;
process.once('exit', () => (tearingDown = true));

function softwareWhy(a: AdapterSummary): string {
  return `webgpu: only a software adapter, ${describeAdapter(a)}; it is used only with --backend webgpu`;
}

/**
 * Two guards on a fresh tfjs WebGPUBackend: every buffer it allocates is checked against the
 * adapter's limits first (a clear error instead of a Dawn validation error and a lost device),
 * and a synchronous read (dataSync, arraySync) fails with what to do: tfjs reads webgpu buffers
 * synchronously through an OffscreenCanvas, which Node does not have.
 */
function guardBackend(backend: WebgpuBackendLike, a: AdapterSummary): void {
  const bm = backend.bufferManager;
  const acquire = bm.acquireBuffer.bind(bm);
  const STORAGE = (globalThis as unknown as { GPUBufferUsage: { STORAGE: number } }).GPUBufferUsage.STORAGE;
  bm.acquireBuffer = (size: number, usage: number, ...rest: unknown[]) => {
    checkBufferFits(size, (usage & STORAGE) !== 0, a);
    return acquire(size, usage, ...rest);
  };
  const readSync = backend.readSync.bind(backend);
  backend.readSync = (dataId: unknown) => {
    try {
      return readSync(dataId);
    } catch (e) {
      if (describeError(e).includes('OffscreenCanvas'))
        throw new DcdError(
          'webgpu: a synchronous read (dataSync/arraySync) of a GPU tensor: Node cannot map GPU memory synchronously; this code path must read with await tensor.data()',
          { cause: e },
        );
      throw e;
    }
  };
}
