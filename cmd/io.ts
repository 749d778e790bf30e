/**
 * Everything that touches the terminal or the process: streams, environment, prompts, reading the
 * password and token sources. Commands receive an `Io` so tests and the runtime see the same code.
 */
import * as fs from 'node:fs';
import { Buffer } from 'node:buffer';
import { TpError, usage } from '../src/errors.ts';

export interface Io {
  env: Readonly<Record<string, string | undefined>>;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  stdin: NodeJS.ReadStream;
  isTerminal: boolean;
}

/**
 * Variables glibc's resolver reads on every lookup, from the C environment: HOSTALIASES maps a
 * single-label name to any other name, LOCALDOMAIN replaces the search domains, RES_OPTIONS sets
 * ndots (which names get a search domain appended first), RESOLV_HOST_CONF and the RESOLV_*
 * switches override /etc/host.conf. Node and Deno resolve through getaddrinfo, and an agent
 * controls the environment exec starts in (SPEC §6): names resolve as the system's own files say.
 */
const RESOLVER_ENV = [
  'HOSTALIASES',
  'LOCALDOMAIN',
  'RES_OPTIONS',
  'RESOLV_HOST_CONF',
  'RESOLV_MULTI',
  'RESOLV_REORDER',
  'RESOLV_ADD_TRIM_DOMAINS',
  'RESOLV_OVERRIDE_TRIM_DOMAINS',
] as const;

/**
 * Removes the resolver variables from this process's environment; called first thing, before any
 * lookup. Deleting from `process.env` calls unsetenv(3) on Node and Deno (Deno.env.delete), so
 * getaddrinfo no longer sees them either.
 */
export function dropResolverEnvironment(): void {
  for (const name of RESOLVER_ENV) delete process.env[name];
}

export function processIo(): Io {
  return {
    env: process.env,
    stdout: process.stdout,
    stderr: process.stderr,
    // Getters: Node builds process.stdin (a file or socket stream, ~10 ms) on first use, and most
    // commands never read it.
    get stdin() {
      return process.stdin;
    },
    get isTerminal() {
      return process.stdin.isTTY === true;
    },
  };
}

export async function write(
  stream: NodeJS.WritableStream,
  data: string | Uint8Array,
): Promise<void> {
  if (data.length === 0) return;
  await new Promise<void>((resolve, reject) => {
    stream.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

export async function readAll(
  stream: NodeJS.ReadableStream,
  limit: number,
  what: string,
): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
    size += b.length;
    if (size > limit) throw usage('input_too_large', `${what} is larger than ${limit} bytes`);
    chunks.push(b);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/** Reads a file named on the command line; a missing or unreadable file is a usage error. */
/**
 * Reads a file the user named. `secret`: a password or token file, refused (as ssh refuses a key)
 * when it is a regular file that group or others may read or write.
 */
export function readUserFile(
  path: string,
  what: string,
  limit = 16 * 1024 * 1024,
  options: { secret?: boolean } = {},
): Uint8Array {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'error';
    throw usage('unreadable_file', `cannot read ${what} ${path} (${code})`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw usage('unreadable_file', `${what} ${path} is a directory`);
    if (options.secret === true && st.isFile() && (st.mode & 0o077) !== 0) {
      throw usage(
        'insecure_file',
        `${what} ${path} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)})`,
        `run: chmod 600 ${path}`,
      );
    }
    if (st.size > limit) {
      throw usage('input_too_large', `${what} ${path} is larger than ${limit} bytes`);
    }
    return new Uint8Array(fs.readFileSync(fd));
  } finally {
    fs.closeSync(fd);
  }
}

/** Drops exactly one trailing newline (LF or CRLF), as password and token files usually end. */
export function dropTrailingNewline(b: Uint8Array): Uint8Array {
  let end = b.length;
  if (end > 0 && b[end - 1] === 0x0a) {
    end -= 1;
    if (end > 0 && b[end - 1] === 0x0d) end -= 1;
  }
  return b.subarray(0, end);
}

/**
 * Reads a line from the terminal without echo. Returns null when there is no terminal.
 * Raw mode is always restored, also on Ctrl-C (which aborts with a usage error).
 */
export async function promptHidden(io: Io, question: string): Promise<Uint8Array | null> {
  if (!io.isTerminal || typeof io.stdin.setRawMode !== 'function') return null;
  io.stderr.write(question);
  const stdin = io.stdin;
  stdin.setRawMode(true);
  stdin.resume();
  const bytes: number[] = [];
  try {
    return await new Promise<Uint8Array>((resolve, reject) => {
      const onData = (chunk: Buffer | string) => {
        for (const b of typeof chunk === 'string' ? Buffer.from(chunk) : chunk) {
          if (b === 0x0d || b === 0x0a) {
            stdin.off('data', onData);
            resolve(new Uint8Array(bytes));
            return;
          }
          if (b === 0x03 || b === 0x04) {
            stdin.off('data', onData);
            reject(new TpError('usage', 'aborted', 'aborted at the prompt'));
            return;
          }
          if (b === 0x7f || b === 0x08) bytes.pop();
          else bytes.push(b);
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    io.stderr.write('\n');
    bytes.fill(0);
  }
}

/** Reads a visible line from the terminal (for typed confirmations). */
export async function promptLine(io: Io, question: string): Promise<string | null> {
  if (!io.isTerminal) return null;
  io.stderr.write(question);
  const stdin = io.stdin;
  stdin.resume();
  try {
    return await new Promise<string>((resolve) => {
      let text = '';
      const onData = (chunk: Buffer | string) => {
        text += chunk.toString();
        const nl = text.indexOf('\n');
        if (nl >= 0) {
          stdin.off('data', onData);
          resolve(text.slice(0, nl).replace(/\r$/, ''));
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.pause();
  }
}
