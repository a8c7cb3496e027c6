/**
 * Checks of the JSON files shoal writes for itself and reads back on every
 * run's start (the image index and metadata, a run's state), which may have
 * been damaged or hand-edited. zod checks what comes from outside (config,
 * manifests); loading it and building its schemas costs ~2 ms of a start
 * (bench/startup.ts), more than these few shapes are worth.
 *
 * A check returns the value with its type, or throws a ShapeError saying
 * where the value went wrong ("layers.2: expected a digest").
 */

export class ShapeError extends Error {
  constructor(readonly at: string, expected: string) {
    super(`${at ? `${at}: ` : ""}expected ${expected}`);
    this.name = "ShapeError";
  }
}

export type Check<T> = (value: unknown, at: string) => T;

/** A key that may be absent (or undefined). */
export interface Optional<T> {
  optional: Check<T>;
}

type Shape = Record<string, Check<unknown> | Optional<unknown>>;

/** The object type a shape describes: required keys, then optional ones. */
export type Out<S extends Shape> =
  & {
    [K in keyof S as S[K] extends Check<unknown> ? K : never]: S[K] extends Check<infer T> ? T
      : never;
  }
  & {
    [K in keyof S as S[K] extends Optional<unknown> ? K : never]?: S[K] extends Optional<infer T>
      ? T
      : never;
  };

const under = (at: string, key: string | number) => (at ? `${at}.${key}` : String(key));

/** A string; `test` narrows it further, `expected` saying what it must be. */
export function string(test?: (s: string) => boolean, expected = "a string"): Check<string> {
  return (v, at) => {
    if (typeof v !== "string" || (test !== undefined && !test(v))) {
      throw new ShapeError(at, expected);
    }
    return v;
  };
}

export const nonEmpty: Check<string> = string((s) => s !== "", "a non-empty string");

export function boolean(v: unknown, at: string): boolean {
  if (typeof v !== "boolean") throw new ShapeError(at, "true or false");
  return v;
}

/** An integer of at least `min`. */
export function integer(min: number): Check<number> {
  return (v, at) => {
    if (!Number.isInteger(v) || (v as number) < min) {
      throw new ShapeError(at, `an integer of at least ${min}`);
    }
    return v as number;
  };
}

/** One of the given strings or numbers. */
export function oneOf<const T extends string | number>(values: readonly T[]): Check<T> {
  return (v, at) => {
    if (!values.includes(v as T)) {
      throw new ShapeError(
        at,
        values.map((x) => JSON.stringify(x)).join(" or "),
      );
    }
    return v as T;
  };
}

export function array<T>(item: Check<T>): Check<T[]> {
  return (v, at) => {
    if (!Array.isArray(v)) throw new ShapeError(at, "an array");
    return v.map((x, i) => item(x, under(at, i)));
  };
}

/** An object used as a map from strings to `value`s. */
export function dictionary<T>(value: Check<T>): Check<Record<string, T>> {
  return (v, at) => {
    const o = plainObject(v, at);
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, value(x, under(at, k))]));
  };
}

export function optional<T>(check: Check<T>): Optional<T> {
  return { optional: check };
}

/**
 * An object with the keys of `shape` (others are dropped, absent optional
 * ones left out), then `refine` on the whole, which throws what it finds.
 */
export function object<S extends Shape>(
  shape: S,
  refine?: (value: Out<S>, at: string) => void,
): Check<Out<S>> {
  return (v, at) => {
    const o = plainObject(v, at);
    const out: Record<string, unknown> = {};
    for (const [key, check] of Object.entries(shape)) {
      const value = o[key];
      if (typeof check !== "function") {
        if (value !== undefined) out[key] = check.optional(value, under(at, key));
      } else {
        out[key] = check(value, under(at, key));
      }
    }
    refine?.(out as Out<S>, at);
    return out as Out<S>;
  };
}

/** An object with exactly the keys of `shape`: a misspelt key is a mistake, not a comment. */
export function exact<S extends Shape>(
  shape: S,
  refine?: (value: Out<S>, at: string) => void,
): Check<Out<S>> {
  const check = object(shape, refine);
  return (v, at) => {
    if (typeof v === "object" && v !== null && !Array.isArray(v)) {
      const extra = Object.keys(v).find((k) => !Object.hasOwn(shape, k));
      if (extra !== undefined) {
        throw new ShapeError(at, `only the keys ${Object.keys(shape).join(", ")}, not "${extra}"`);
      }
    }
    return check(v, at);
  };
}

function plainObject(v: unknown, at: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new ShapeError(at, "an object");
  }
  return v as Record<string, unknown>;
}

/** The value if it passes `check`; otherwise why not, in one line. */
export function tryShape<T>(
  check: Check<T>,
  value: unknown,
): { ok: true; value: T } | { ok: false; why: string } {
  try {
    return { ok: true, value: check(value, "") };
  } catch (err) {
    if (err instanceof ShapeError) return { ok: false, why: err.message };
    throw err;
  }
}
