/**
 * Tiny boundary checks for data read from disk. Each names the field, what was expected and what
 * arrived, and fails as a state-integrity error: a malformed state file is a tampered one.
 */
import { integrity } from './errors.ts';

export type Obj = Record<string, unknown>;

function _fail(field: string, expected: string, got: unknown): never {
  const shown = got === null ? 'null' : Array.isArray(got) ? 'array' : typeof got;
  throw integrity('malformed_state', `${field}: expected ${expected}, got ${shown}`);
}

export function obj(v: unknown, field: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) _fail(field, 'an object', v);
  return v as Obj;
}

export function str(v: unknown, field: string): string {
  if (typeof v !== 'string') _fail(field, 'a string', v);
  return v;
}

export function strOrNull(v: unknown, field: string): string | null {
  return v === null ? null : str(v, field);
}

export function int(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) _fail(field, 'an integer', v);
  return v;
}

export function bool(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') _fail(field, 'true or false', v);
  return v;
}

export function arr(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) _fail(field, 'an array', v);
  return v;
}

export function strArr(v: unknown, field: string): string[] {
  return arr(v, field).map((x, i) => str(x, `${field}[${i}]`));
}

export function oneOf<T extends string>(v: unknown, field: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    _fail(field, `one of ${allowed.join(', ')}`, v);
  }
  return v as T;
}
