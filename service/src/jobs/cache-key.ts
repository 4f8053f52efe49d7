import { createHash } from 'node:crypto';

/**
 * JSON with object keys sorted at every level, so two equal values always give the same text
 * whatever order their fields were built in. Keys are sorted by UTF-16 code units, fields whose
 * value is undefined are left out, and anything JSON.stringify writes as null is null. Stored job
 * records hold keys made from this text: it must not change for values it has already keyed.
 * (Written as loops over strings rather than entries/filter/map/join: every cached query keys its
 * request, and this was a measurable part of one.)
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`cannot key a non-finite number: ${value}`);
    return JSON.stringify(value) ?? 'null';
  }
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  // the default sort compares UTF-16 code units, as `<` on strings does
  const keys = Object.keys(record).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const v = record[k];
    if (v === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(k)}:${canonicalJson(v)}`;
    first = false;
  }
  return `${out}}`;
}

/** Recently keyed texts: a client polling the same query asks for the same key again and again. */
const recent = new Map<string, string>();
const RECENT_ENTRIES = 1024;
/** longer texts (plan documents inside compress specs) are hashed each time rather than kept */
const RECENT_MAX_TEXT = 4096;

/** A short stable hash of a value, for cache keys and file names. */
export function cacheKey(value: unknown): string {
  const text = canonicalJson(value);
  const known = recent.get(text);
  if (known !== undefined) return known;
  const key = createHash('sha256').update(text).digest('hex');
  if (text.length <= RECENT_MAX_TEXT) {
    // insertion order: the first entry is the oldest
    if (recent.size >= RECENT_ENTRIES) recent.delete(recent.keys().next().value!);
    recent.set(text, key);
  }
  return key;
}
