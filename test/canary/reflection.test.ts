/**
 * Reflection (SPEC §6 redaction): an allowed upstream echoes the secret it received in every form
 * SPEC §6 lists, in the body, a header, the status text, compressed, and as a server-sent events
 * stream split at every kind of boundary. The agent's output (body, `-i`, `--json`) carries no form
 * of the canary and carries `[REDACTED:k]` where the secret was.
 *
 * The upstream is a raw TLS socket writing its own HTTP/1.1 bytes, so the status line, chunk
 * boundaries and write timing are exactly as written here on Node and on Deno.
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunResult } from '../helpers/cli.ts';
import {
  bearer,
  type Canary,
  dotnetJson,
  expectNoCanary,
  findCanary,
  newCanary,
  percentEncode,
  setupCanary,
  whatwgPath,
  whatwgQuery,
} from '../helpers/canary.ts';

interface Echo {
  reason?: string;
  headers?: Array<[string, string]>;
  /** The body before any Content-Encoding. */
  body: Buffer;
  encoding?: 'gzip' | 'deflate' | 'br';
  /** Chunked transfer: split points in the body, or one chunk per byte. */
  chunks?: number[] | 'bytes';
  delayMs?: number;
  contentType?: string;
}

interface Case {
  echo: (secret: Buffer) => Echo;
  /** The credential sent (default `k`); `u` holds a non-ASCII value. */
  credential?: 'u';
  /** What the agent must see instead: in the body, a header line, or the status line. */
  expect: { where: 'body' | 'header' | 'status'; match: RegExp };
}

const R = '\\[REDACTED:k\\]';
const B64 = '[A-Za-z0-9+/_=-]';
const CASES: Record<string, Case> = {};

