/**
 * Validation of the site config and the user's preferences: JSON with errors
 * at a line and column, then the zod schemas, with one line naming the key
 * (its JSON path) and what it must be. Loaded only when the files differ
 * from the last ones validated (see cache.ts): building the schemas costs a
 * few milliseconds of every start.
 */
import * as z from "../zod.ts";
import { ConfigError } from "../errors.ts";
import { jsonSyntaxError } from "./json.ts";
import {
  type SiteConfig,
  siteConfigSchema,
  type UserPreferences,
  userPreferencesSchema,
} from "./schema.ts";
import { closestName } from "../suggest.ts";

/** The site config from its text; undefined text (no file) gives the defaults. */
export function validateSiteConfig(text: string | undefined, file: string): SiteConfig {
  return validate(siteConfigSchema, text === undefined ? {} : parseJson(text, file), file);
}

/**
 * The user's preferences from their text. They may hold only their own keys;
 * a site key there gets its own message, so that nobody mistakes it for a
 * typo and keeps trying.
 */
export function validatePreferences(
  text: string,
  file: string,
  siteFile: string,
): UserPreferences {
  const data = parseJson(text, file);
  if (isObject(data)) {
    const allowed = Object.keys(userPreferencesSchema.shape);
    const siteKey = Object.keys(data).find((k) =>
      !allowed.includes(k) && k in siteConfigSchema.shape
    );
    if (siteKey !== undefined) {
      throw new ConfigError(
        `"${file}": ${siteKey} cannot be set in user preferences (only ${allowed.join(", ")}); ` +
          `ask your admin to set it in ${siteFile}`,
        { hint: `remove "${siteKey}" from "${file}"` },
      );
    }
  }
  return validate(userPreferencesSchema, data, file);
}

function parseJson(text: string, file: string): unknown {
  const syntax = jsonSyntaxError(text);
  if (syntax) {
    throw new ConfigError(
      `"${file}": invalid JSON at line ${syntax.line}, column ${syntax.column}: ${syntax.problem}`,
      { hint: "the file must hold one JSON object, without comments or trailing commas" },
    );
  }
  return JSON.parse(text);
}

const DOCS_HINT = "see docs/admin/configuration.md";

function validate<S extends z.ZodMiniType>(schema: S, data: unknown, file: string): z.output<S> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  // zod reports at least one issue on failure; the first is the one to fix first.
  const [issue, ...more] = result.error.issues as [z.core.$ZodIssue, ...z.core.$ZodIssue[]];
  const { where, what, hint } = describeIssue(issue, schema, data);
  const n = more.length;
  const others = n === 0 ? "" : `; ${n} more problem${n === 1 ? "" : "s"} in the file`;
  throw new ConfigError(`"${file}": ${where ? `${where}: ` : ""}${what}`, {
    hint: hint + others,
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A zod issue as `where` (the key's JSON path), `what` was expected, and a hint. */
function describeIssue(
  issue: z.core.$ZodIssue,
  schema: z.ZodMiniType,
  data: unknown,
): { where: string; what: string; hint: string } {
  const path = issue.path.filter((k): k is string | number => typeof k !== "symbol");
  const value = valueAt(data, path);
  const got = ` (got ${describeValue(value)})`;
  switch (issue.code) {
    case "unrecognized_keys": {
      const [key = ""] = issue.keys;
      const valid = keysAt(schema, path);
      const close = closestName(key, valid);
      return {
        where: renderPath([...path, key]),
        what: `unknown key${close ? ` (did you mean ${close}?)` : ""}`,
        hint: `valid keys${path.length ? ` in ${renderPath(path)}` : ""}: ${valid.join(", ")}`,
      };
    }
    case "invalid_type":
      return {
        where: renderPath(path),
        what: value === undefined ? "is required" : `must be ${noun(issue.expected)}${got}`,
        hint: DOCS_HINT,
      };
    case "invalid_value": {
      const values = issue.values.map((v) => JSON.stringify(v));
      const what = values.length === 1 ? values[0] : `one of ${values.join(", ")}`;
      return { where: renderPath(path), what: `must be ${what}${got}`, hint: DOCS_HINT };
    }
    case "invalid_key": {
      const inner = issue.issues[0]?.message ?? "is not allowed";
      return {
        where: renderPath(path.slice(0, -1)),
        what: `key ${JSON.stringify(path.at(-1))} ${inner}`,
        hint: DOCS_HINT,
      };
    }
    case "too_small":
    case "too_big":
      return { where: renderPath(path), what: `${bound(issue)}${got}`, hint: DOCS_HINT };
    case "invalid_format":
      if (issue.format === "url") {
        return { where: renderPath(path), what: `must be a URL${got}`, hint: DOCS_HINT };
      }
      return { where: renderPath(path), what: issue.message, hint: DOCS_HINT };
    default:
      // Custom checks (absolute paths, block sizes, names) carry their own wording.
      return { where: renderPath(path), what: issue.message, hint: DOCS_HINT };
  }
}

function bound(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig): string {
  const small = issue.code === "too_small";
  const limit = Number(small ? issue.minimum : issue.maximum);
  if (issue.origin === "string" && small && limit === 1) return "must not be empty";
  if (issue.origin === "array" || issue.origin === "string") {
    const unit = issue.origin === "array" ? "entries" : "characters";
    return `must have ${small ? "at least" : "at most"} ${limit} ${unit}`;
  }
  if (issue.inclusive === false) return `must be ${small ? "more" : "less"} than ${limit}`;
  return `must be ${small ? "at least" : "at most"} ${limit}`;
}

function noun(expected: string): string {
  const nouns: Record<string, string> = {
    int: "an integer",
    number: "a number",
    string: "a string",
    boolean: "true or false",
    object: "an object",
    array: "an array",
  };
  return nouns[expected] ?? expected;
}

function describeValue(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (isObject(v)) return "an object";
  return JSON.stringify(v) ?? String(v);
}

function valueAt(data: unknown, path: (string | number)[]): unknown {
  let cur = data;
  for (const k of path) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string | number, unknown>)[k];
  }
  return cur;
}

/** `mounts[0].source`, `registries.ca["localhost:5000"]`. */
function renderPath(path: (string | number)[]): string {
  let out = "";
  for (const k of path) {
    if (typeof k === "number") out += `[${k}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) out += out ? `.${k}` : k;
    else out += `[${JSON.stringify(k)}]`;
  }
  return out;
}

/** The keys the schema allows in the object at `path`, for "did you mean". */
function keysAt(schema: z.ZodMiniType, path: (string | number)[]): string[] {
  let cur = unwrap(schema);
  for (const k of path) {
    if (cur instanceof z.ZodMiniObject) cur = unwrap(cur.shape[k]);
    else if (cur instanceof z.ZodMiniArray) cur = unwrap(cur.def.element);
    else if (cur instanceof z.ZodMiniRecord) cur = unwrap(cur.def.valueType);
    else return [];
  }
  return cur instanceof z.ZodMiniObject ? Object.keys(cur.shape) : [];
}

/** The schema under optional/default/prefault wrappers. */
function unwrap(schema: z.core.$ZodType | undefined): z.core.$ZodType | undefined {
  let cur = schema;
  while (
    cur instanceof z.ZodMiniOptional || cur instanceof z.ZodMiniDefault ||
    cur instanceof z.ZodMiniPrefault
  ) {
    cur = cur.def.innerType;
  }
  return cur;
}
