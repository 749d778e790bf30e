/**
 * The state directory: where it is, the permission rules it must satisfy, atomic writes and the
 * cross-process lock. Every path the core opens goes through here so the rules hold everywhere:
 * home 0700 and owned by us, files 0600, no symlinks, writes via temp file + fsync + rename + fsync dir.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { integrity, TpError } from './errors.ts';

export interface Home {
  readonly dir: string;
}

export function resolveHome(
  flag: string | undefined,
  env: Record<string, string | undefined>,
  userHome: string,
): string {
  const chosen = flag ?? env.TRUST_PROTOCOL_HOME ?? path.join(userHome, '.trust-protocol');
  return path.resolve(chosen);
}

/** Opens an existing home (for reading) after checking it; `create` makes it 0700 first. */
export function openHome(dir: string, options: { create: boolean }): Home {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (e) {
    if (_code(e) !== 'ENOENT') throw _ioError(e, dir);
    if (!options.create) {
      throw new TpError('sealed', 'no_home', `no trust-protocol state directory at ${dir}`, {
        hint: 'run `trust-protocol init` first, or pass --home DIR',
      });
    }
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
    st = fs.lstatSync(dir);
  }
  checkOwnedPrivate(dir, st, 'state directory');
  if (!st.isDirectory()) throw integrity('home_not_dir', `${dir} is not a directory`);
  return { dir };
}

/**
 * Our uid, asked on first use and then kept: every state file and directory is checked against it
 * (a system call). Not at load time: `serve --user` drops from root to the service user first.
 */
let uid: number | undefined | null = null;

function checkOwnedPrivate(p: string, st: fs.Stats, what: string): void {
  if (st.isSymbolicLink()) {
    throw integrity(
      'symlink',
      `${what} ${p} is a symbolic link`,
      'replace it with a real file or directory',
    );
  }
  if (uid === null) uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw integrity(
      'foreign_owner',
      `${what} ${p} is owned by uid ${st.uid}, not by you (uid ${uid})`,
    );
  }
  if ((st.mode & 0o022) !== 0) {
    throw integrity(
      'insecure_permissions',
      `${what} ${p} is writable by group or others (mode ${(st.mode & 0o777).toString(8)})`,
      `run: chmod go-w ${p}`,
    );
  }
}

/**
 * A directory inside the home (audit/, brakes/), held to the home's own rules: a real directory,
 * ours, not writable by others. Missing: created 0700 when `create`, else null.
 */
export function subdir(home: Home, name: string, options: { create: boolean }): Home | null {
  const dir = path.join(home.dir, name);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (e) {
    if (_code(e) !== 'ENOENT') throw _ioError(e, dir);
    if (!options.create) return null;
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if (_code(err) !== 'EEXIST') throw _ioError(err, dir);
    }
    st = fs.lstatSync(dir);
  }
  checkOwnedPrivate(dir, st, 'state directory');
  if (!st.isDirectory()) throw integrity('not_a_directory', `${dir} is not a directory`);
  return { dir };
}

export function statePath(home: Home, name: string): string {
  return path.join(home.dir, name);
}

/**
 * How state files are opened to read: never through a symbolic link, and without blocking, so a
 * FIFO put in a file's place cannot hang the process (a held serve's keys past its TTL). Callers
 * refuse what fstat says is not a regular file.
 */
export const READ_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW |
  fs.constants.O_NONBLOCK;

