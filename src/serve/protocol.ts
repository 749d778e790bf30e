/**
 * Request headers of serve's own protocol, shared by `exec` (src/serve/client.ts) and the handler.
 * In a module of their own so that the client does not load the handler and, through it, the
 * broker, the gateway and the HTTP client: every command that looks for a serve pays for what the
 * client imports.
 */
export const TIMEOUT_HEADER = 'Trust-Protocol-Timeout';
export const MAX_BYTES_HEADER = 'Trust-Protocol-Max-Response-Bytes';
/**
 * Response header of /v1/proxy and /v1/gateway: the sequence number of the request's
 * `request.allowed` audit entry, or of its `request.denied` entry on a refusal serve recorded
 * (`audit show` finds the request's entries from it; `audit prove` proves it).
 */
export const AUDIT_SEQ_HEADER = 'Trust-Protocol-Audit-Seq';
