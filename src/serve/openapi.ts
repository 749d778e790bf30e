/**
 * The OpenAPI 3.1 description of serve's API, served at `GET /v1/openapi.json`. docs/openapi.json
 * is a copy (test/serve/hardening.test.ts checks it matches what serve answers); regenerate it with
 *   node_modules/.bin/node -e "import('./src/serve/openapi.ts').then((m) =>
 *     console.log(JSON.stringify(m.OPENAPI, null, 2)))" > docs/openapi.json
 */
import { NAME_SOURCE } from '../grammar.ts';

const ERROR_STATUSES: Record<string, string> = {
  '400':
    'Usage error: malformed template, bad placeholder, bad header, bad gateway path (exec exit 2)',
  '401': 'No agent token, or not a valid one, or expired (exec exit 4)',
  '403':
    'Denied by policy (agent state, grant, tier, domain, scheme, port, placement), or a request from a web page: an Origin header, or a Host that does not name this server (exec exit 4)',
  '404': 'No such endpoint',
  '405': 'Method not allowed on this endpoint',
  '413': 'Request body larger than 10 MiB',
  '423': 'Blocked by an emergency brake (exec exit 5)',
  '429':
    "Over a rate limit: the credential's (code rate_limited) or this serve's per-agent limit (code agent_rate_limited); see Retry-After (exec exit 4)",
  '502': 'Upstream failure: DNS, connect, TLS, response too large (exec exit 7)',
  '503':
    'Sealed, state integrity failure, or the audit trail cannot be written: nothing was sent (exec exit 3, 8 or 6 by kind)',
  '504': 'Upstream timeout (exec exit 7)',
};

const ERROR_RESPONSE = (description: string, retry: boolean) => ({
  description,
  headers: {
    'Trust-Protocol-Error': {
      description: 'The error code; set only by serve itself (stripped from upstream answers)',
      schema: { type: 'string' },
    },
    ...(retry
      ? {
        'Retry-After': {
          description: 'Seconds until a request may succeed',
          schema: { type: 'integer', minimum: 1 },
        },
      }
      : {}),
  },
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

/** A JSON answer of the named schema. */
function _ok(description: string, schema: string): Record<string, unknown> {
  return {
    description,
    content: { 'application/json': { schema: { $ref: `#/components/schemas/${schema}` } } },
  };
}

function _errors(codes: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(
    codes.map((c) => [c, ERROR_RESPONSE(ERROR_STATUSES[c] as string, c === '429')]),
  );
}

const UPSTREAM_RESPONSE = {
  description:
    "The upstream's answer as it arrived (status, status text, headers, body; redirects are " +
    'returned, never followed), streamed with chunked transfer encoding, server-sent events ' +
    'included, with every form of an injected secret replaced by [REDACTED:name]. ' +
    'Content-Length, hop-by-hop, Access-Control-* and Trust-Protocol-* headers are not passed on. ' +
    'If the stream fails part-way the connection is cut, or, when the request carried ' +
    '`TE: trailers`, it ends with a Trust-Protocol-Error trailer holding the error JSON.',
  headers: {
    'Trust-Protocol-Audit-Seq': {
      description: "The sequence number of the request's `request.allowed` audit entry",
      schema: { type: 'string', pattern: '^\\d+$' },
    },
  },
  content: { '*/*': { schema: {} } },
};

/** What /v1/check, /v1/credentials and /v1/agent/status answer (src/serve/agent_api.ts). */
const AGENT_SCHEMAS = {
  CheckAnswer: {
    type: 'object',
    required: ['allowed'],
    properties: {
      allowed: { type: 'boolean' },
      agent: { type: 'string', description: 'allowed: the agent id' },
      credentials: { type: 'array', items: { type: 'string' } },
      code: { type: 'string', description: 'refused: the error code a request would get' },
      kind: { type: 'string', enum: ['usage', 'denied', 'brake'] },
      reason: { type: 'string' },
      hint: { type: 'string' },
      retry_after: { type: 'integer' },
    },
  },
  AgentCredentials: {
    type: 'object',
    required: ['agent', 'credentials'],
    properties: {
      agent: { type: 'string' },
      credentials: {
        type: 'array',
        items: {
          type: 'object',
          required: ['name', 'allowed_domains', 'any_domain', 'placements', 'min_tier'],
          properties: {
            name: { type: 'string' },
            allowed_domains: { type: 'array', items: { type: 'string' } },
            any_domain: { type: 'boolean' },
            placements: { type: 'array', items: { type: 'string' } },
            base_url: { type: ['string', 'null'] },
            gateway: { type: ['string', 'null'], description: 'the gateway path, if set up' },
            min_tier: { type: 'string' },
            rate: { type: ['string', 'null'] },
            usable: { type: 'boolean', description: "false: the agent's tier is too low" },
          },
        },
      },
    },
  },
  AgentStatus: {
    type: 'object',
    required: ['agent', 'brakes', 'braked', 'rate_limits'],
    properties: {
      agent: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          name: { type: 'string' },
          tier: { type: 'string' },
          state: { type: 'string' },
          token_expires_at: { type: ['string', 'null'] },
          grants: { type: 'array', items: { type: 'string' } },
        },
      },
      brakes: { type: 'array', items: { type: 'object' } },
      braked: { type: 'boolean' },
      rate_limits: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            credential: { type: 'string' },
            rate: { type: 'string' },
            used: { type: 'integer' },
            remaining: { type: 'integer' },
            resets_at: { type: ['string', 'null'] },
          },
        },
      },
      agent_rate: { type: ['string', 'null'], description: "serve's --agent-rate, if set" },
    },
  },
};