function _text(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

CASES['raw'] = {
  echo: (s) => ({ body: Buffer.concat([_text('before '), s, _text(' after')]) }),
  expect: { where: 'body', match: new RegExp(`^before ${R} after$`) },
};

for (const alphabet of ['base64', 'base64url'] as const) {
  for (const align of [0, 1, 2]) {
    for (const shape of ['embedded', 'padded', 'unpadded'] as const) {
      CASES[`${alphabet}, offset ${align}, ${shape}`] = {
        echo: (s) => {
          const suffix = shape === 'embedded' ? randomBytes(3) : Buffer.alloc(0);
          const encoded = Buffer.concat([randomBytes(align), s, suffix]).toString('base64');
          let text = alphabet === 'base64'
            ? encoded
            : encoded.replaceAll('+', '-').replaceAll('/', '_');
          if (shape === 'unpadded') text = text.replace(/=+$/, '');
          return { body: _text(`b64=${text};end`) };
        },
        expect: { where: 'body', match: new RegExp(`^b64=${B64}{0,3}${R}${B64}{0,8};end$`) },
      };
    }
  }
}

CASES['hex, lower case'] = {
  echo: (s) => ({ body: _text(`hex=${s.toString('hex')};`) }),
  expect: { where: 'body', match: new RegExp(`^hex=${R};$`) },
};
CASES['hex, upper case'] = {
  echo: (s) => ({ body: _text(`hex=${s.toString('hex').toUpperCase()};`) }),
  expect: { where: 'body', match: new RegExp(`^hex=${R};$`) },
};
CASES['percent-encoded (encodeURIComponent)'] = {
  echo: (s) => ({ body: _text(`pct=${encodeURIComponent(s.toString('latin1'))};`) }),
  expect: { where: 'body', match: new RegExp(`^pct=${R};$`) },
};
CASES['percent-encoded (RFC 3986)'] = {
  echo: (s) => ({ body: _text(`pct=${percentEncode(s)};`) }),
  expect: { where: 'body', match: new RegExp(`^pct=${R};$`) },
};
CASES['percent-encoded (form, + for space)'] = {
  echo: (s) => ({ body: _text(`pct=${percentEncode(s, { plus: true })};`) }),
  expect: { where: 'body', match: new RegExp(`^pct=${R};$`) },
};
CASES['percent-encoded (lower-case hex)'] = {
  echo: (s) => ({
    body: _text(`pct=${percentEncode(s).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase())};`),
  }),
  expect: { where: 'body', match: new RegExp(`^pct=${R};$`) },
};
CASES['percent-encoded (every byte)'] = {
  echo: (s) => ({ body: _text(`pct=${percentEncode(s, { all: true })};`) }),
  expect: { where: 'body', match: new RegExp(`^pct=${R};$`) },
};
CASES['JSON-escaped'] = {
  echo: (s) => ({
    body: _text(JSON.stringify({ echo: s.toString('latin1') })),
    contentType: 'application/json',
  }),
  expect: { where: 'body', match: new RegExp(`^\\{"echo":"${R}"\\}$`) },
};
for (
  const [name, encode] of [
    ['encodeURI', (s: string) => encodeURI(s)],
    ["Python's quote (/ kept)", (s: string) => percentEncode(_text(s)).replaceAll('%2F', '/')],
    ['a WHATWG URL path', whatwgPath],
    ['a WHATWG URL query', whatwgQuery],
  ] as const
) {
  CASES[`percent-encoded as ${name}`] = {
    echo: (s) => ({ body: _text(`url=${encode(s.toString('utf8'))};`) }),
    expect: { where: 'body', match: new RegExp(`^url=${R};$`) },
  };
}
CASES['JSON-escaped as .NET writes it (\\u0022, \\u002B)'] = {
  echo: (s) => ({
    body: _text(`{"echo":"${dotnetJson(s.toString('latin1'))}"}`),
    contentType: 'application/json',
  }),
  expect: { where: 'body', match: new RegExp(`^\\{"echo":"${R}"\\}$`) },
};
for (const encoding of ['gzip', 'deflate', 'br'] as const) {
  CASES[`${encoding}-compressed`] = {
    echo: (s) => ({ body: Buffer.concat([_text('before '), s, _text(' after')]), encoding }),
    expect: { where: 'body', match: new RegExp(`^before ${R} after$`) },
  };
}
CASES['in response header values'] = {
  echo: (s) => ({
    headers: [
      ['X-Echo', s.toString('latin1')],
      ['X-Echo-Base64', s.toString('base64')],
      ['X-Echo-Hex', s.toString('hex')],
      ['Set-Cookie', `token=${percentEncode(s)}; Secure`],
    ],
    body: _text('ok'),
  }),
  expect: {
    where: 'header',
    match: new RegExp(`^X-Echo: ${R}\\r?$[\\s\\S]*^Set-Cookie: token=${R}; Secure\\r?$`, 'im'),
  },
};
CASES['in the status text'] = {
  echo: (s) => ({ reason: `Echo ${s.toString('latin1')} end`, body: _text('ok') }),
  expect: { where: 'status', match: new RegExp(`^HTTP/1\\.1 200 Echo ${R} end\\r?$`, 'm') },
};
CASES['in the status text, base64'] = {
  echo: (s) => ({ reason: `Echo ${s.toString('base64')}`, body: _text('ok') }),
  expect: { where: 'status', match: new RegExp(`^HTTP/1\\.1 200 Echo ${R}${B64}{0,4}\\r?$`, 'm') },
};

// Issue #14: forms echoing servers really produce, each written here by an encoder of its own.
const BOMS = {
  none: Buffer.alloc(0),
  le: Buffer.from([0xff, 0xfe]),
  be: Buffer.from([0xfe, 0xff]),
};
for (const order of ['LE', 'BE'] as const) {
  for (const bom of [false, true]) {
    CASES[`UTF-16${order}${bom ? ' with BOM' : ''}`] = {
      echo: (s) => {
        const le = Buffer.from(s.toString('latin1'), 'utf16le');
        const text = order === 'LE' ? le : Buffer.from(le).swap16();
        const mark = bom ? BOMS[order === 'LE' ? 'le' : 'be'] : BOMS.none;
        return { body: Buffer.concat([_text('before '), mark, text, _text(' after')]) };
      },
      expect: {
        where: 'body',
        match: new RegExp(
          `^before ${bom ? (order === 'LE' ? '\\xff\\xfe' : '\\xfe\\xff') : ''}${R} after$`,
        ),
      },
    };
  }
}
const HTML_NAMED: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};
const htmlCases: Record<string, (c: string, i: number) => string> = {
  'decimal references': (c) => `&#${c.charCodeAt(0)};`,
  'hex references, x and X, leading zeros': (c, i) =>
    i % 2 === 0
      ? `&#x${c.charCodeAt(0).toString(16)};`
      : `&#X00${c.charCodeAt(0).toString(16).toUpperCase()};`,
  "an escaper's named references (&amp; &lt; &gt; &quot; &#39;)": (c) => HTML_NAMED[c] ?? c,
  'a mix of literal characters and every kind of reference': (c, i) =>
    [c, `&#${c.charCodeAt(0)};`, HTML_NAMED[c] ?? c, `&#x${c.charCodeAt(0).toString(16)};`][
      (i * 7) % 4
    ],
};
for (const [name, encode] of Object.entries(htmlCases)) {
  CASES[`HTML, ${name}`] = {
    echo: (s) => ({
      body: _text(`<p title="x">${[...s.toString('latin1')].map(encode).join('')}</p>`),
      contentType: 'text/html',
    }),
    expect: { where: 'body', match: new RegExp(`^<p title="x">${R}</p>$`) },
  };
}
const u = (c: string, upper = false) => {
  const hex = c.charCodeAt(0).toString(16).padStart(4, '0');
  return '\\u' + (upper ? hex.toUpperCase() : hex);
};
CASES['JSON, every character \\u-escaped'] = {
  echo: (s) => ({
    body: _text(`{"echo":"${[...s.toString('latin1')].map((c) => u(c)).join('')}"}`),
    contentType: 'application/json',
  }),
  expect: { where: 'body', match: new RegExp(`^\\{"echo":"${R}"\\}$`) },
};
CASES['JSON, \\u escapes in upper case mixed with literal characters'] = {
  echo: (s) => ({
    body: _text(
      `{"echo":"${
        [...s.toString('latin1')].map((c, i) =>
          i % 3 === 0 ? JSON.stringify(c).slice(1, -1) : u(c, true)
        ).join('')
      }"}`,
    ),
    contentType: 'application/json',
  }),
  expect: { where: 'body', match: new RegExp(`^\\{"echo":"${R}"\\}$`) },
};
const hexCases: Record<string, (pairs: string[]) => string> = {
  'separated by colons': (p) => p.join(':'),
  'separated by spaces, upper case': (p) => p.join(' ').toUpperCase(),
  'separated by dashes': (p) => p.join('-'),
  'as \\x escapes': (p) => p.map((h) => `\\x${h}`).join(''),
  'in mixed case': (p) => p.map((h, i) => i % 2 === 0 ? h.toUpperCase() : h).join(''),
};
for (const [name, encode] of Object.entries(hexCases)) {
  CASES[`hex ${name}`] = {
    echo: (s) => ({
      body: _text(`hex=${encode([...s].map((b) => b.toString(16).padStart(2, '0')))};`),
    }),
    expect: { where: 'body', match: new RegExp(`^hex=${R};$`) },
  };
}
// Node's req.headers holds each UTF-8 byte of a header value as a latin1 character; an echo
// server's JSON.stringify(req.headers) then writes each as UTF-8 (or \u00XX, Python-style).
const RU = '\\[REDACTED:u\\]';
CASES['a non-ASCII value through a latin1/UTF-8 mix-up (JSON.stringify of req.headers)'] = {
  credential: 'u',
  echo: (s) => ({
    body: Buffer.from(JSON.stringify({ headers: { authorization: s.toString('latin1') } }), 'utf8'),
    contentType: 'application/json',
  }),
  expect: { where: 'body', match: new RegExp(`^\\{"headers":\\{"authorization":"${RU}"\\}\\}$`) },
};
CASES['a non-ASCII value through a latin1/UTF-8 mix-up, \\u-escaped'] = {
  credential: 'u',
  echo: (s) => ({
    body: _text(
      JSON.stringify({ authorization: s.toString('latin1') }).replace(
        /[\u0080-\uffff]/g,
        (c) => u(c),
      ),
    ),
    contentType: 'application/json',
  }),
  expect: { where: 'body', match: new RegExp(`^\\{"authorization":"${RU}"\\}$`) },
};

