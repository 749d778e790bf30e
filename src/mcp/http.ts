/**
 * serve's `/v1/mcp`: one MCP server and one stateless Streamable HTTP transport (the SDK's
 * web-standard one) per request, answering JSON rather than an event stream. The handler has
 * already checked Host, Origin and the token; the tools call the handler back as the same agent.
 */
import { Buffer } from 'node:buffer';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/server';
import { TpError } from '../errors.ts';
import type { ServeRequest, ServeResponse } from '../serve/handler.ts';
import { type ApiAnswer, createMcpServer } from './tools.ts';

export async function serveMcpHttp(
  request: ServeRequest,
  body: Uint8Array | null,
  options: {
    version: string;
    call: (method: string, path: string, json?: unknown) => Promise<ServeResponse>;
  },
): Promise<ServeResponse> {
  const server = createMcpServer(
    async (method, path, json) => _collect(await options.call(method, path, json)),
    options.version,
  );
  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: true,
  });
  await server.connect(transport);
  try {
    const headers = new Headers();
    for (const [name, value] of request.headers) {
      // Framing is the adapter's business: the body was read already.
      if (/^(content-length|transfer-encoding|connection|keep-alive|te|upgrade)$/i.test(name)) {
        continue;
      }
      headers.append(name, value);
    }
    const response = await transport.handleRequest(
      new Request(`http://localhost${request.target}`, {
        method: request.method,
        headers,
        ...(body === null ? {} : { body: Buffer.from(body) }),
        signal: request.signal,
      }),
    );
    const out: Array<[string, string]> = [];
    response.headers.forEach((value, name) => out.push([name, value]));
    out.push(['Cache-Control', 'no-store'], ['X-Content-Type-Options', 'nosniff']);
    return {
      status: response.status,
      headers: out,
      body: new Uint8Array(await response.arrayBuffer()),
    };
  } finally {
    await server.close();
  }
}

/** A handler response read to its end; a stream cut by an error becomes that error. */
async function _collect(r: ServeResponse): Promise<ApiAnswer> {
  const chunks: Uint8Array[] = [];
  if (r.body instanceof Uint8Array) chunks.push(r.body);
  else if (r.body !== null) {
    try {
      for await (const chunk of r.body) chunks.push(chunk);
    } catch (e) {
      throw e instanceof TpError
        ? e
        : new TpError('upstream', 'serve_cut', 'the response failed part-way');
    }
  }
  return { status: r.status, headers: r.headers, body: new Uint8Array(Buffer.concat(chunks)) };
}