const LIMIT_HEADERS = [
  {
    name: 'Trust-Protocol-Timeout',
    in: 'header',
    description: "Seconds for the whole upstream request; can only lower serve's own limit",
    schema: { type: 'string', pattern: '^\\d+(\\.\\d+)?$' },
  },
  {
    name: 'Trust-Protocol-Max-Response-Bytes',
    in: 'header',
    description: "Cap on the response body; can only lower serve's own limit",
    schema: { type: 'string', pattern: '^\\d{1,15}$' },
  },
];

const GATEWAY_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch'] as const;

function _gatewayOperation(method: string) {
  return {
    operationId: `gateway${method[0]?.toUpperCase()}${method.slice(1)}`,
    summary: `Forward a ${method.toUpperCase()} to the credential's base URL`,
    description:
      "Forwards to the credential's base URL + PATH + the query string, with the method, the " +
      "client's headers (minus the agent token, Host, hop-by-hop, Proxy-*, Forwarded, " +
      'X-Forwarded-*, Accept-Encoding and Trust-Protocol-* headers) and the body as received ' +
      "(opaque bytes, never scanned for placeholders), plus the credential's inject header. " +
      'The agent token is read from the first of Authorization: Bearer, x-api-key, api-key, ' +
      'x-goog-api-key, and is never forwarded. The same checks and audit as exec apply. ' +
      'PATH may contain slashes; "." and ".." segments and backslashes are refused.',
    security: [{ bearer: [] }, { xApiKey: [] }, { apiKey: [] }, { googApiKey: [] }],
    parameters: [
      {
        name: 'credential',
        in: 'path',
        required: true,
        description: 'The credential name; it needs a base URL and an inject rule',
        schema: { type: 'string', pattern: `^${NAME_SOURCE}$` },
      },
      {
        name: 'path',
        in: 'path',
        required: true,
        description: 'The rest of the path, appended to the base URL (may be empty)',
        schema: { type: 'string' },
      },
      ...LIMIT_HEADERS,
    ],
    ...(['get', 'head', 'options'].includes(method) ? {} : {
      requestBody: {
        required: false,
        content: { '*/*': { schema: {} } },
        description: 'At most 10 MiB, forwarded as received',
      },
    }),
    responses: {
      default: UPSTREAM_RESPONSE,
      ..._errors(['400', '401', '403', '413', '423', '429', '502', '503', '504']),
    },
  };
}