const SSE = 'text/event-stream';
CASES['SSE, one byte per write'] = {
  echo: (s) => ({
    body: Buffer.concat([
      _text('data: '),
      s,
      _text('\n\ndata: {"token":'),
      _text(JSON.stringify(s.toString('latin1'))),
      _text('}\n\ndata: '),
      _text(s.toString('hex')),
      _text('\n\n'),
    ]),
    chunks: 'bytes',
    delayMs: 1,
    contentType: SSE,
  }),
  expect: {
    where: 'body',
    match: new RegExp(`^data: ${R}\\n\\ndata: \\{"token":"${R}"\\}\\n\\ndata: ${R}\\n\\n$`),
  },
};
CASES['SSE, base64 one byte per write'] = {
  echo: (s) => ({
    body: _text(`data: ${s.toString('base64')}\n\n`),
    chunks: 'bytes',
    delayMs: 1,
    contentType: SSE,
  }),
  expect: { where: 'body', match: new RegExp(`^data: ${R}${B64}{0,4}\\n\\n$`) },
};
// Split points relative to the start of the secret inside `data: SECRET\n\n`.
for (const at of ['0', '1', 'half', 'last', 'end']) {
  CASES[`SSE, split in two at ${at}`] = {
    echo: (s) => {
      const offsets: Record<string, number> = {
        '0': 0,
        '1': 1,
        half: Math.floor(s.length / 2),
        last: s.length - 1,
        end: s.length,
      };
      return {
        body: Buffer.concat([_text('data: '), s, _text('\n\n')]),
        chunks: [6 + offsets[at]],
        delayMs: 40,
        contentType: SSE,
      };
    },
    expect: { where: 'body', match: new RegExp(`^data: ${R}\\n\\n$`) },
  };
}
CASES['SSE, split at every third byte'] = {
  echo: (s) => {
    const body = Buffer.concat([_text('event: key\ndata: '), s, _text('\n\n')]);
    return {
      body,
      chunks: Array.from({ length: Math.floor(body.length / 3) }, (_, i) => 3 * (i + 1)),
      delayMs: 2,
      contentType: SSE,
    };
  },
  expect: { where: 'body', match: new RegExp(`^event: key\\ndata: ${R}\\n\\n$`) },
};

