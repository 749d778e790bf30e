/** The --to URL rules (src/ship/destination.ts) and Retry-After parsing (src/ship/transport.ts). */
import { describe, expect, it } from 'vitest';
import { parseDestination } from '../src/ship/destination.ts';
import { retryAfterSeconds } from '../src/ship/transport.ts';

describe('parseDestination', () => {
  it('names the protocol by scheme, with default ports', () => {
    expect(parseDestination('syslog+tls://siem.example.com')).toMatchObject({
      kind: 'syslog',
      tls: true,
      host: 'siem.example.com',
      port: 6514,
      httpUrl: null,
    });
    const otlp = parseDestination('otlp+https://collector.example:4318/v1/logs');
    expect(otlp.kind).toBe('otlp');
    expect(otlp.httpUrl?.href).toBe('https://collector.example:4318/v1/logs');
    expect(parseDestination('splunk+https://splunk.example/services/collector/event').port)
      .toBe(8088);
    expect(parseDestination('https://siem.example/ingest').kind).toBe('jsonl');
  });

  it('allows plain text only to loopback', () => {
    for (
      const ok of [
        'syslog+tcp://127.0.0.1:514',
        'otlp+http://[::1]:4318/v1/logs',
        'http://localhost:8080/',
      ]
    ) {
      expect(parseDestination(ok).tls).toBe(false);
    }
    for (
      const bad of [
        'syslog+tcp://10.0.0.1:514',
        'otlp+http://collector.example/v1/logs',
        'http://127.0.0.1.example/',
        'splunk+http://splunk.example/services/collector/event',
      ]
    ) {
      expect(() => parseDestination(bad)).toThrow(/not loopback/);
    }
  });

  it('refuses credentials, queries, unknown schemes and odd hosts', () => {
    expect(() => parseDestination('https://u:p@siem.example/')).toThrow(/user name or password/);
    expect(() => parseDestination('https://siem.example/?token=x')).toThrow(/query/);
    expect(() => parseDestination('ftp://siem.example/')).toThrow(/unsupported scheme/);
    expect(() => parseDestination('syslog+tls://siem%2eexample:6514')).toThrow(/host name/);
    expect(() => parseDestination('syslog+tls://siem.example:6514/x')).toThrow(/path/);
  });
});

describe('retryAfterSeconds', () => {
  it('takes delta-seconds or an HTTP date, capped at an hour', () => {
    expect(retryAfterSeconds('5')).toBe(5);
    expect(retryAfterSeconds('999999')).toBe(3600);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterSeconds('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30);
    expect(retryAfterSeconds('soon')).toBeUndefined();
    expect(retryAfterSeconds(undefined)).toBeUndefined();
  });
});
