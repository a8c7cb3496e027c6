/**
 * `--format '{{.Repository}}:{{.Tag}}'`: one line per item, as docker and
 * podman take Go templates, with fields only (no functions or pipelines),
 * which is what scripts use. As docker does, `\t` and `\n` written in the
 * template stand for a tab and a newline.
 */
import { UsageError } from "../errors.ts";

export type Template = (values: Record<string, string>) => string;

const FIELD_RE = /\{\{\s*\.([A-Za-z]+)\s*\}\}/g;

/** Whether an option value is meant as a template rather than a format's name. */
export function isTemplate(format: string): boolean {
  return format.includes("{{");
}

/** Checks every field against `fields` now, so a typo is a usage error, not a blank column. */
export function parseTemplate(option: string, text: string, fields: readonly string[]): Template {
  const source = text.replaceAll("\\t", "\t").replaceAll("\\n", "\n");
  const parts: (string | { field: string })[] = [];
  let at = 0;
  for (const m of source.matchAll(FIELD_RE)) {
    parts.push(source.slice(at, m.index));
    const field = m[1]!;
    if (!fields.includes(field)) {
      throw new UsageError(`${option}: no field .${field}`, {
        hint: `the fields are ${fields.map((f) => `{{.${f}}}`).join(" ")}`,
      });
    }
    parts.push({ field });
    at = m.index + m[0].length;
  }
  parts.push(source.slice(at));
  const stray = parts.find((p) => typeof p === "string" && /\{\{|\}\}/.test(p));
  if (stray !== undefined) {
    throw new UsageError(`${option}: only {{.Field}} is understood, not ${JSON.stringify(text)}`, {
      hint: `the fields are ${fields.map((f) => `{{.${f}}}`).join(" ")}`,
    });
  }
  return (values) => parts.map((p) => typeof p === "string" ? p : (values[p.field] ?? "")).join("");
}