/** Reads a state file, or returns null when it does not exist. Refuses symlinks and foreign files. */
export function readStateFile(home: Home, name: string): Uint8Array | null {
  const fd = openStateFile(home, name);
  if (fd === null) return null;
  try {
    return new Uint8Array(fs.readFileSync(fd));
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A state file opened for reading with `readStateFile`'s checks (no symlink, a regular file owned
 * by this user, tightened to 0600), for readers that take it in parts; null when it is absent.
 */
export function openStateFile(home: Home, name: string): number | null {
  const p = statePath(home, name);
  let fd: number;
  try {
    fd = fs.openSync(p, READ_FLAGS);
  } catch (e) {
    if (_code(e) === 'ENOENT') return null;
    if (_code(e) === 'ELOOP') throw integrity('symlink', `state file ${p} is a symbolic link`);
    throw _ioError(e, p);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw integrity('not_a_file', `state path ${p} is not a regular file`);
    checkOwnedPrivate(p, st, 'state file');
    // Readable by others (say, restored from a backup): tighten it back to 0600.
    if ((st.mode & 0o077) !== 0) fs.fchmodSync(fd, 0o600);
    return fd;
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/**
 * Atomically replaces a state file: temp file (0600) + fsync + rename + fsync of the directory.
 * `durable: false` skips the fsyncs, for state that can be rebuilt (the monitor's).
 */
export function writeStateFile(
  home: Home,
  name: string,
  data: Uint8Array | string,
  options: { durable?: boolean } = {},
): void {
  const target = _writableTarget(home, name);
  try {
    writeAtomic(home.dir, name, data, 0o600, options);
  } catch (e) {
    throw _ioError(e, target);
  }
}

/**
 * `writeStateFile` (durable) with its two fsyncs awaited off the event loop: for a long-lived
 * process (serve's keeper) whose other requests should not wait behind the disk. The same steps
 * in the same order, so the same atomicity; the caller holds whatever lock orders its writes.
 */
export async function writeStateFileAsync(
  home: Home,
  name: string,
  data: Uint8Array | string,
): Promise<void> {
  const target = _writableTarget(home, name);
  const tmp = _tempName(home.dir, name);
  let fd: number | undefined;
  try {
    try {
      fd = fs.openSync(tmp, 'wx', 0o600);
      fs.writeFileSync(fd, data);
      await fsyncAsync(fd);
      fs.closeSync(fd);
      fd = undefined;
      fs.renameSync(tmp, target);
    } catch (e) {
      if (fd !== undefined) fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    await fsyncDirAsync(home.dir);
  } catch (e) {
    throw _ioError(e, target);
  }
}

const fsyncAsync = promisify(fs.fsync);

function _writableTarget(home: Home, name: string): string {
  const target = statePath(home, name);
  try {
    const st = fs.lstatSync(target);
    if (st.isSymbolicLink()) throw integrity('symlink', `state file ${target} is a symbolic link`);
  } catch (e) {
    if (e instanceof TpError) throw e;
    if (_code(e) !== 'ENOENT') throw _ioError(e, target);
  }
  return target;
}

function _tempName(dir: string, name: string): string {
  return path.join(dir, `.${name}.${_randomHex(6)}.tmp`);
}

/**
 * Replaces `dir/name` atomically: a temp file created with `mode`, written, fsynced, renamed over
 * the target, then the directory fsynced. Throws the raw I/O error; callers say what it means.
 */
export function writeAtomic(
  dir: string,
  name: string,
  data: Uint8Array | string,
  mode: number,
  options: { durable?: boolean } = {},
): void {
  const durable = options.durable ?? true;
  const target = path.join(dir, name);
  const tmp = _tempName(dir, name);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx', mode);
    fs.writeFileSync(fd, data);
    if (durable) fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, target);
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  if (durable) fsyncDir(dir);
}

export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (e) {
    // Some platforms refuse fsync on directories; the rename itself is still atomic there.
    if (_code(e) !== 'EISDIR' && _code(e) !== 'EINVAL' && _code(e) !== 'EPERM') throw e;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

async function fsyncDirAsync(dir: string): Promise<void> {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    await fsyncAsync(fd);
  } catch (e) {
    if (_code(e) !== 'EISDIR' && _code(e) !== 'EINVAL' && _code(e) !== 'EPERM') throw e;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

export interface LockOptions {
  timeoutMs?: number;
  /** Test seam: whether a pid belongs to a live process. */
  isAlive?: (pid: number) => boolean;
}

/**
 * Cross-process lock: an O_EXCL lock file holding the owner's pid. Node has no flock, so a lock
 * whose owner died (kill -9) is detected by pid and broken. Runs `fn` while holding the lock.
 */
export async function withLock<T>(
  home: Home,
  name: string,
  fn: () => T | Promise<T>,
  options: LockOptions = {},
): Promise<T> {
  const lockPath = statePath(home, `${name}.lock`);
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  const isAlive = options.isAlive ?? _pidAlive;
  let delay = 2;
  const token = `${process.pid} ${_randomHex(8)}`;
  for (;;) {
    try {
      const fd = fs.openSync(lockPath, 'wx', 0o600);
      fs.writeFileSync(fd, token);
      fs.closeSync(fd);
      break;
    } catch (e) {
      if (_code(e) !== 'EEXIST') throw _ioError(e, lockPath);
    }
    const owner = _readLockOwner(lockPath);
    if (owner === null ? _abandonedEmptyLock(lockPath) : !isAlive(owner.pid)) {
      _breakStaleLock(lockPath, owner?.raw ?? '');
      continue;
    }
    if (Date.now() > deadline) {
      throw new TpError('internal', 'lock_timeout', `timed out waiting for the lock ${lockPath}`, {
        hint: `if no trust-protocol process is running (pid ${
          owner?.pid ?? '?'
        }), remove ${lockPath}`,
      });
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 50);
  }
  try {
    return await fn();
  } finally {
    if (_readLockOwner(lockPath)?.raw === token) fs.rmSync(lockPath, { force: true });
  }
}

function _readLockOwner(lockPath: string): { pid: number; raw: string } | null {
  try {
    const raw = _readLockFile(lockPath);
    const pid = Number.parseInt(raw.split(' ')[0] ?? '', 10);
    // A lock file caught between create and write is empty: its owner is alive unless it stays so.
    return Number.isSafeInteger(pid) && pid > 0 ? { pid, raw } : null;
  } catch {
    return null;
  }
}

/** A lock file left empty by a process killed between creating and writing it. */
function _abandonedEmptyLock(lockPath: string): boolean {
  try {
    const st = fs.statSync(lockPath);
    return st.size === 0 && Date.now() - st.mtimeMs > 2_000;
  } catch {
    return false;
  }
}

function _breakStaleLock(lockPath: string, staleContent: string): void {
  // Rename first so that two processes breaking the same stale lock cannot remove a fresh one.
  const aside = `${lockPath}.stale.${process.pid}.${_randomHex(4)}`;
  try {
    fs.renameSync(lockPath, aside);
  } catch {
    return;
  }
  const content = _readLockFile(aside);
  if (content !== staleContent) {
    // We moved a live owner's lock aside: put it back if the slot is still free.
    try {
      fs.linkSync(aside, lockPath);
    } catch { /* someone else holds the slot now; the moved owner loses its lock (documented) */ }
  }
  fs.rmSync(aside, { force: true });
}

/** A lock file's content; anything but a regular file reads as empty (a FIFO never blocks). */
function _readLockFile(p: string): string {
  const fd = fs.openSync(p, READ_FLAGS);
  try {
    return fs.fstatSync(fd).isFile() ? fs.readFileSync(fd, 'utf8') : '';
  } finally {
    fs.closeSync(fd);
  }
}

function _pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return _code(e) === 'EPERM';
  }
}

function _code(e: unknown): string | undefined {
  return (e as { code?: string } | null)?.code;
}

export function ioErrorCode(e: unknown): string | undefined {
  return _code(e);
}

function _ioError(e: unknown, p: string): TpError {
  if (e instanceof TpError) return e;
  const code = _code(e) ?? 'EIO';
  return new TpError('internal', 'io', `cannot access ${p}: ${code}`, { cause: e });
}

/**
 * Random hex for temporary and lock names. Web Crypto's generator (the same CSPRNG on Node and
 * Deno) rather than node:crypto, which this module would load at start-up for every command.
 */
function _randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, '0'),
  ).join('');
}