function _delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function _compress(body: Buffer, encoding: Echo['encoding']): Buffer {
  if (encoding === 'gzip') return gzipSync(body);
  if (encoding === 'deflate') return deflateSync(body);
  if (encoding === 'br') return brotliCompressSync(body);
  return body;
}

function _pieces(payload: Buffer, chunks: Echo['chunks']): Buffer[] {
  if (chunks === undefined) return [payload];
  const points = chunks === 'bytes'
    ? Array.from({ length: payload.length - 1 }, (_, i) => i + 1)
    : chunks.filter((p) => p > 0 && p < payload.length);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of [...points, payload.length]) {
    out.push(payload.subarray(at, p));
    at = p;
  }
  return out;
}

async function _respond(socket: Socket, echo: Echo): Promise<void> {
  const payload = _compress(echo.body, echo.encoding);
  const head = [
    `HTTP/1.1 200 ${echo.reason ?? 'OK'}`,
    `Content-Type: ${echo.contentType ?? 'text/plain'}`,
    ...(echo.headers ?? []).map(([k, v]) => `${k}: ${v}`),
    ...(echo.encoding === undefined ? [] : [`Content-Encoding: ${echo.encoding}`]),
    echo.chunks === undefined ? `Content-Length: ${payload.length}` : 'Transfer-Encoding: chunked',
    'Connection: close',
  ].join('\r\n') + '\r\n\r\n';
  if (echo.chunks === undefined) {
    socket.end(Buffer.concat([_text(head), payload]));
    return;
  }
  socket.write(_text(head));
  for (const piece of _pieces(payload, echo.chunks)) {
    await _delay(echo.delayMs ?? 0);
    if (socket.destroyed) return;
    socket.write(Buffer.concat([_text(`${piece.length.toString(16)}\r\n`), piece, _text('\r\n')]));
  }
  socket.end(_text('0\r\n\r\n'));
}

