/**
 * One writer per run folder, and a stage cache that checks content (./src/pipeline/lock.ts,
 * runner.ts): through the real CLI, a second `dcd run` into a folder a live run holds is refused
 * naming the holder's pid and host; after the holder is killed (-9) the next run takes the stale
 * lock over, removes the half files killed writers left, and resumes; bytes flipped in a cached output (same size) make that stage run again.
 * On fd5d8b6 both runs exited 0 into one folder, and the flipped output stayed "cached".
 */
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync, closeSync, readSync, writeSync, fstatSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { LOCK_FILE, lockRunDir } from '../src/pipeline/lock.js';
import { spawnAsync } from './spawn-async.js';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const TINY = path.join(ROOT, 'test/fixtures/pipeline/tiny.yaml');
const ENV = { ...process.env, DCD_BACKEND: 'wasm', DCD_LOG: 'info' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('run-folder lock (in process)', () => {
  it('is exclusive, re-entrant in one process, released, and names a holder on another host', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-lock-'));
    const a = await lockRunDir(dir, 'test a');
    const b = await lockRunDir(dir, 'test b'); // same process: re-entrant
    const h = JSON.parse(readFileSync(path.join(dir, LOCK_FILE), 'utf8'));
    expect([h.pid, h.host, h.command]).toEqual([process.pid, hostname(), 'test a']);
    b.release();
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(true);
    a.release();
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ pid: 4242, host: 'node-17', start_ticks: 1, since: 'x', command: 'dcd run other.yaml' }));
    await expect(lockRunDir(dir, 'test c')).rejects.toThrow(/run folder in use by process 4242 on node-17 \(dcd run other\.yaml.*delete .*\.dcd\.lock/);
  });

  it('takes over a lock whose process is gone on this host, and one left unreadable', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcd-lock-'));
    const dead = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => dead.on('close', r));
    writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ pid: dead.pid, host: hostname(), start_ticks: null, since: 'x', command: 'dcd run' }));
    const l = await lockRunDir(dir, 'taker');
    expect(JSON.parse(readFileSync(path.join(dir, LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    l.release();
    writeFileSync(path.join(dir, LOCK_FILE), '{"pid": 12');
    (await lockRunDir(dir, 'taker')).release();
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('dcd run into a folder in use (real CLI)', () => {
  it('refuses a second run naming the holder, takes a killed holder\'s lock over, and reruns a stage whose output was altered', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'dcd-lock-run-'));
    const lock = path.join(cwd, 'runs/tiny', LOCK_FILE);
    const a = spawn(process.execPath, [CLI, 'run', TINY], { cwd, env: ENV, stdio: 'ignore' });
    try {
      for (let t = 0; t < 600 && !existsSync(lock); t++) await sleep(100);
      expect(existsSync(lock)).toBe(true);
      const b = await spawnAsync(process.execPath, [CLI, 'run', TINY, '--only', 'data'], { cwd, env: ENV, timeout: 120_000 });
      expect(b.status).toBe(1);
      expect(b.stderr).toMatch(new RegExp(`run folder in use by process ${a.pid} on ${hostname()} \\(dcd run `));
    } finally {
      a.kill('SIGKILL');
    }
    await new Promise((r) => (a.exitCode !== null || a.signalCode !== null ? r(null) : a.on('close', r)));
    expect(existsSync(lock)).toBe(true); // kill -9: no chance to release
    // what killed writers leave: a half Arrow file and a half checkpoint folder under temporary names
    const orphanFile = path.join(cwd, 'runs/tiny/data/.pool.arrow.99999.deadbeef.tmp');
    const orphanDir = path.join(cwd, 'runs/tiny/.step-00000005.99999.0badf00d.tmp');
    mkdirSync(orphanDir, { recursive: true });
    writeFileSync(orphanFile, 'half');
    const c = await spawnAsync(process.execPath, [CLI, 'run', TINY, '--only', 'data'], { cwd, env: ENV, timeout: 120_000 });
    expect(c.status, c.stderr).toBe(0);
    expect(c.stderr).toMatch(new RegExp(`took over the run folder's lock \\(process ${a.pid} on ${hostname()} is gone\\)`));
    expect(existsSync(lock)).toBe(false);
    expect([existsSync(orphanFile), existsSync(orphanDir)]).toEqual([false, false]);
    expect(c.stderr).toMatch(/removed 2 temporary file\(s\) left by an interrupted run/);

    // 400 bytes flipped in the cached pool (same size; mtime changes, so the content is rehashed)
    const dataDir = path.join(cwd, 'runs/tiny/data');
    const pool = path.join(dataDir, readdirSync(dataDir)[0]!, 'pool.arrow');
    const fd = openSync(pool, 'r+');
    const at = Math.floor(fstatSync(fd).size / 2);
    const buf = Buffer.alloc(400);
    readSync(fd, buf, 0, 400, at);
    for (let i = 0; i < 400; i++) buf[i] = buf[i]! ^ 0xff;
    writeSync(fd, buf, 0, 400, at);
    closeSync(fd);
    const dry = await spawnAsync(process.execPath, [CLI, 'run', TINY, '--only', 'data', '--dry-run'], { cwd, env: ENV, timeout: 120_000 });
    expect(dry.status).toBe(0);
    expect(dry.stdout).toMatch(/^run +data\/synthetic-s0 +output pool \(pool\.arrow\) changed content/m);
    const again = await spawnAsync(process.execPath, [CLI, 'run', TINY, '--only', 'data'], { cwd, env: ENV, timeout: 120_000 });
    expect(again.status).toBe(0);
    const dry2 = await spawnAsync(process.execPath, [CLI, 'run', TINY, '--only', 'data', '--dry-run'], { cwd, env: ENV, timeout: 120_000 });
    expect(dry2.stdout).toMatch(/^cached +data\/synthetic-s0/m);
  });
});
