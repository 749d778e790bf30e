/** The environment variables that would widen TLS trust in a runtime, and which are set. */

/**
 * Variables with which a runtime would trust more CAs. The HTTP client always passes its roots
 * explicitly (src/http/client.ts), so none of them has any effect; the command line says so.
 */
export const CA_ENV = [
  'NODE_EXTRA_CA_CERTS',
  'NODE_USE_SYSTEM_CA',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'DENO_CERT',
  'DENO_TLS_CA_STORE',
] as const;

/** The CA variables set (non-empty) in `env`: ignored, but worth one note. */
export function ignoredCaVariables(env: Readonly<Record<string, string | undefined>>): string[] {
  return CA_ENV.filter((name) => (env[name] ?? '') !== '');
}
