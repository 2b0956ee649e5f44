import cliProgress from 'cli-progress';

/** Log level from DCD_LOG (quiet | info | debug); default info. */
const LEVEL = (process.env.DCD_LOG ?? 'info').toLowerCase();

/** Writes informational lines to stderr (stdout is kept for results). */
export const log = {
  info(msg: string): void {
    if (LEVEL !== 'quiet') process.stderr.write(`dcd: ${msg}\n`);
  },
  warn(msg: string): void {
    process.stderr.write(`dcd: warning: ${msg}\n`);
  },
  debug(msg: string): void {
    if (LEVEL === 'debug') process.stderr.write(`dcd: [debug] ${msg}\n`);
  },
};

/** A progress bar on stderr with rate and ETA; silent when stderr is not a TTY or DCD_LOG=quiet. */
export interface Progress {
  tick(n?: number, payload?: Record<string, string | number>): void;
  stop(): void;
}

/**
 * Starts a progress bar for `total` items, labelled `label`, showing items/s (`unit`)
 * and ETA. Without a TTY it prints a line at most every 10 s instead.
 */
export function progress(label: string, total: number, unit = 'img'): Progress {
  const start = Date.now();
  let done = 0;
  if (LEVEL === 'quiet') return { tick: (n = 1) => void (done += n), stop: () => undefined };
  if (!process.stderr.isTTY) {
    let last = start;
    return {
      tick(n = 1) {
        done += n;
        const now = Date.now();
        if (now - last > 10_000 || done === total) {
          last = now;
          const rate = done / Math.max(1e-3, (now - start) / 1000);
          const eta = rate > 0 ? (total - done) / rate : 0;
          process.stderr.write(`dcd: ${label} ${done}/${total} ${rate.toFixed(1)} ${unit}/s ETA ${eta.toFixed(0)}s\n`);
        }
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {value}/{total} {rate} ${unit}/s ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: false,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { rate: '0.0' });
  return {
    tick(n = 1, payload) {
      done += n;
      const rate = done / Math.max(1e-3, (Date.now() - start) / 1000);
      bar.update(done, { rate: rate.toFixed(1), ...payload });
    },
    stop() {
      bar.stop();
    },
  };
}
