import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * The check of whether an Authorization header carries the token. Both sides are compared as
 * sha256 digests, so the comparison takes the same time whatever the lengths and wherever they
 * differ; the token's own digest is computed once, here, not on every request.
 */
export function bearerChecker(token: string): (header: string | undefined) => boolean {
  const expected = digest(token);
  return (header) => {
    if (header === undefined) return false;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return m !== null && timingSafeEqual(digest(m[1]!), expected);
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
