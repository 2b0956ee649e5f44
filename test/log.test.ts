import { describe, expect, it } from 'vitest';
import { formatEta, progress, RateMeter, setLogLevel } from '../src/core/log.js';

/** Feeds `meter` steps of `n` items, each taking `seconds`, from time `t` (ms); returns the new time. */
function steps(meter: RateMeter, count: number, seconds: number, t: number, n = 1): number {
  for (let i = 0; i < count; i++) meter.tick(n, (t += seconds * 1000));
  return t;
}

describe('progress ETA', () => {
  it('a constant rate gives the exact ETA; before two steps there is none', () => {
    const m = new RateMeter();
    expect(m.eta(10)).toBeUndefined();
    m.tick(8, 0);
    expect(m.eta(10)).toBeUndefined(); // the interval before the first step is warm-up, never counted
    steps(m, 5, 0.5, 0, 8); // 8 items per 0.5 s = 16/s
    expect(m.rate()).toBeCloseTo(16, 10);
    expect(m.eta(80)).toBeCloseTo(5, 10);
    expect(formatEta(m.eta(80))).toBe('5s');
  });

  it('slow first steps stop counting: the ETA follows the recent rate (a 10 s stage, not 12 min)', () => {
    // 100 steps: 60 s before the first (compilation), a slow second one (5 s), then 0.05 s each
    const m = new RateMeter();
    let t = 60_000;
    m.tick(1, t);
    t = steps(m, 1, 5, t);
    t = steps(m, 48, 0.05, t);
    // 50 steps left at 0.05 s: 2.5 s. The average since the start (50 in 67.4 s) would say 67 s.
    expect(m.eta(50)!).toBeGreaterThan(2.5);
    expect(m.eta(50)!).toBeLessThan(2.5 * 1.1);
    // a change of pace shows within a few tens of steps: now 0.5 s per step
    steps(m, 40, 0.5, t);
    expect(m.rate()!).toBeCloseTo(2, 1);
  });

  it('the progress line without a TTY prints the recent-rate ETA', () => {
    setLogLevel('info');
    let now = 0;
    const lines: string[] = [];
    const bar = progress('embed', 100, 'img', { now: () => now, stream: { write: (s: string) => lines.push(s), isTTY: false } });
    now = 30_000; // a slow start: the first line (10 s are up) has no rate yet
    bar.tick(1);
    for (let i = 0; i < 49; i++) {
      now += 200; // then 5 img/s: no line until 10 s after the last one
      bar.tick(1);
    }
    expect(lines).toEqual(['dcd: embed 1/100 0.0 img/s ETA ?\n']);
    now = 40_001;
    bar.tick(1);
    // 49 left at 5 img/s: 10 s (the average since the start, 51 in 40 s, would say 38 s)
    expect(lines[1]).toBe('dcd: embed 51/100 5.0 img/s ETA 10s\n');
  });

  it('formats ETAs as s, m and h', () => {
    expect([formatEta(undefined), formatEta(0), formatEta(59.4), formatEta(65), formatEta(745), formatEta(7620)]).toEqual(['?', '0s', '59s', '1m05s', '12m25s', '2h07m']);
    expect(() => new RateMeter(0)).toThrow(/alpha must be in \(0, 1\]/);
  });
});
