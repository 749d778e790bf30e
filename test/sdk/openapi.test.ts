/**
 * serve's OpenAPI document (docs/openapi.json, from src/serve/openapi.ts) is valid OpenAPI 3.1 by
 * a real validator (@seriousme/openapi-schema-validator); a client generated from it by a
 * well-known generator (swagger-typescript-api, run by the test) and one built at run time by
 * openapi-fetch each send a template through a real serve. openapi-typescript (types for
 * openapi-fetch) is not used: it needs TypeScript 5's compiler API, which TypeScript 7 does not
 * have (docs/decisions.md); swagger-typescript-api brings its own TypeScript.
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import createClient from 'openapi-fetch';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPENAPI } from '../../src/serve/openapi.ts';
import { expectNoCanary } from '../helpers/canary.ts';
import { type SdkFixture, startSdkFixture } from './fixture.ts';

const doc = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8'));

describe('docs/openapi.json', () => {
  it('is valid OpenAPI 3.1', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc));
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it('is what src/serve/openapi.ts describes (regenerate it as its header says)', () => {
    expect(doc).toEqual(JSON.parse(JSON.stringify(OPENAPI)));
  });

  it('an invalid document is refused by the same validator (the check is real)', async () => {
    const broken = structuredClone(doc);
    broken.paths['/v1/proxy'].post.responses = 'none';
    expect((await new Validator().validate(broken)).valid).toBe(false);
  });
});

describe('an openapi-fetch client of the document, through a real serve', () => {
  let f: SdkFixture;
  // deno-lint-ignore no-explicit-any -- untyped: no `paths` types could be generated (see above)
  let client: ReturnType<typeof createClient<any>>;
  /** The path whose request body is a Template: POST /v1/proxy, found in the document. */
  const proxyPath = Object.keys(doc.paths).find((p) =>
    doc.paths[p].post?.requestBody?.content?.['application/json']?.schema?.$ref ===
      '#/components/schemas/Template'
  ) as string;

  beforeAll(async () => {
    f = await startSdkFixture();
    // deno-lint-ignore no-explicit-any
    client = createClient<any>({ baseUrl: f.tcp });
  });

  afterAll(async () => {
    await f.stop();
  });

  it('sends a template: the upstream got the key, the client the redacted answer', async () => {
    expect(proxyPath).toBe('/v1/proxy');
    const { response, data } = await client.POST(proxyPath, {
      headers: { Authorization: `Bearer ${f.agent.token}` },
      body: {
        credential: 'k',
        url: 'https://api.allowed.test/echo',
        headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
      },
      parseAs: 'text',
    });
    expect(response.status).toBe(200);
    expect(JSON.parse(data as string)).toEqual({ path: '/echo', echo: '[REDACTED:k]' });
    expectNoCanary(data as string, f.canary, 'the generated client response');
    expect(f.upstreamGotCanary()).toBe(true);
  });

  it('a refusal is the document Error schema', async () => {
    const { response, error } = await client.POST(proxyPath, {
      headers: { Authorization: `Bearer ${f.agent.token}` },
      body: {
        credential: 'k',
        url: 'https://evil.test/',
        headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
      },
    });
    expect(response.status).toBe(403);
    const required = doc.components.schemas.Error.properties.error.required as string[];
    for (const field of required) expect(error.error).toHaveProperty(field);
    expect(error.error.code).toBe('domain_not_allowed');
  });

  it('reads /v1/health', async () => {
    const { data } = await client.GET('/v1/health', {});
    expect(Object.keys(data).sort()).toEqual(doc.components.schemas.Health.required.sort());
  });
});

describe('a client generated from the document by swagger-typescript-api, through a real serve', () => {
  let f: SdkFixture;
  // deno-lint-ignore no-explicit-any -- the generated module, imported at run time
  let api: any;

  beforeAll(async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'tp-openapi-gen-'));
    const root = new URL('../..', import.meta.url).pathname;
    // The generator's own CLI, as a user would run it (`npx swagger-typescript-api generate`).
    execFileSync(process.execPath, [
      ...(process.versions.deno === undefined ? [] : ['run', '-A']),
      path.join(root, 'node_modules/swagger-typescript-api/dist/cli.mjs'),
      'generate',
      '--path',
      path.join(root, 'docs/openapi.json'),
      '--output',
      out,
      '--name',
      'api.ts',
      '--js',
    ], { stdio: 'pipe', cwd: out });
    const { Api } = await import(pathToFileURL(path.join(out, 'api.js')).href);
    f = await startSdkFixture();
    api = new Api({ baseUrl: f.tcp });
  }, 120_000);

  afterAll(async () => {
    await f?.stop();
  });

  it('has a method for POST /v1/proxy that sends a template: the upstream got the key, the client the redacted answer', async () => {
    const r = await api.v1.proxy(
      {
        credential: 'k',
        url: 'https://api.allowed.test/echo',
        headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
      },
      { headers: { Authorization: `Bearer ${f.agent.token}` }, format: 'text' },
    );
    expect(r.status).toBe(200);
    expect(JSON.parse(r.data)).toEqual({ path: '/echo', echo: '[REDACTED:k]' });
    expectNoCanary(r.data, f.canary, 'the generated client response');
    expect(f.upstreamGotCanary()).toBe(true);
  });

  it('a refusal rejects with the document Error schema; health reads serve', async () => {
    const refused = await api.v1.proxy(
      { credential: 'k', url: 'https://evil.test/', headers: { A: '{{CREDENTIAL}}' } },
      { headers: { Authorization: `Bearer ${f.agent.token}` }, format: 'json' },
    ).then(() => null, (r: { status: number; error: { error: { code: string } } }) => r);
    expect(refused?.status).toBe(403);
    expect(refused?.error.error.code).toBe('domain_not_allowed');
    const health = await api.v1.health();
    expect(health.data.status).toBe('ok');
  });
});
