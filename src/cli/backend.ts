import { backendSummary, initBackend, type BackendName } from '../backends/chain.js';
import { log } from '../core/log.js';

/**
 * Chooses the tfjs backend for a command. The line naming it is printed only under
 * `--verbose` (DCD_LOG=debug): printed first, it read like a warning above a one-line
 * error. `dcd run` and `dcd sweep` print it once, when the run starts.
 */
export async function useBackend(requested?: string): Promise<BackendName> {
  const name = await initBackend(requested, { quiet: true });
  log.debug(backendSummary() ?? `backend ${name}`);
  return name;
}
