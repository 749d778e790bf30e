/**
 * The dedicated-user deployment (docs/threat-model.md): `serve --user NAME` is started by root and
 * drops to the service user before it reads any state. Linux clears a process's dumpable flag when
 * its uids change, so afterwards no other user, the agents included, can ptrace it or read its
 * memory through /proc, and root's own privileges are gone for good (real, effective and saved ids).
 */
import * as fs from 'node:fs';
import { usage } from '../src/errors.ts';

export interface Account {
  name: string;
  uid: number;
  gid: number;
}

/** A user from /etc/passwd, by name. */
export function lookupUser(name: string): Account {
  const fields = _entry('/etc/passwd', name);
  if (fields === null) {
    throw usage('unknown_user', `no user named ${JSON.stringify(name)} in /etc/passwd`, _HINT);
  }
  return { name, uid: Number(fields[2]), gid: Number(fields[3]) };
}

/** A group's id from /etc/group, by name or as a number. */
export function lookupGroup(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  const fields = _entry('/etc/group', name);
  if (fields === null) {
    throw usage('unknown_group', `no group named ${JSON.stringify(name)} in /etc/group`, _HINT);
  }
  return Number(fields[2]);
}

/** Whether dropPrivileges(account) would be refused, without dropping (serve checks first). */
export function checkCanDrop(account: Account): void {
  _proc(account);
}

/**
 * Becomes `account` for good: supplementary groups from /etc/group, then the gid, then the uid
 * (in that order: after setuid nothing else may be changed). Needs root, and Node's process API
 * (Deno has no setuid).
 */
export function dropPrivileges(account: Account): void {
  const proc = _proc(account);
  proc.initgroups(account.name, account.gid);
  proc.setgid(account.gid);
  proc.setuid(account.uid);
  if (process.getuid!() !== account.uid || process.geteuid!() !== account.uid) {
    throw usage('setuid_failed', `serve could not become user ${account.name}`, _HINT);
  }
}

function _proc(account: Account) {
  // Optional: absent on Deno and on platforms without POSIX users.
  const proc = process as {
    setuid?: (id: number) => void;
    setgid?: (id: number) => void;
    initgroups?: (user: string, extra: number) => void;
    getuid?: () => number;
  };
  if (
    typeof proc.setuid !== 'function' || typeof proc.setgid !== 'function' ||
    typeof proc.initgroups !== 'function'
  ) {
    throw usage(
      'no_setuid',
      'serve --user needs the trust-protocol binary (this runtime cannot change its user)',
      `start serve as the service user instead: sudo -u ${account.name} trust-protocol serve ...`,
    );
  }
  if (proc.getuid?.() !== 0) {
    throw usage(
      'not_root',
      'serve --user must be started by root (it drops to that user before reading any state)',
      `run it as root, or start it as the service user: sudo -u ${account.name} trust-protocol serve ...`,
    );
  }
  if (account.uid === 0) {
    throw usage(
      'root_service_user',
      'serve --user must name an unprivileged user, not root',
      _HINT,
    );
  }
  return proc as Required<typeof proc>;
}

const _HINT = 'see "A dedicated user" in the README (install.sh --system creates the accounts)';

function _entry(file: string, name: string): string[] | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields.length >= 4 && /^\d+$/.test(fields[2] ?? '')) return fields;
  }
  return null;
}
