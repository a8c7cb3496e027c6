/**
 * The CDI devices of a node: the spec files of the spec dirs (`/etc/cdi`,
 * then `/var/run/cdi`, or the site config's `cdiSpecDirs`), read only by a
 * run that asks for a CDI device. A device defined in a later dir replaces
 * one of the same name from an earlier dir, as in the reference
 * implementation; two files of one dir defining it is an error.
 *
 * A spec file says which host files every container asking for its devices
 * gets and which programs run as hooks, so with the installation's security
 * checks on it is trusted only as the site config is: owned by root and not
 * writable by others, with every directory above it. A file that fails that,
 * or does not parse, fails the run rather than being skipped: a device
 * silently taken from an older file would be the wrong one.
 */
import { join } from "../path.ts";
import { compareStrings } from "../compare.ts";
import { ConfigError, SecurityError, UsageError } from "../errors.ts";
import { rootOnlyProblems } from "../config/security.ts";
import { ShapeError } from "../shape.ts";
import { type CdiDevice, type CdiSpec, checkSpec } from "./spec.ts";
import { parseQualifiedName } from "./name.ts";

export const DEFAULT_SPEC_DIRS = ["/etc/cdi", "/var/run/cdi"];

/** A spec file as read. */
export interface SpecFile {
  path: string;
  spec: CdiSpec;
}

/** One device, with the spec file it comes from. */
export interface ResolvedDevice {
  /** `vendor/class=name`. */
  qualified: string;
  file: SpecFile;
  device: CdiDevice;
}

function names(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)]
      .filter((e) => !e.isDirectory && (e.name.endsWith(".json") || e.name.endsWith(".yaml")))
      .map((e) => e.name)
      .sort(compareStrings);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return [];
    throw new ConfigError(`CDI spec dir ${dir}: cannot read: ${(err as Error).message}`, {
      hint: "make it readable, or ask your admin",
    });
  }
}

async function readSpec(path: string, checked: boolean): Promise<SpecFile> {
  const [unsafe] = checked ? rootOnlyProblems(path) : [];
  if (unsafe) {
    throw new SecurityError(`CDI spec ${path}: ${unsafe.message}`, { hint: unsafe.hint });
  }
  const fail = (why: string) =>
    new ConfigError(`CDI spec ${path}: ${why}`, {
      hint: "fix or remove the file (ask your admin)",
    });
  let value: unknown;
  try {
    const text = Deno.readTextFileSync(path);
    value = path.endsWith(".json") ? JSON.parse(text) : (await yamlParser())(text);
  } catch (err) {
    throw fail(
      `not valid ${path.endsWith(".json") ? "JSON" : "YAML"}: ${
        (err as Error).message.split("\n")[0]
      }`,
    );
  }
  try {
    return { path, spec: checkSpec(value) };
  } catch (err) {
    if (err instanceof ShapeError) throw fail(err.message);
    throw err;
  }
}

/** A spec file read on its own: its spec, or why it is not used. */
export type SpecFileResult = SpecFile | { path: string; error: ConfigError | SecurityError };

/**
 * Every spec file of the dirs, in their order, each read on its own so that
 * one broken file (or unreadable dir, its path then the dir's) does not hide
 * the others (`shoal cdi list`, doctor).
 */
export async function readSpecFiles(dirs: string[], checked: boolean): Promise<SpecFileResult[]> {
  const out: SpecFileResult[] = [];
  for (const dir of dirs) {
    try {
      for (const name of names(dir)) {
        try {
          out.push(await readSpec(join(dir, name), checked));
        } catch (err) {
          if (!(err instanceof ConfigError || err instanceof SecurityError)) throw err;
          out.push({ path: join(dir, name), error: err });
        }
      }
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      out.push({ path: dir, error: err });
    }
  }
  return out;
}

/** Every device of the spec dirs by qualified name, later dirs winning. */
export async function readDevices(
  dirs: string[],
  checked: boolean,
): Promise<Map<string, ResolvedDevice>> {
  const devices = new Map<string, ResolvedDevice>();
  for (const dir of dirs) {
    const here = new Map<string, ResolvedDevice>();
    for (const name of names(dir)) {
      const file = await readSpec(join(dir, name), checked);
      for (const device of file.spec.devices) {
        const qualified = `${file.spec.kind}=${device.name}`;
        const other = here.get(qualified);
        if (other !== undefined) {
          throw new ConfigError(
            `CDI device ${qualified} is defined both in ${other.file.path} and in ${file.path}`,
            { hint: "remove one of them (ask your admin)" },
          );
        }
        here.set(qualified, { qualified, file, device });
      }
    }
    for (const [k, v] of here) devices.set(k, v);
  }
  return devices;
}

/**
 * The devices `--device` options name, in their order (`kind=all`: each of
 * the kind, in file order), each once.
 */
export function selectDevices(
  known: Map<string, ResolvedDevice>,
  requested: string[],
  dirs: string[],
): ResolvedDevice[] {
  const out = new Map<string, ResolvedDevice>();
  for (const q of requested) {
    const { kind, name } = parseQualifiedName(q);
    const ofKind = [...known.values()].filter((d) => d.file.spec.kind === kind);
    const found = name === "all" && !known.has(q)
      ? ofKind
      : [known.get(q)].filter((d) => d !== undefined);
    if (found.length === 0) {
      const offer = ofKind.length > 0 ? ofKind : [...known.values()];
      throw new UsageError(
        `--device ${q}: no such CDI device in ${dirs.join(", ")}`,
        {
          hint: offer.length > 0
            ? `the devices there: ${offer.map((d) => d.qualified).join(", ")}`
            : "no CDI spec files there; ask your admin to generate them",
        },
      );
    }
    for (const d of found) out.set(d.qualified, d);
  }
  return [...out.values()];
}

/**
 * The YAML parser, loaded only by a run whose specs are YAML. Its ES module
 * build: `deno bundle` picks the package's CommonJS build for "yaml", whose
 * require() shim (node:module, ~15 ms) the bundle then loads at every start
 * of every command (tests/startup_rules_test.ts checks the bundle).
 */
type Yaml = typeof import("yaml");

async function yamlParser(): Promise<(text: string) => unknown> {
  // The build's own types are those of the package (dist/index.d.ts), which Deno does not see.
  const yaml = await import("../../node_modules/yaml/browser/index.js") as unknown as Yaml;
  return yaml.parse;
}
