import { create, globals } from 'webgpu';
const tf = await import('@tensorflow/tfjs');
const wg = await import('@tensorflow/tfjs-backend-webgpu');
Object.assign(globalThis, globals);
const gpu = create([]);
globalThis.navigator ??= {}; globalThis.navigator.gpu = gpu;
const adapter = await gpu.requestAdapter({powerPreference:'high-performance'});
console.log(adapter.info, adapter.isFallbackAdapter, adapter.limits.maxStorageBufferBindingSize, adapter.limits.maxBufferSize);
const L = adapter.limits;
const device = await adapter.requestDevice({ requiredLimits: { maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize, maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension, maxStorageBufferBindingSize: L.maxStorageBufferBindingSize, maxBufferSize: L.maxBufferSize, maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX, maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup } });
tf.registerBackend('webgpu', async () => new wg.WebGPUBackend(device, adapter.info));
await tf.setBackend('webgpu');
for (const n of [512, 512, 1024]) {
const a = tf.randomNormal([n, n]);
await a.data();
let t0 = Date.now();
const c = tf.matMul(a, a);
await c.data(); const dt = Date.now() - t0;
console.log('matmul', n, dt, 'ms', (2*n**3/dt/1e6).toFixed(2), 'GFLOP/s');
}
const x = tf.randomNormal([1, 56, 56, 64]); const w = tf.randomNormal([3, 3, 64, 64]);
for (let i=0;i<2;i++){ const t0 = Date.now(); await tf.conv2d(x, w, 1, 'same').data(); const dt=Date.now()-t0; console.log('conv', dt, (56*56*64*64*9*2/dt/1e6).toFixed(2), 'GFLOP/s'); }
process.exit(0);
