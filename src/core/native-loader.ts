/**
 * Loads dcd's native CPU backend (a Node addon built from `native/` by
 * `scripts/build-native.mjs` during `npm install`) when it was built, and registers it
 * with tfjs under the name `native`. Returns why not otherwise.
 */
export async function loadNativeBackend(): Promise<{ ok: true } | { ok: false; why: string }> {
  try {
    const { registerNativeBackend } = await import('../backends/native.js');
    const r = registerNativeBackend();
    return r.ok ? { ok: true } : r;
  } catch (e) {
    return { ok: false, why: (e instanceof Error ? e.message : String(e)).split('\n')[0] };
  }
}
