import { describe, it, expect } from 'vitest';
describe('x', () => { it('works', () => { expect(typeof (globalThis as any).Deno).toBe(process.env.EXPECT_DENO ? 'object' : 'undefined'); }); });
