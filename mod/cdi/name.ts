/**
 * CDI device names as users write them: `vendor.com/class=name`. The rules
 * are the CDI spec's (v0.8.0): vendor and class start with a letter, device
 * names with a letter or (since v0.5.0) a digit; all end with a letter or digit.
 */

const VENDOR = /^[A-Za-z]([A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const CLASS = VENDOR;
const DEVICE = /^[A-Za-z0-9]([A-Za-z0-9._:-]*[A-Za-z0-9])?$/;

export interface QualifiedName {
  /** `vendor/class`, the spec's `kind`. */
  kind: string;
  /** A device of that kind, or "all". */
  name: string;
}

/** Whether `--device X` names a CDI device rather than a host path. */
export function looksQualified(spec: string): boolean {
  return !spec.startsWith("/") && spec.includes("/") && spec.includes("=");
}

/** Why `kind` is not a valid CDI kind; undefined when it is. */
export function kindProblem(kind: string): string | undefined {
  const slash = kind.indexOf("/");
  if (slash < 0) return `"${kind}" is not vendor/class`;
  const [vendor, cls] = [kind.slice(0, slash), kind.slice(slash + 1)];
  if (!VENDOR.test(vendor)) {
    return `vendor "${vendor}" must start with a letter, end with a letter or digit, and hold only letters, digits, '.', '-', '_'`;
  }
  if (!CLASS.test(cls)) {
    return `class "${cls}" must start with a letter, end with a letter or digit, and hold only letters, digits, '.', '-', '_'`;
  }
  return undefined;
}

/** Why `name` is not a valid CDI device name; undefined when it is. */
export function deviceNameProblem(name: string): string | undefined {
  return DEVICE.test(name)
    ? undefined
    : `device name "${name}" must start and end with a letter or digit and hold only letters, digits, '.', ':', '-', '_'`;
}

/** Splits `vendor/class=name`; throws a one-line reason when it is not one. */
export function parseQualifiedName(spec: string): QualifiedName {
  const eq = spec.indexOf("=");
  const kind = spec.slice(0, eq);
  const name = spec.slice(eq + 1);
  const problem = kindProblem(kind) ?? deviceNameProblem(name);
  if (problem !== undefined) throw new Error(problem);
  return { kind, name };
}
