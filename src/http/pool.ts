/**
 * Idle upstream connections kept alive for reuse by a long-running process (`serve`). A
 * connection is offered back only after a response was read exactly to the end of its framing
 * (Content-Length or chunked, nothing left over), from an HTTP/1.1 server that did not ask to
 * close; it is reused only for the same scheme, host name (SNI and certificate check), address,
 * port and trusted CAs. While idle, any byte from the server, an end or an error destroys it,
 * and it is closed after `idleMs` (below common server keep-alive timeouts of 5 s).
 */
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { setTimeout } from 'node:timers';

export interface PoolOptions {
  idleMs?: number;
  maxIdlePerKey?: number;
}

interface Idle {
  socket: Socket;
  timer: ReturnType<typeof setTimeout>;
  drop: () => void;
}

export class ConnectionPool {
  readonly #idleMs: number;
  readonly #maxIdle: number;
  readonly #idle = new Map<string, Idle[]>();
  #closed = false;

  constructor(options: PoolOptions = {}) {
    this.#idleMs = options.idleMs ?? 2_000;
    this.#maxIdle = options.maxIdlePerKey ?? 32;
  }

  static key(
    target: { tls: boolean; hostname: string; address: string; port: number },
    ca: string | undefined,
  ): string {
    const roots = ca === undefined ? 'default' : createHash('sha256').update(ca).digest('hex');
    return [target.tls ? 'https' : 'http', target.hostname, target.address, target.port, roots]
      .join('\n');
  }

  /** The most recently parked live connection for `key`, or null. */
  take(key: string): Socket | null {
    const list = this.#idle.get(key);
    for (let idle = list?.pop(); idle !== undefined; idle = list?.pop()) {
      this.#unpark(idle);
      if (!idle.socket.destroyed && idle.socket.readable && idle.socket.writable) {
        return idle.socket;
      }
      idle.socket.destroy();
    }
    return null;
  }

  /** Parks a connection whose last response was read to its end. */
  put(key: string, socket: Socket): void {
    const list = this.#idle.get(key) ?? [];
    if (this.#closed || socket.destroyed || list.length >= this.#maxIdle) {
      socket.destroy();
      return;
    }
    const drop = () => {
      this.#unpark(idle);
      const i = list.indexOf(idle);
      if (i >= 0) list.splice(i, 1);
      socket.destroy();
    };
    const idle: Idle = { socket, timer: setTimeout(drop, this.#idleMs).unref(), drop };
    // Unprompted bytes are not a response to anything: never hand them to the next request.
    socket.on('data', drop);
    socket.on('end', drop);
    socket.on('close', drop);
    socket.on('error', drop);
    socket.resume();
    list.push(idle);
    this.#idle.set(key, list);
  }

  /** Closes every idle connection; later `put`s close theirs. */
  close(): void {
    this.#closed = true;
    for (const list of this.#idle.values()) {
      for (const idle of list.splice(0)) {
        this.#unpark(idle);
        idle.socket.destroy();
      }
    }
  }

  #unpark(idle: Idle): void {
    clearTimeout(idle.timer);
    idle.socket.off('data', idle.drop);
    idle.socket.off('end', idle.drop);
    idle.socket.off('close', idle.drop);
    idle.socket.off('error', idle.drop);
  }
}