export const OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'trust-protocol serve',
    version: '1',
    summary: 'A short-lived local proxy that injects credentials for AI agents',
    description: 'Listens on loopback or a 0600 unix socket only. Requests whose Host is not the ' +
      "listener's own loopback name (127.0.0.1:PORT, localhost:PORT, [::1]:PORT; `localhost` on " +
      'the unix socket), or that carry an Origin header, are refused with 403; there are no CORS ' +
      'headers. Limits: 16 KiB of headers, headers within 10 s and the whole request within 30 s, ' +
      '10 MiB bodies, 64 connections per listener. Every request that could use a credential is ' +
      'checked and audited exactly as `trust-protocol exec` does it.',
    license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
  },
  servers: [{ url: 'http://127.0.0.1:{port}', variables: { port: { default: '8080' } } }],
  paths: {
    '/v1/health': {
      get: {
        operationId: 'health',
        summary: 'Whether serve is up, and when it will exit',
        security: [],
        responses: {
          '200': _ok('serve is running', 'Health'),
          ..._errors(['403']),
        },
      },
    },
    '/v1/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'This document',
        security: [],
        responses: {
          '200': {
            description: 'The OpenAPI 3.1 document',
            content: { 'application/json': { schema: { type: 'object' } } },
          },
          ..._errors(['403']),
        },
      },
    },
    '/v1/proxy': {
      post: {
        operationId: 'proxy',
        summary: 'Carry out one request template, as `trust-protocol exec --template` does',
        security: [{ bearer: [] }],
        parameters: [
          ...LIMIT_HEADERS,
          {
            name: 'TE',
            in: 'header',
            description: '`trailers`: report a failure part-way through the stream in a trailer',
            schema: { type: 'string' },
          },
        ],
        requestBody: {
          required: true,
          content: {
            'application/json': { schema: { $ref: '#/components/schemas/Template' } },
          },
        },
        responses: {
          default: UPSTREAM_RESPONSE,
          ..._errors([
            '400',
            '401',
            '403',
            '405',
            '413',
            '423',
            '429',
            '502',
            '503',
            '504',
          ]),
        },
      },
    },
    '/v1/check': {
      post: {
        operationId: 'check',
        summary: 'Would this template be allowed? The decision, without sending anything',
        description: 'The checks of /v1/proxy before a value is needed (brakes, token, agent ' +
          'state, grant, tier, template, domain, scheme, port, placement, rate limit) on the ' +
          'MAC-checked vault. Decrypts nothing, writes no audit entry and is not counted by ' +
          'the monitor. A token that names no agent is refused (401); any other refusal is ' +
          'the answer, with status 200 and `allowed: false`.',
        security: [{ bearer: [] }],
        requestBody: {
          required: true,
          content: {
            'application/json': { schema: { $ref: '#/components/schemas/Template' } },
          },
        },
        responses: {
          '200': _ok('The decision', 'CheckAnswer'),
          ..._errors(['401', '403', '405', '413', '503']),
        },
      },
    },
    '/v1/credentials': {
      get: {
        operationId: 'credentials',
        summary: 'The credentials this agent may use: never a value, its length or a part of it',
        security: [{ bearer: [] }],
        responses: {
          '200': _ok('Granted credentials and where each may be sent', 'AgentCredentials'),
          ..._errors(['401', '403', '405', '503']),
        },
      },
    },
    '/v1/agent/status': {
      get: {
        operationId: 'agentStatus',
        summary: "The agent's own tier, token expiry, brakes in force for it, rate budget left",
        security: [{ bearer: [] }],
        responses: {
          '200': _ok("The agent's status", 'AgentStatus'),
          ..._errors(['401', '403', '405', '503']),
        },
      },
    },
    '/v1/mcp': {
      post: {
        operationId: 'mcp',
        summary: 'MCP over Streamable HTTP (stateless, JSON answers)',
        description: 'The tools of `trust-protocol mcp`: http_request, list_credentials, ' +
          'check_request, agent_status, each calling the endpoint above with the same token. ' +
          'The body is a JSON-RPC message of the Model Context Protocol; policy refusals are ' +
          'tool results with isError: true.',
        security: [{ bearer: [] }],
        requestBody: { required: true, content: { 'application/json': { schema: {} } } },
        responses: {
          '200': {
            description: 'The JSON-RPC answer',
            content: { 'application/json': { schema: {} } },
          },
          ..._errors(['401', '403', '405', '413', '503']),
        },
      },
    },
    '/v1/agent/renew': {
      post: {
        operationId: 'renew',
        summary: "The agent's own token renewal, as `trust-protocol agent renew` does it",
        description: "Granted only before the token expires, within the tier's renewal budget, " +
          "with a behaviour score at or above the tier's threshold computed from the audit trail, " +
          'and with no anomaly that refuses renewal since a human last issued the token. The ' +
          'request body is ignored. The old token stops working.',
        security: [{ bearer: [] }],
        responses: {
          '200': _ok('The new token, shown once, with the facts the decision used', 'Renewed'),
          ..._errors(['401', '403', '405', '503']),
        },
      },
    },
    '/v1/emergency': {
      post: {
        operationId: 'emergency',
        summary: 'Pull an emergency brake, as `trust-protocol emergency activate` does',
        description: "Only through serve's unix socket (refused over TCP, which every local user " +
          'reaches): anyone allowed on the socket may stop requests, with no token and no ' +
          'password, since a brake only narrows access. Lifting a brake needs the password ' +
          '(`trust-protocol emergency clear`).',
        requestBody: {
          required: true,
          content: {
            'application/json': { schema: { $ref: '#/components/schemas/BrakeRequest' } },
          },
        },
        responses: {
          '200': _ok('The brake, in force from now on', 'Brake'),
          ..._errors(['400', '403', '405', '413']),
        },
      },
    },
    '/v1/admin/whoami': {
      get: {
        operationId: 'adminWhoami',
        summary: 'Which admin the OIDC token signs in as, and the role it acts with',
        security: [{ oidc: [] }],
        responses: {
          '200': _ok('The linked admin and the identity', 'AdminIdentity'),
          ..._errors(['401', '403', '405', '502']),
        },
      },
    },
    '/v1/admin/agents': {
      get: {
        operationId: 'adminAgents',
        summary: 'The agents, as `trust-protocol agent list` shows them (never a token)',
        security: [{ oidc: [] }],
        responses: {
          '200': _ok('Every agent', 'AdminAgents'),
          ..._errors(['401', '403', '405', '502']),
        },
      },
    },
    ...Object.fromEntries(
      (['suspend', 'resume'] as const).map((action) => [
        `/v1/admin/agents/{id}/${action}`,
        {
          post: {
            operationId: `adminAgent${action === 'suspend' ? 'Suspend' : 'Resume'}`,
            summary: `${action === 'suspend' ? 'Suspend' : 'Resume'} an agent, within the ` +
              "signed-in admin's role (operator and above); audited in the admin's name",
            security: [{ oidc: [] }],
            parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
            responses: {
              '200': _ok('The agent after the change', 'AdminAgent'),
              ..._errors(['400', '401', '403', '405', '502', '503']),
            },
          },
        },
      ]),
    ),
    '/v1/admin/brake': {
      post: {
        operationId: 'adminBrake',
        summary: 'Pull an emergency brake as the signed-in admin (operator and above)',
        security: [{ oidc: [] }],
        requestBody: {
          required: true,
          content: {
            'application/json': { schema: { $ref: '#/components/schemas/BrakeRequest' } },
          },
        },
        responses: {
          '200': _ok('The brake, in force from now on', 'Brake'),
          ..._errors(['400', '401', '403', '405', '413', '502']),
        },
      },
    },
    '/v1/gateway/{credential}/{path}': Object.fromEntries(
      GATEWAY_METHODS.map((m) => [m, _gatewayOperation(m)]),
    ),
  },
  components: {
    securitySchemes: {
      bearer: {
        type: 'http',
        scheme: 'bearer',
        description: 'The agent token (tpat_...), as from `trust-protocol agent token`',
      },
      oidc: {
        type: 'http',
        scheme: 'bearer',
        bearerFormat: 'JWT',
        description: "An admin's ID token (or JWT access token) from an issuer configured with " +
          '`trust-protocol admin oidc add`, as from `trust-protocol admin login`; never an agent token',
      },
      xApiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
      apiKey: { type: 'apiKey', in: 'header', name: 'api-key' },
      googApiKey: { type: 'apiKey', in: 'header', name: 'x-goog-api-key' },
    },
    schemas: {
      ...AGENT_SCHEMAS,
      Template: {
        type: 'object',
        additionalProperties: false,
        required: ['url'],
        properties: {
          credential: { type: ['string', 'null'], description: 'What {{CREDENTIAL}} names' },
          method: { type: 'string', default: 'GET' },
          url: { type: 'string', format: 'uri' },
          headers: { type: 'object', additionalProperties: { type: 'string' } },
          body: {
            description: 'A string is sent as is; any other JSON value is sent as JSON',
          },
        },
        description:
          'Placeholders: {{CREDENTIAL}}, {{CREDENTIAL:name}}, each optionally |base64 before }}',
      },
      BrakeRequest: {
        type: 'object',
        required: ['reason'],
        properties: {
          scope: { enum: ['global', 'agent', 'credential', 'org'], default: 'global' },
          agent_id: { type: 'string', description: 'With scope agent' },
          credential_name: { type: 'string', description: 'With scope credential' },
          org: { type: 'string', description: 'With scope org' },
          reason: { type: 'string', maxLength: 1000 },
        },
      },
      Brake: {
        type: 'object',
        required: ['id', 'scope', 'target', 'reason', 'activated_at'],
        properties: {
          id: { type: 'string' },
          scope: { enum: ['global', 'agent', 'credential', 'org'] },
          target: { type: ['string', 'null'] },
          reason: { type: 'string' },
          activated_at: { type: 'string', format: 'date-time' },
        },
      },
      AdminIdentity: {
        type: 'object',
        required: ['admin', 'role', 'slot_role', 'via', 'issuer', 'subject', 'expires_at'],
        properties: {
          admin: { type: 'string' },
          role: { enum: ['owner', 'admin', 'operator', 'auditor'] },
          slot_role: { enum: ['owner', 'admin', 'operator', 'auditor'] },
          via: { const: 'oidc' },
          issuer: { type: 'string' },
          subject: { type: 'string' },
          expires_at: { type: ['string', 'null'], format: 'date-time' },
        },
      },
      AdminAgentView: {
        type: 'object',
        required: ['id', 'name', 'tier', 'state', 'grants'],
        properties: {
          id: { type: 'string' },
          name: { type: 'string' },
          tier: { type: 'string' },
          state: { enum: ['active', 'suspended', 'revoked'] },
          grants: { type: 'array', items: { type: 'string' } },
          token_expires_at: { type: ['string', 'null'], format: 'date-time' },
          created_at: { type: 'string', format: 'date-time' },
          updated_at: { type: 'string', format: 'date-time' },
        },
      },
      AdminAgents: {
        type: 'object',
        required: ['agents'],
        properties: {
          agents: { type: 'array', items: { $ref: '#/components/schemas/AdminAgentView' } },
        },
      },
      AdminAgent: {
        type: 'object',
        required: ['agent'],
        properties: { agent: { $ref: '#/components/schemas/AdminAgentView' } },
      },
      Health: {
        type: 'object',
        required: ['status', 'version', 'expires_at', 'tcp_url'],
        properties: {
          status: { const: 'ok' },
          version: { type: 'string' },
          expires_at: { type: 'string', format: 'date-time' },
          tcp_url: {
            type: ['string', 'null'],
            description:
              'The loopback TCP address serve listens on (http://HOST:PORT), null with the unix socket only: where SDKs reach /v1/gateway (`trust-protocol run` reads it)',
          },
        },
      },
      Renewed: {
        type: 'object',
        required: ['id', 'token', 'expires_at', 'score', 'min_score', 'renewals', 'budget'],
        properties: {
          id: { type: 'string' },
          name: { type: 'string' },
          tier: { type: 'string' },
          token: { type: 'string', description: 'The new agent token (tpat_...)' },
          expires_at: { type: 'string', format: 'date-time' },
          score: { type: 'integer', description: 'Behaviour score, 0-100' },
          min_score: { type: 'integer', description: "The tier's threshold" },
          renewals: { type: 'integer', description: 'Renewals since a human issued a token' },
          budget: { type: 'integer', description: "The tier's renewal budget" },
        },
      },
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'kind', 'message'],
            properties: {
              code: { type: 'string', description: 'Stable machine-readable reason' },
              kind: {
                enum: [
                  'usage',
                  'sealed',
                  'denied',
                  'brake',
                  'audit',
                  'upstream',
                  'integrity',
                  'internal',
                ],
                description: "Decides exec's exit code",
              },
              message: { type: 'string', description: 'Never contains a secret' },
              hint: { type: 'string', description: 'What to do' },
              retry_after: {
                type: 'integer',
                description: 'On 429: seconds until a request may succeed (as Retry-After)',
              },
            },
          },
        },
      },
    },
  },
} as const;
