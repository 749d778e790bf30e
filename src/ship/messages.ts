/**
 * The wire form of shipped entries, one function per destination kind (docs/formats.md#ship).
 * Every message carries the entry line exactly as it is in the log (so a receiver can hash it),
 * its `seq`, its RFC 9162 leaf hash (SHA-256 of 0x00 and the line) and its id, the entry's chain
 * digest (what the next entry's `prev` holds), by which a receiver drops duplicates.
 */
import { Buffer } from 'node:buffer';
import { hash } from 'node:crypto';
import { hostname } from 'node:os';
import { lineDigest } from '../audit.ts';
import { TpError } from '../errors.ts';
import type { ShipKind } from './destination.ts';

export interface ShipEntry {
  /** The log line without its newline. */
  line: string;
  seq: number;
  ts: string;
  event: string;
  leafHash: string;
  id: string;
}

const LEADING = /^\{"v":\d+,"seq":(\d+),"ts":"([^"\\]*)","event":"([^"\\]*)"/;

/** An entry read from a complete log line; a line that is not one throws. */
export function shipEntry(line: string): ShipEntry {
  const m = LEADING.exec(line);
  const id = lineDigest(line);
  if (m === null || id === null) {
    throw new TpError(
      'integrity',
      'ship_log_malformed',
      'the audit log holds a line that is not an entry; shipping stops before it',
      { hint: 'run `trust-protocol audit verify` to see what happened to the log' },
    );
  }
  const bytes = Buffer.from(line, 'utf8');
  const leafHash = hash('sha256', Buffer.concat([Buffer.from([0]), bytes]), 'hex');
  return { line, seq: Number(m[1]), ts: m[2]!, event: m[3]!, leafHash, id };
}

export function formatBatch(kind: ShipKind, entries: readonly ShipEntry[]): Uint8Array {
  switch (kind) {
    case 'syslog':
      return Buffer.concat(entries.map(syslogFrame));
    case 'otlp':
      return Buffer.from(JSON.stringify(_otlp(entries)), 'utf8');
    case 'splunk':
      return Buffer.from(entries.map(_hec).join('\n'), 'utf8');
    case 'jsonl':
      return Buffer.from(entries.map((e) => JSON.stringify(_jsonl(e)) + '\n').join(''), 'utf8');
  }
}

/** RFC 5424 facility 13 ("log audit"), severity 6 (informational). */
const PRI = 13 * 8 + 6;
/** RFC 5612's documentation enterprise number: this SD-ID is not registered with IANA. */
const SD_ID = 'trust-protocol@32473';
const HOST = _printable(hostname(), 255);

/**
 * One RFC 5424 message with RFC 6587 octet-counting framing (`LEN SP MSG`): structured data with
 * seq, leaf hash and id, and MSG the entry line (UTF-8, no BOM).
 */
export function syslogFrame(e: ShipEntry): Buffer {
  const sd = `[${SD_ID} seq="${e.seq}" leaf_hash="${e.leafHash}" id="${e.id}"]`;
  const msg = `<${PRI}>1 ${e.ts || '-'} ${HOST} trust-protocol ${process.pid} ` +
    `${_printable(e.event, 32)} ${sd} ${e.line}`;
  const bytes = Buffer.from(msg, 'utf8');
  return Buffer.concat([Buffer.from(`${bytes.length} `, 'ascii'), bytes]);
}

/** RFC 5424 header fields are printable US-ASCII without spaces, or `-`. */
function _printable(text: string, max: number): string {
  const clean = text.replace(/[^\x21-\x7e]/g, '').slice(0, max);
  return clean === '' ? '-' : clean;
}

function _attributes(e: ShipEntry) {
  return [
    { key: 'trust_protocol.seq', value: { intValue: String(e.seq) } },
    { key: 'trust_protocol.event', value: { stringValue: e.event } },
    { key: 'trust_protocol.leaf_hash', value: { stringValue: e.leafHash } },
    { key: 'log.record.uid', value: { stringValue: e.id } },
  ];
}

/** OTLP/HTTP JSON (ExportLogsServiceRequest): one resource, one scope, a record per entry. */
function _otlp(entries: readonly ShipEntry[]) {
  return {
    resourceLogs: [{
      resource: {
        attributes: [
          { key: 'service.name', value: { stringValue: 'trust-protocol' } },
          { key: 'host.name', value: { stringValue: HOST } },
        ],
      },
      scopeLogs: [{
        scope: { name: 'trust-protocol.audit' },
        logRecords: entries.map((e) => ({
          timeUnixNano: _nanos(e.ts),
          severityNumber: 9,
          severityText: 'INFO',
          body: { stringValue: e.line },
          attributes: _attributes(e),
        })),
      }],
    }],
  };
}

function _nanos(ts: string): string {
  const ms = Date.parse(ts);
  return Number.isNaN(ms) ? '0' : `${BigInt(ms) * 1_000_000n}`;
}

/** Splunk HEC /services/collector/event: one event object per entry, concatenated. */
function _hec(e: ShipEntry): string {
  const ms = Date.parse(e.ts);
  return JSON.stringify({
    ...(Number.isNaN(ms) ? {} : { time: ms / 1000 }),
    host: HOST,
    source: 'trust-protocol',
    sourcetype: 'trust-protocol:audit',
    event: e.line,
    fields: { seq: e.seq, event: e.event, leaf_hash: e.leafHash, id: e.id },
  });
}

function _jsonl(e: ShipEntry) {
  return { seq: e.seq, id: e.id, leaf_hash: e.leafHash, entry: e.line };
}
