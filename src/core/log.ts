import cliProgress from 'cli-progress';

/** Log level from DCD_LOG (quiet | info | debug); default info. */
let LEVEL = (process.env.DCD_LOG ?? 'info').toLowerCase();

/** Sets the log level for the rest of the process (the CLI's `--verbose` sets debug). */
export function setLogLevel(level: 'quiet' | 'info' | 'debug'): void {
  LEVEL = level;
}

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
 * The recent rate of a stream of steps, for ETAs: items and seconds are both exponentially
 * weighted over the last steps (each step's weight shrinks by `1 − alpha` per later step), so
 * a slow start (graph compilation, kernel warm-up, a cold cache) stops counting after a few
 * steps, whatever its length, and a change of pace shows within ~1/alpha steps. The interval
 * before the first step is never counted: it is all warm-up.
 */
export class RateMeter {
  private last: number | undefined;
  private items = 0;
  private seconds = 0;

  /** @param alpha weight of the newest step (0 < alpha ≤ 1); 0.1 averages over ≈ 10 steps */
  constructor(private readonly alpha = 0.1) {
    if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`RateMeter: alpha must be in (0, 1], received ${alpha}`);
  }

  /** Records `n` items done at time `now` (ms). */
  tick(n: number, now: number): void {
    if (this.last !== undefined) {
      const keep = 1 - this.alpha;
      this.items = this.items * keep + n;
      this.seconds = this.seconds * keep + Math.max(0, now - this.last) / 1000;
    }
    this.last = now;
  }

  /** Items per second, or undefined before two steps. */
  rate(): number | undefined {
    return this.seconds > 0 ? this.items / this.seconds : undefined;
  }

  /** Seconds left for `remaining` items at the recent rate, or undefined while unknown. */
  eta(remaining: number): number | undefined {
    const r = this.rate();
    return r && r > 0 ? Math.max(0, remaining) / r : undefined;
  }
}

/** An ETA as `42s`, `3m05s`, `2h07m`; `?` while unknown. */
export function formatEta(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return '?';
  const t = Math.round(s);
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s`;
  return `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}m`;
}

/** Where {@link progress} writes and how it reads the clock (tests inject both). */
export interface ProgressIo {
  stream?: NodeJS.WriteStream | { write(s: string): unknown; isTTY?: boolean };
  now?: () => number;
}

/**
 * Starts a progress bar for `total` items, labelled `label`, showing the recent items/s
 * (`unit`) and the ETA at that rate ({@link RateMeter}). Without a TTY it prints a line at
 * most every 10 s instead.
 */
export function progress(label: string, total: number, unit = 'img', io: ProgressIo = {}): Progress {
  const now = io.now ?? Date.now;
  const stream = io.stream ?? process.stderr;
  const start = now();
  const meter = new RateMeter();
  let done = 0;
  const rateText = () => (meter.rate() ?? 0).toFixed(1);
  const etaText = () => formatEta(done >= total ? 0 : meter.eta(total - done));
  if (LEVEL === 'quiet') return { tick: (n = 1) => void (done += n), stop: () => undefined };
  if (!stream.isTTY) {
    let last = start;
    return {
      tick(n = 1) {
        done += n;
        const t = now();
        meter.tick(n, t);
        if (t - last > 10_000 || done === total) {
          last = t;
          stream.write(`dcd: ${label} ${done}/${total} ${rateText()} ${unit}/s ETA ${etaText()}\n`);
        }
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {value}/{total} {rate} ${unit}/s ETA {etaRecent}`,
      stream: stream as NodeJS.WriteStream,
      hideCursor: false,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { rate: '0.0', etaRecent: '?' });
  return {
    tick(n = 1, payload) {
      done += n;
      meter.tick(n, now());
      bar.update(done, { rate: rateText(), etaRecent: etaText(), ...payload });
    },
    stop() {
      bar.stop();
    },
  };
}
