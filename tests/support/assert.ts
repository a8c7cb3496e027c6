/**
 * Assertions for the tests, on node:assert (Deno's @std/assert lives on JSR,
 * which these machines cannot reach).
 */
import nodeAssert from "node:assert";

export function assert(cond: unknown, message?: string): asserts cond {
  nodeAssert.ok(cond, message);
}

export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

export function assertNotEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, message);
}

export function assertMatch(actual: string, re: RegExp, message?: string): void {
  nodeAssert.match(actual, re, message);
}

export function assertStringIncludes(actual: string, expected: string, message?: string): void {
  nodeAssert.ok(
    actual.includes(expected),
    message ?? `expected ${JSON.stringify(actual)} to include ${JSON.stringify(expected)}`,
  );
}

/** Awaits `fn` and returns what it threw, failing if it did not throw an instance of `type`. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  type: new (...args: any[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (err) {
    nodeAssert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    if (includes !== undefined) assertStringIncludes((err as E).message, includes);
    return err as E;
  }
  throw new nodeAssert.AssertionError({ message: `expected ${type.name} to be thrown` });
}

/** Like assertRejects, for synchronous code. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  type: new (...args: any[]) => E,
  includes?: string,
): E {
  try {
    fn();
  } catch (err) {
    nodeAssert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    if (includes !== undefined) assertStringIncludes((err as E).message, includes);
    return err as E;
  }
  throw new nodeAssert.AssertionError({ message: `expected ${type.name} to be thrown` });
}
