/**
 * The signed (trusted) comment of a skill signature (docs/formats-skills.md#trusted-comment):
 *   trust-protocol skill name=NAME version=VERSION publisher=KEYID expires=DATE|never [signed=TIME]
 * `key=value` fields separated by single spaces, any order, each once; unknown fields are refused
 * (a field this version does not understand might be a restriction it would silently drop).
 * DATE is `YYYY-MM-DD` (the skill expires at 00:00 UTC that day) or `YYYY-MM-DDTHH:MM:SSZ`.
 */
import { usage } from '../errors.ts';

export const COMMENT_PREFIX = 'trust-protocol skill';

export interface SkillMeta {
  name: string;
  version: string;
  /** Key id of the signing key: 16 upper-case hex digits (zero-padded when parsed). */
  publisher: string;
  /** When the signature stops being accepted (ISO 8601, UTC), or null for never. */
  expires: string | null;
  signed: string | null;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$/;
/** minisign prints a key id without its leading zeros: 1 to 16 digits, padded when parsed. */
const KEY_ID_RE = /^[0-9A-F]{1,16}$/;
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/;

export function formatComment(meta: SkillMeta): string {
  return `${COMMENT_PREFIX} name=${meta.name} version=${meta.version} publisher=${meta.publisher}` +
    ` expires=${meta.expires ?? 'never'}${meta.signed === null ? '' : ` signed=${meta.signed}`}`;
}

/** Throws a TpError (code `malformed_comment`) naming the first thing that is wrong. */
export function parseComment(text: string): SkillMeta {
  const fail = (what: string): never => {
    throw usage('malformed_comment', `the trusted comment ${what}`);
  };
  if (!text.startsWith(`${COMMENT_PREFIX} `)) fail(`does not start with "${COMMENT_PREFIX} "`);
  const fields = new Map<string, string>();
  for (const token of text.slice(COMMENT_PREFIX.length + 1).split(' ')) {
    const eq = token.indexOf('=');
    const key = eq < 0 ? token : token.slice(0, eq);
    if (eq < 0) fail(`has "${key}" without a value (expected key=value)`);
    if (!['name', 'version', 'publisher', 'expires', 'signed'].includes(key)) {
      fail(`has an unknown field "${key}"`);
    }
    if (fields.has(key)) fail(`has "${key}" twice`);
    fields.set(key, token.slice(eq + 1));
  }
  const get = (key: string, re: RegExp, what: string): string => {
    const v = fields.get(key);
    if (v === undefined) return fail(`lacks ${key}=`);
    if (!re.test(v)) fail(`has an invalid ${key} (expected ${what})`);
    return v;
  };
  const expires = fields.get('expires');
  if (expires === undefined) fail('lacks expires= (a date, or never)');
  const signed = fields.get('signed');
  return {
    name: get('name', NAME_RE, 'letters, digits, . _ -, up to 64'),
    version: get('version', VERSION_RE, 'letters, digits, . + _ -, up to 64'),
    publisher: get('publisher', KEY_ID_RE, 'the key id: up to 16 upper-case hex digits')
      .padStart(16, '0'),
    expires: expires === 'never'
      ? null
      : _instant(expires as string) ?? fail('has an invalid expires'),
    signed: signed === undefined ? null : _instant(signed) ?? fail('has an invalid signed time'),
  };
}

export function checkName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw usage(
      'bad_name',
      'a skill name is 1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit',
    );
  }
  return name;
}

export function checkVersion(version: string): string {
  if (!VERSION_RE.test(version)) {
    throw usage(
      'bad_version',
      'a version is 1 to 64 letters, digits, dots, plus, dashes or underscores',
    );
  }
  return version;
}

/**
 * `--expires`: a date (`2027-01-31`, expiring at 00:00 UTC that day), a UTC time
 * (`2027-01-31T12:00:00Z`) or a number of days from now (`90d`); it must lie in the future.
 */
export function parseExpiry(input: string, now: Date): string {
  const days = /^(\d{1,5})d$/.exec(input);
  const at = days !== null
    ? _seconds(new Date(now.getTime() + Number(days[1]) * 86_400_000))
    : _instant(input);
  if (at === null) {
    throw usage(
      'bad_expiry',
      `--expires takes YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or a number of days like 90d`,
    );
  }
  if (Date.parse(at) <= now.getTime()) {
    throw usage('bad_expiry', `--expires ${at} is not in the future`);
  }
  return at;
}

/** A date or UTC time in one of the two accepted spellings, as a full UTC time; null if neither. */
function _instant(text: string): string | null {
  const m = DATE_RE.exec(text) ?? TIME_RE.exec(text);
  if (m === null) return null;
  const [y, mo, d, h = 0, mi = 0, s = 0] = m.slice(1).map(Number) as number[];
  const t = Date.UTC(y as number, (mo as number) - 1, d, h, mi, s);
  const back = new Date(t);
  // Refuses dates that Date.UTC would roll over (2027-02-30, 25:00).
  if (
    back.getUTCFullYear() !== y || back.getUTCMonth() !== (mo as number) - 1 ||
    back.getUTCDate() !== d || back.getUTCHours() !== h || back.getUTCMinutes() !== mi ||
    back.getUTCSeconds() !== s
  ) {
    return null;
  }
  return _seconds(back);
}

function _seconds(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
