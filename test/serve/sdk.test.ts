/**
 * The gateway with unmodified SDK clients (SPEC §8): the real `openai` and `@anthropic-ai/sdk`
 * packages, base URL set to the gateway and API key set to the agent token, against a local HTTPS
 * upstream that imitates each API and echoes the key it received. The upstream must get the real
 * key and never the agent token; the SDK must get `[REDACTED:name]` and never the key, in plain
 * and in streamed (server-sent events, the key split across TCP writes) responses.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { Buffer } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCredential, newAgent, newHome, type TestHome } from '../helpers/cli.ts';
import { expectNoCanary, newCanary } from '../helpers/canary.ts';
import { type Listener, type Recorded, startHttpsListener } from '../helpers/listeners.ts';
import { type Served, startServe, upstreamArgs } from '../helpers/serve.ts';

const OPENAI_KEY = `sk-proj-${newCanary().slice(10)}`;
const ANTHROPIC_KEY = `sk-ant-api03-${newCanary().slice(10)}`;
const KEYS = [OPENAI_KEY, ANTHROPIC_KEY];

let t: TestHome;
let agent: { id: string; token: string };
let upstream: Listener;
let s: Served;
/** Every response body and header block the SDKs received, as bytes. */
const seen: Array<Promise<Buffer>> = [];

function _delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Writes `text` in pieces, splitting the key it contains in the middle. */
async function _writeSplit(res: ServerResponse, text: string, key: string): Promise<void> {
  const at = text.indexOf(key);
  const cut = at < 0 ? text.length : at + Math.floor(key.length / 2);
  res.write(text.slice(0, cut));
  await _delay(30);
  res.write(text.slice(cut));
  await _delay(10);
}

/** Imitates POST /v1/chat/completions and POST /v1/messages, echoing the key they got. */
function _api(req: IncomingMessage, res: ServerResponse, rec: Recorded): void {
  const body = JSON.parse(Buffer.from(rec.body).toString('utf8') || '{}');
  const host = String(rec.headers.host);
  if (host === 'openai.allowed.test' && rec.path === '/v1/chat/completions') {
    const key = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
    const content = `echo: ${key}`;
    if (body.stream === true) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (delta: object, finish: string | null) =>
        `data: ${
          JSON.stringify({
            id: 'chatcmpl-1',
            object: 'chat.completion.chunk',
            created: 1,
            model: body.model,
            choices: [{ index: 0, delta, finish_reason: finish }],
          })
        }\n\n`;
      (async () => {
        await _writeSplit(res, chunk({ role: 'assistant', content: '' }, null), key);
        await _writeSplit(res, chunk({ content }, null), key);
        await _writeSplit(res, chunk({}, 'stop') + 'data: [DONE]\n\n', key);
        res.end();
      })();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': `req-${key}` });
    res.end(JSON.stringify({
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 1,
      model: body.model,
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    }));
    return;
  }
  if (host === 'anthropic.allowed.test' && rec.path === '/v1/messages') {
    const key = String(req.headers['x-api-key'] ?? '');
    const text = `echo: ${key}`;
    const message = {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: body.model,
      content: [] as object[],
      stop_reason: null as string | null,
      stop_sequence: null,
      usage: { input_tokens: 1, output_tokens: 1 },
    };
    if (body.stream === true) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const event = (type: string, data: object) =>
        `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
      (async () => {
        await _writeSplit(res, event('message_start', { message }), key);
        await _writeSplit(
          res,
          event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
          key,
        );
        await _writeSplit(
          res,
          event('content_block_delta', { index: 0, delta: { type: 'text_delta', text } }),
          key,
        );
        await _writeSplit(res, event('content_block_stop', { index: 0 }), key);
        await _writeSplit(
          res,
          event('message_delta', {
            delta: { stop_reason: 'end_turn', stop_sequence: null },
            usage: { output_tokens: 2 },
          }),
          key,
        );
        await _writeSplit(res, event('message_stop', {}), key);
        res.end();
      })();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      ...message,
      content: [{ type: 'text', text }],
      stop_reason: 'end_turn',
    }));
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":{"message":"not found"}}');
}

beforeAll(async () => {
  t = await newHome();
  upstream = await startHttpsListener(_api);
  for (
    const [name, key, host, inject] of [
      ['openai_key', OPENAI_KEY, 'openai.allowed.test', 'Authorization: Bearer {{CREDENTIAL}}'],
      ['anthropic_key', ANTHROPIC_KEY, 'anthropic.allowed.test', 'x-api-key: {{CREDENTIAL}}'],
    ]
  ) {
    const r = await addCredential(t, name as string, key as string, [
      '--allowed-domains',
      host as string,
      '--base-url',
      `https://${host}`,
      '--inject',
      inject as string,
    ]);
    expect(r.code, r.stderr).toBe(0);
  }
  agent = await newAgent(t, { grants: ['openai_key', 'anthropic_key'] });
  s = await startServe(
    t,
    upstreamArgs(t, upstream.port, ['openai.allowed.test', 'anthropic.allowed.test']),
  );
});

