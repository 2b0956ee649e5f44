/**
 * Loads dcd's native CPU backend (a Node addon) when it was built, and registers it
 * with tfjs under the name `native`. Returns why not otherwise.
 */
export async function loadNativeBackend(): Promise<{ ok: true } | { ok: false; why: string }> {
  return { ok: false, why: 'not built in this checkout' };
}
