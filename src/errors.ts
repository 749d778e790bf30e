/**
 * Every failure the library reports is a TpError. `kind` decides the exit code (cmd/ maps it);
 * `code` is a stable machine-readable reason for `--json` output and the audit trail.
 * Messages never contain secret values.
 */
export type ErrorKind =
  | 'verification' // exit 1
  | 'usage' // exit 2
  | 'sealed' // exit 3
  | 'denied' // exit 4
  | 'brake' // exit 5
  | 'audit' // exit 6
  | 'upstream' // exit 7
  | 'integrity' // exit 8
  | 'internal'; // exit 70

/**
 * Every error code, one name per reason (issue #14): `--json` output, the audit trail and serve's
 * HTTP answers carry these, and a script may match on them. A new reason gets a new name here.
 */
export const ERROR_CODES = [
  'aborted',
  'agent_name_taken',
  'agent_rate_limited',
  'admin_token_invalid',
  'admin_token_expired',
  'bad_issuer',
  'unknown_issuer',
  'unlinked_identity',
  'subject_linked',
  'no_role_claim',
  'oidc_discovery',
  'oidc_login',
  'agent_revoked',
  'agent_suspended',
  'already_initialized',
  'already_revoked',
  'ambiguous_agent',
  'audit_forked',
  'audit_signing_key',
  'audit_keys',
  'bad_key',
  'bad_note',
  'bad_proof',
  'segment_altered',
  'segment_index',
  'segment_missing',
  'proof_invalid',
  'witness_rollback',
  'witness_quorum',
  'not_consistent',
  'audit_mac_mismatch',
  'audit_needs_key',
  'audit_key_wiped',
  'audit_not_intact',
  'audit_tail_malformed',
  'audit_truncated',
  'audit_write_failed',
  'bad_action',
  'bad_agent_name',
  'bad_anomaly_kind',
  'bad_arguments',
  'bad_base_url',
  'bad_checkpoint',
  'bad_comment',
  'bad_config',
  'bad_connect_to',
  'bad_credential_name',
  'bad_domain_pattern',
  'bad_dotenv',
  'bad_duration',
  'bad_env',
  'bad_expiry',
  'bad_flag',
  'bad_flags',
  'bad_gateway_path',
  'bad_header',
  'bad_host',
  'bad_inject',
  'bad_json',
  'bad_listen',
  'bad_method',
  'bad_name',
  'bad_placeholder',
  'bad_placement',
  'bad_rate',
  'bad_reason',
  'bad_scope',
  'bad_server',
  'bad_target',
  'bad_template',
  'bad_tier',
  'bad_token',
  'bad_trust',
  'bad_url',
  'bad_value',
  'bad_version',
  'body_incomplete',
  'body_too_large',
  'brake_agent',
  'brake_credential',
  'brake_global',
  'brake_org',
  'brake_needs_socket',
  'cannot_create',
  'cannot_listen',
  'checkpoint_key',
  'checkpoint_signature',
  'command_not_found',
  'config_cacert_changed',
  'config_io',
  'config_mac',
  'config_not_sealed',
  'config_unparsable',
  'config_unsupported',
  'confirmation_mismatch',
  'confirmation_required',
  'conflicting_flags',
  'connect',
  'credential_binding',
  'credential_exists',
  'dns',
  'domain_not_allowed',
  'dotenv_value',
  'duplicate_name',
  'empty_password',
  'empty_skill',
  'env_clash',
  'file_exists',
  'forbidden_header',
  'foreign_owner',
  'grant_limit',
  'home_not_dir',
  'input_too_large',
  'insecure_file',
  'insecure_permissions',
  'internal',
  'internal_command',
  'io',
  'kdf_params',
  'keeper_gone',
  'keeper_protocol',
  'key_exists',
  'key_revoked',
  'lock_timeout',
  'malformed_comment',
  'malformed_key',
  'malformed_manifest',
  'malformed_signature',
  'malformed_state',
  'method_not_allowed',
  'missing_actions',
  'missing_credential',
  'missing_key',
  'missing_out',
  'no_base_url',
  'no_change',
  'no_command',
  'no_config',
  'no_credentials',
  'no_domains',
  'no_home',
  'no_inject',
  'no_new_password',
  'no_password_source',
  'no_placeholder',
  'no_serve',
  'no_setuid',
  'no_such_agent',
  'no_such_credential',
  'no_such_folder',
  'no_such_publisher',
  'no_such_variable',
  'no_template',
  'no_token',
  'no_value',
  'no_variables',
  'no_vault',
  'not_a_demotion',
  'not_a_directory',
  'not_a_file',
  'not_a_folder',
  'not_a_promotion',
  'not_active',
  'not_found',
  'not_granted',
  'not_loopback',
  'not_root',
  'origin_refused',
  'orphan_audit_log',
  'password_mismatch',
  'password_needed',
  'password_on_command_line',
  'placeholder_placement',
  'placement_not_allowed',
  'protocol',
  'publisher_exists',
  'rate_limited',
  'redact_after_end',
  'redact_bad_secret',
  'redact_bad_secrets',
  'remote_error',
  'renewal_budget_spent',
  'renewal_refused_anomaly',
  'renewal_score_too_low',
  'response_too_large',
  'root_service_user',
  'sacred_needs_terminal',
  'sacred_register',
  'scheme_not_allowed',
  'serve_cut',
  'serve_no_tcp',
  'serve_running',
  'serve_stopping',
  'serve_unreachable',
  'setuid_failed',
  'ship_cursor_mismatch',
  'ship_log_malformed',
  'ship_rejected',
  'socket_path_taken',
  'stream_cut',
  'symlink',
  'tier_too_low',
  'timeout',
  'tls',
  'tls_env',
  'token_expired',
  'token_on_command_line',
  'trailing_dot',
  'unknown_client',
  'unknown_command',
  'unknown_credential',
  'unknown_event',
  'unknown_flag',
  'unknown_group',
  'unknown_preset',
  'unknown_shell',
  'unknown_user',
  'unreadable_file',
  'unsignable',
  'unsupported_encoding',
  'unsupported_scheme',
  'unsupported_version',
  'unwritable',
  'url_changed',
  'user_needs_home',
  'userinfo',
  'vault_mac',
  'vault_rollback',
  'weak_key',
  'weak_password',
  'wrong_key_password',
  'wrong_password',
  'role_denied',
  'unknown_admin',
  'admin_exists',
  'last_owner',
  'bad_admin_name',
  'slot_binding',
  // The team store (#19).
  'bad_store',
  'store_copy_mismatch',
  'store_diverged',
  'store_init',
  'store_not_empty',
  'store_schema',
  'store_tampered',
  'store_unavailable',
  'store_password_in_argv',
  'org_denied',
  'org_mismatch',
  'bad_org_name',
  'no_such_org',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

const _CODES: ReadonlySet<string> = new Set(ERROR_CODES);

/** A code read from the wire (serve's answer, the keeper's frame): known, or `remote_error`. */
export function errorCodeOf(text: string): ErrorCode {
  return _CODES.has(text) ? text as ErrorCode : 'remote_error';
}
/** Facts a caller acts on, as numbers rather than words in the message or hint. */
export interface ErrorDetails {
  /** A rate limit: seconds until a request may succeed (HTTP Retry-After). */
  retryAfterSeconds?: number;
  /**
   * The seq of the audit entry that recorded this refusal (`request.denied`), so serve can name
   * it in `Trust-Protocol-Audit-Seq` as it does for an allowed request.
   */
  auditSeq?: number;
}

export class TpError extends Error {
  readonly kind: ErrorKind;
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly details: ErrorDetails;

  constructor(
    kind: ErrorKind,
    code: ErrorCode,
    message: string,
    options: { hint?: string; cause?: unknown; details?: ErrorDetails } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TpError';
    this.kind = kind;
    this.code = code;
    if (options.hint !== undefined) this.hint = options.hint;
    this.details = options.details ?? {};
  }
}

/** Notes on the error the seq of the audit entry that recorded it; returns the error to rethrow. */
export function withAuditSeq(e: TpError, seq: number): TpError {
  e.details.auditSeq = seq;
  return e;
}

export function usage(code: ErrorCode, message: string, hint?: string): TpError {
  return new TpError('usage', code, message, hint === undefined ? {} : { hint });
}

export function denied(code: ErrorCode, message: string, hint?: string): TpError {
  return new TpError('denied', code, message, hint === undefined ? {} : { hint });
}

export function integrity(code: ErrorCode, message: string, hint?: string): TpError {
  return new TpError('integrity', code, message, hint === undefined ? {} : { hint });
}
