/**
 * `spawnSync`'s result shape without blocking the test worker: vitest's worker answers its
 * runner over RPC, and a child process that runs for a minute or more inside `spawnSync`
 * starves that channel ("Timeout calling onTaskUpdate"), which fails the whole run.
 */
import { spawn, type SpawnOptions } from 'node:child_process';

export interface SpawnResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `cmd args` to completion (killed with SIGKILL after `timeout` ms, if given). */
export function spawnAsync(cmd: string, args: readonly string[], opts: SpawnOptions & { timeout?: number } = {}): Promise<SpawnResult> {
  const { timeout, ...rest } = opts;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...rest, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = timeout ? setTimeout(() => child.kill('SIGKILL'), timeout) : undefined;
    child.on('error', reject);
    child.on('close', (status, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}
