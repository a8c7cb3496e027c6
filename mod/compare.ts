/**
 * Strings in the order of their UTF-16 code units, as sort() orders them by
 * default: right for references, digests and ISO 8601 times, and cheap.
 * localeCompare loads ICU's collation on first use, ~6 ms of a start.
 */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