/** Reads the request head, takes the secret from `Authorization: Bearer`, answers `/case/NAME`. */
function _upstream(socket: Socket): void {
  let received = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const end = received.indexOf('\r\n\r\n');
    if (end < 0) return;
    socket.off('data', onData);
    const [requestLine, ...lines] = received.subarray(0, end).toString('latin1').split('\r\n');
    const name = decodeURIComponent(requestLine.split(' ')[1].replace(/^\/case\//, ''));
    const auth = lines.find((l) => /^authorization:/i.test(l)) ?? '';
    const secret = _text(auth.replace(/^authorization:\s*Bearer /i, ''));
    const c = CASES[name];
    if (c === undefined) {
      socket.end(_text('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'));
      return;
    }
    _respond(socket, c.echo(secret)).catch(() => socket.destroy());
  };
  socket.on('data', onData);
}

let f: Canary;
/** A non-ASCII value (credential `u`), for the latin1/UTF-8 mix-up. */
const UNICODE = `sk-ünïcödé-${randomBytes(8).toString('hex')}`;
beforeAll(async () => {
  f = await setupCanary({
    canary: newCanary({ special: true }),
    allowedRaw: _upstream,
    credentials: [{ name: 'u', value: UNICODE, flags: ['--allowed-domains', 'api.allowed.test'] }],
  });
});
afterAll(() => f.close());

function _body(r: RunResult, include: boolean): string {
  const text = r.stdoutBytes;
  if (!include) return Buffer.from(text).toString('latin1');
  const i = Buffer.from(text).indexOf('\r\n\r\n');
  return Buffer.from(text).subarray(i + 4).toString('latin1');
}

function _head(r: RunResult): string {
  const text = Buffer.from(r.stdoutBytes).toString('latin1');
  return text.slice(0, text.indexOf('\r\n\r\n') + 2);
}

function _run(name: string, args: string[]): Promise<RunResult> {
  const m = f.marker();
  const url = `https://api.allowed.test/case/${encodeURIComponent(name)}`;
  const credential = CASES[name].credential ?? 'k';
  return f.exec(bearer(url, m, { credential }), { args });
}

describe('the echoes are real', () => {
  it('every echo the upstream makes contains a form the checks detect', () => {
    for (const [name, c] of Object.entries(CASES)) {
      const value = c.credential === 'u' ? UNICODE : f.canary;
      const e = c.echo(Buffer.from(value, 'utf8'));
      const all = Buffer.concat([
        _text([e.reason ?? '', ...(e.headers ?? []).flat(), ''].join('\n')),
        e.body,
      ]);
      expect(findCanary(all, value), name).not.toBeNull();
    }
  });
});

describe.concurrent('reflected secrets are redacted', () => {
  for (const [name, c] of Object.entries(CASES)) {
    it(name, async () => {
      const [inc, json] = await Promise.all([_run(name, ['-i']), _run(name, ['--json'])]);
      for (const r of [inc, json]) {
        expect(r.code, r.stderr).toBe(0);
        f.expectClean(r);
      }
      const inBody = c.expect.where === 'body';
      expect(inBody ? _body(inc, true) : _head(inc)).toMatch(c.expect.match);
      expect(_head(inc)).toMatch(/^HTTP\/1\.1 200 /);
      const out = JSON.parse(json.stdout) as {
        status: number;
        headers: Record<string, string | string[]>;
        body: string;
        body_encoding: 'utf8' | 'base64';
      };
      expect(out.status).toBe(200);
      // A body that is not UTF-8 (a UTF-16 byte order mark) comes as base64.
      const body = out.body_encoding === 'base64'
        ? Buffer.from(out.body, 'base64').toString('latin1')
        : out.body;
      if (inBody) expect(body).toMatch(c.expect.match);
      if (c.expect.where === 'header') {
        expect(out.headers['x-echo']).toBe('[REDACTED:k]');
        expect(JSON.stringify(out.headers)).not.toMatch(/x-echo-(base64|hex)":"[^[]/);
      }
    });
  }

  it('plain output (no -i): the raw echo and an SSE stream split mid-secret', async () => {
    for (const name of ['raw', 'SSE, split in two at half', 'gzip-compressed']) {
      const r = await _run(name, []);
      expect(r.code, r.stderr).toBe(0);
      expect(_body(r, false)).toMatch(CASES[name].expect.match);
      f.expectClean(r);
    }
  });

  it('output written with -o FILE is redacted too', async () => {
    const file = `${f.t.dir}/out-${randomBytes(4).toString('hex')}`;
    const r = await _run('raw', ['-o', file]);
    expect(r.code, r.stderr).toBe(0);
    const written = readFileSync(file);
    expectNoCanary(written, f.canary, 'the -o file');
    expect(written.toString('latin1')).toMatch(CASES['raw'].expect.match);
  });
});
