/**
 * The MCP server of issue #15 (SPEC §13): four tools with fixed names, each a thin call to one of
 * serve's agent endpoints with the agent's token. It holds no password, no key and no value: the
 * caller supplies `call`, which reaches a running serve over HTTP (`trust-protocol mcp`) or calls
 * serve's own handler in process (`/v1/mcp`). Refusals come back as tool results with
 * `isError: true`, the reason and the hint, never as protocol errors.
 */
import { Buffer } from 'node:buffer';
import { type CallToolResult, McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { decodeUtf8Strict } from '../bytes.ts';
import { TpError } from '../errors.ts';
import { ERROR_HEADER } from '../serve/http_error.ts';
import { AUDIT_SEQ_HEADER } from '../serve/protocol.ts';

export interface ApiAnswer {
  status: number;
  headers: ReadonlyArray<readonly [string, string]>;
  body: Uint8Array;
}

/** One request to serve's API as the agent; throws a TpError when serve cannot be reached. */
export type ApiCall = (method: string, path: string, json?: unknown) => Promise<ApiAnswer>;

export const TOOL_NAMES = ['http_request', 'list_credentials', 'check_request', 'agent_status'];

/** The template of SPEC §5; serve checks it (unknown fields are refused there, not dropped). */
const TEMPLATE = z.looseObject({
  credential: z.string().optional().describe(
    'the credential whose value {{CREDENTIAL}} stands for',
  ),
  method: z.string().optional().describe('HTTP method, default GET'),
  url: z.string().describe('the full https URL; its host must be allowed for the credential'),
  headers: z.record(z.string(), z.string()).optional().describe(
    'request headers; put {{CREDENTIAL}} where the secret goes, e.g. "Authorization": "Bearer {{CREDENTIAL}}"',
  ),
  body: z.unknown().optional().describe('a string is sent as is; any other JSON value as JSON'),
});

export function createMcpServer(call: ApiCall, version: string): McpServer {
  const server = new McpServer({ name: 'trust-protocol', version });
  server.registerTool('http_request', {
    title: 'HTTP request with a stored credential',
    description:
      'Send an HTTP request through trust-protocol, which injects the credential where the ' +
      'template says {{CREDENTIAL}} (or {{CREDENTIAL:name}}) if policy allows, and returns the ' +
      'response with any echo of the secret redacted. You never see the value.',
    inputSchema: TEMPLATE,
  }, (template) =>
    _tool(async () => {
      const answer = await call('POST', '/v1/proxy', template);
      const refused = _refusal(answer);
      if (refused !== null) return refused;
      const text = decodeUtf8Strict(answer.body);
      const seq = _header(answer, AUDIT_SEQ_HEADER);
      return _result({
        status: answer.status,
        headers: _headerObject(answer.headers),
        body: text ?? Buffer.from(answer.body).toString('base64'),
        body_encoding: text === null ? 'base64' : 'utf-8',
        audit_seq: seq === null ? null : Number(seq),
      });
    }));
  server.registerTool('list_credentials', {
    title: 'Credentials this agent may use',
    description: 'The credentials granted to this agent: name, allowed domains, placements, base ' +
      'URL, minimum tier and rate limit. Never a value.',
  }, () => _tool(async () => _jsonAnswer(await call('GET', '/v1/credentials'))));
  server.registerTool('check_request', {
    title: 'Would this request be allowed?',
    description: 'The policy decision for a template without sending it: {allowed: true} or ' +
      '{allowed: false, code, reason, hint}. Decrypts nothing and is not counted as a refusal.',
    inputSchema: TEMPLATE,
  }, (template) => _tool(async () => _jsonAnswer(await call('POST', '/v1/check', template))));
  server.registerTool('agent_status', {
    title: "This agent's status",
    description: 'Tier, token expiry, brakes in force for this agent, and the rate budget left.',
  }, () => _tool(async () => _jsonAnswer(await call('GET', '/v1/agent/status'))));
  return server;
}

async function _tool(run: () => Promise<CallToolResult>): Promise<CallToolResult> {
  try {
    return await run();
  } catch (e) {
    if (!(e instanceof TpError)) throw e;
    return _error({ code: e.code, kind: e.kind, message: e.message, hint: e.hint });
  }
}

function _jsonAnswer(answer: ApiAnswer): CallToolResult {
  const refused = _refusal(answer);
  if (refused !== null) return refused;
  return _result(JSON.parse(decodeUtf8Strict(answer.body) ?? 'null') as Record<string, unknown>);
}

/** serve's error JSON (marked by its error header) as a tool error; null for any other answer. */
function _refusal(answer: ApiAnswer): CallToolResult | null {
  if (_header(answer, ERROR_HEADER) === null) return null;
  let error: Record<string, unknown> = {};
  try {
    const json = JSON.parse(decodeUtf8Strict(answer.body) ?? '') as { error?: unknown };
    if (typeof json.error === 'object' && json.error !== null) {
      error = json.error as Record<string, unknown>;
    }
  } catch { /* the status says enough */ }
  const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return _error({
    code: text(error.code) ?? `http_${answer.status}`,
    kind: text(error.kind) ?? 'internal',
    message: text(error.message) ?? `serve answered HTTP ${answer.status}`,
    hint: text(error.hint),
    ...(typeof error.retry_after === 'number' ? { retry_after: error.retry_after } : {}),
  });
}

function _error(
  e:
    & { code: string; kind: string; message: string; hint: string | undefined }
    & Record<
      string,
      unknown
    >,
): CallToolResult {
  const { hint, ...rest } = e;
  const error = { ...rest, ...(hint === undefined ? {} : { hint }) };
  return {
    isError: true,
    content: [{
      type: 'text',
      text: `refused (${e.code}): ${e.message}${hint === undefined ? '' : `\nhint: ${hint}`}`,
    }],
    structuredContent: { error },
  };
}

function _result(value: Record<string, unknown>): CallToolResult {
  return {
    content: [{ type: 'text', text: JSON.stringify(value, null, 2) }],
    structuredContent: value,
  };
}

function _header(answer: ApiAnswer, name: string): string | null {
  const lower = name.toLowerCase();
  return answer.headers.find(([n]) => n.toLowerCase() === lower)?.[1] ?? null;
}

/** Names in lower case; a repeated name's values joined with ", " (Set-Cookie one per line). */
function _headerObject(headers: ApiAnswer['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of headers) {
    const key = name.toLowerCase();
    if (key === ERROR_HEADER.toLowerCase() || key === AUDIT_SEQ_HEADER.toLowerCase()) continue;
    const prev = out[key];
    out[key] = prev === undefined ? value : `${prev}${key === 'set-cookie' ? '\n' : ', '}${value}`;
  }
  return out;
}