afterAll(async () => {
  const e = await s.stop();
  expect(e.code, e.stderr).toBe(0);
  await upstream.close();
  // Nothing any SDK received, headers or body, held a key; the upstream never saw the token.
  const all = Buffer.concat(await Promise.all(seen));
  expect(all.length).toBeGreaterThan(0);
  for (const key of KEYS) expectNoCanary(all, key, 'what the SDKs received');
  expect(Buffer.from(upstream.rawBytes()).includes(agent.token)).toBe(false);
});

/** fetch as the SDKs use it, keeping a copy of every response they receive. */
const recordingFetch: typeof fetch = async (input, init) => {
  const res = await fetch(input, init);
  const head = [...res.headers].map(([k, v]) => `${k}: ${v}\n`).join('');
  seen.push(
    res.clone().arrayBuffer().then((b) => Buffer.concat([Buffer.from(head), Buffer.from(b)])),
  );
  return res;
};

function _requestsTo(host: string): Recorded[] {
  return upstream.requests.filter((r) => r.headers.host === host);
}

describe('the openai SDK through the gateway', () => {
  const client = () =>
    new OpenAI({
      apiKey: agent.token,
      baseURL: `http://127.0.0.1:${s.port}/v1/gateway/openai_key/v1`,
      maxRetries: 0,
      fetch: recordingFetch,
    });

  it('a chat completion: the upstream got the key, the SDK a redacted echo', async () => {
    const before = _requestsTo('openai.allowed.test').length;
    const completion = await client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'what does {{credential}} do? {{CREDENTIAL}}' }],
    });
    expect(completion.choices[0]?.message.content).toBe('echo: [REDACTED:openai_key]');
    const got = _requestsTo('openai.allowed.test').slice(before);
    expect(got).toHaveLength(1);
    const req = got[0] as Recorded;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/v1/chat/completions');
    expect(req.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(req.headers['content-type']).toBe('application/json');
    // The body arrives exactly as the SDK wrote it: placeholder-like text is not touched.
    expect(JSON.parse(Buffer.from(req.body).toString('utf8')).messages[0].content)
      .toBe('what does {{credential}} do? {{CREDENTIAL}}');
    expect(Buffer.from(req.raw).includes(agent.token)).toBe(false);
  });

  it('a streamed chat completion: chunks arrive redacted, the key split across writes', async () => {
    const stream = await client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'stream please' }],
      stream: true,
    });
    let text = '';
    let chunks = 0;
    for await (const chunk of stream) {
      chunks += 1;
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    expect(chunks).toBe(3);
    expect(text).toBe('echo: [REDACTED:openai_key]');
  });

  it('a wrong API key (agent token) is refused before anything is sent', async () => {
    const before = upstream.requests.length;
    const bad = new OpenAI({
      apiKey: 'tpat_wrong',
      baseURL: `http://127.0.0.1:${s.port}/v1/gateway/openai_key/v1`,
      maxRetries: 0,
      fetch: recordingFetch,
    });
    const error = await bad.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    }).catch((e) => e);
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(error.status).toBe(401);
    expect(upstream.requests.length).toBe(before);
  });
});

describe('the anthropic SDK through the gateway', () => {
  const client = () =>
    new Anthropic({
      apiKey: agent.token,
      baseURL: `http://127.0.0.1:${s.port}/v1/gateway/anthropic_key`,
      maxRetries: 0,
      fetch: recordingFetch,
    });

  it('a message: the upstream got the key in x-api-key, the SDK a redacted echo', async () => {
    const before = _requestsTo('anthropic.allowed.test').length;
    const message = await client().messages.create({
      model: 'claude-test',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const block = message.content[0];
    expect(block?.type === 'text' ? block.text : null).toBe('echo: [REDACTED:anthropic_key]');
    const [req] = _requestsTo('anthropic.allowed.test').slice(before);
    expect(req?.path).toBe('/v1/messages');
    expect(req?.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    expect(req?.headers['anthropic-version']).toBeDefined();
    expect(req?.headers.authorization).toBeUndefined();
    expect(Buffer.from(req?.raw ?? []).includes(agent.token)).toBe(false);
  });

  it('a streamed message: events arrive redacted', async () => {
    const stream = client().messages.stream({
      model: 'claude-test',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'stream please' }],
    });
    const types: string[] = [];
    stream.on('streamEvent', (e) => types.push(e.type));
    expect(await stream.finalText()).toBe('echo: [REDACTED:anthropic_key]');
    expect(types).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
  });
});
