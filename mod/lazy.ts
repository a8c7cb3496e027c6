/**
 * Defines `key` on `target` as computed on its first read and kept from then
 * on as a plain value: for what a command may not need and costs something
 * to get (a tool to look for on PATH).
 */
export function defineLazy<T extends object, K extends keyof T>(
  target: T,
  key: K,
  compute: () => T[K],
): void {
  Object.defineProperty(target, key, {
    enumerable: true,
    configurable: true,
    get() {
      const value = compute();
      Object.defineProperty(target, key, { value, enumerable: true, writable: true });
      return value;
    },
  });
}
