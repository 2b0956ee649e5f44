/**
 * Usage errors (bad or missing arguments) and the pointer to the help that fixes them:
 * the help of the command the user was typing, not the top-level list.
 */

/** A usage error: exit code 2, printed with a pointer to `dcd <command> --help`. */
export class UsageError extends Error {
  /** @param command the command path, e.g. `select` or `weights fetch`; '' for the top level */
  constructor(
    message: string,
    readonly command = '',
  ) {
    super(message);
  }
}

/**
 * The command path in yargs' usage state at the failure: its usage line reads
 * `$0 weights fetch <name>`, so the words between `$0` and the first placeholder.
 * '' when unknown (top level).
 */
export function commandPath(usage: unknown): string {
  const get = (usage as { getUsage?: () => unknown } | undefined)?.getUsage;
  const lines = typeof get === 'function' ? get.call(usage) : undefined;
  const first = Array.isArray(lines) && Array.isArray(lines[0]) ? lines[0][0] : undefined;
  if (typeof first !== 'string') return '';
  const words = first.split(/\s+/).slice(1);
  const end = words.findIndex((w) => /^[<[-]/.test(w));
  return words.slice(0, end < 0 ? words.length : end).join(' ');
}

/** "Run `dcd select --help` for usage." (or `dcd --help` at the top level). */
export function usageHint(command: string): string {
  return `Run \`dcd ${command ? `${command} ` : ''}--help\` for usage.`;
}

/** The last lines of a command's `--help`: where its documentation lives (paths in the dcd repository). */
export function seeDocs(...docs: string[]): string {
  return `Documentation: ${docs.join(', ')} (in the dcd repository; README.md gives the overview).`;
}
