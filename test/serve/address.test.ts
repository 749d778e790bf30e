import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseListen, tcpHosts, tcpUrl } from '../../src/serve/address.ts';
import { TpError } from '../../src/errors.ts';

function _refusal(text: string): string | null {
  try {
    parseListen(text);
    return null;
  } catch (e) {
    expect(e).toBeInstanceOf(TpError);
    expect((e as TpError).kind).toBe('usage');
    return (e as TpError).code;
  }
}

describe('parseListen', () => {
  it('accepts loopback addresses only', () => {
    expect(parseListen('127.0.0.1:8080')).toEqual({ bind: '127.0.0.1', port: 8080 });
    expect(parseListen('127.1.2.3:0')).toEqual({ bind: '127.1.2.3', port: 0 });
    expect(parseListen('localhost:9')).toEqual({ bind: '127.0.0.1', port: 9 });
    expect(parseListen('LOCALHOST:9')).toEqual({ bind: '127.0.0.1', port: 9 });
    expect(parseListen('[::1]:443')).toEqual({ bind: '::1', port: 443 });
    expect(parseListen('[0:0:0:0:0:0:0:1]:443')).toEqual({ bind: '::1', port: 443 });
  });

  it('refuses everything else, naming why', () => {
    for (
      const text of [
        '0.0.0.0:80',
        '192.0.2.1:80',
        '[::]:80',
        '[::ffff:127.0.0.1]:80',
        '[::ffff:7f00:1]:80',
        ':80',
        'localhost.evil.test:80',
        '127.0.0.1.evil.test:80',
        '2130706433:80',
        '0x7f.0.0.1:80',
        '127.0.0.01:80',
      ]
    ) {
      expect(_refusal(text), text).toBe('not_loopback');
    }
    for (
      const text of ['127.0.0.1', '127.0.0.1:', '127.0.0.1:65536', '127.0.0.1:-1', '::1:80', '']
    ) {
      expect(_refusal(text), text).toBe('bad_listen');
    }
  });

  it('no IPv4 address outside 127.0.0.0/8 is ever accepted', () => {
    const octet = fc.integer({ min: 0, max: 255 });
    fc.assert(
      fc.property(
        octet,
        octet,
        octet,
        octet,
        fc.integer({ min: 0, max: 65535 }),
        (a, b, c, d, p) => {
          const text = `${a}.${b}.${c}.${d}:${p}`;
          if (a === 127) {
            expect(parseListen(text)).toEqual({
              bind: `${a}.${b}.${c}.${d}`,
              port: p,
            });
          } else expect(_refusal(text)).toBe('not_loopback');
        },
      ),
    );
  });

  it('arbitrary text is refused unless it is a loopback HOST:PORT', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        if (_refusal(text) === null) {
          expect(text.toLowerCase()).toMatch(/^(127\.[\d.]+|localhost|\[[0:]*1\]):\d+$/);
        }
      }),
    );
  });
});

describe('tcpHosts and tcpUrl', () => {
  it('the loopback names with the bound port; without the port only on port 80', () => {
    expect([...tcpHosts({ bind: '127.0.0.1', port: 8080 })].sort()).toEqual([
      '127.0.0.1:8080',
      '[::1]:8080',
      'localhost:8080',
    ]);
    expect(tcpHosts({ bind: '127.0.0.2', port: 1 }).has('127.0.0.2:1')).toBe(true);
    expect(tcpHosts({ bind: '127.0.0.1', port: 80 }).has('localhost')).toBe(true);
    expect(tcpUrl({ bind: '::1', port: 5 })).toBe('http://[::1]:5');
  });
});
