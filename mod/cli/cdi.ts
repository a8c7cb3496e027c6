import { ExitStatus, renderError, ShoalError, UsageError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { LoadedConfig } from "../config/load.ts";
import type { CdiSpec } from "../cdi/spec.ts";
import type { Generated } from "../gpu/generate.ts";
import type { Discovery, GpuVendor } from "../gpu/discover.ts";
import { dirname, resolve } from "../path.ts";
import { commandContext, formatOption } from "./context.ts";
import { printJson, printLine, printTable } from "./output.ts";
import { choice, defineCommand, value } from "./parser.ts";

const ACTIONS = ["generate", "list"] as const;
const VENDORS = ["nvidia", "amd"] as const;

export const cdiCommand = defineCommand({
  name: "cdi",
  args: [{
    name: "ACTION",
    help: "generate: write the CDI spec of this node's GPUs; list: the CDI devices runs can use",
  }],
  options: {
    vendor: choice(
      "--vendor <VENDOR>",
      VENDORS,
      "generate: the GPUs' vendor (default: the one found)",
    ),
    output: value("--output <FILE>", "generate: write the spec to FILE (-: print it)"),
    root: value(
      "--root <DIR>",
      "generate: look for the GPUs and driver files under DIR (default /)",
    ),
    format: formatOption(),
  },
  more: `
'generate' finds the node's GPUs (/proc/driver/nvidia, AMD's KFD topology in
/sys) and writes a CDI spec of them: kind nvidia.com/gpu (each GPU by index
and UUID, and "all": the device nodes, the driver's libraries of the running
driver version from the linker cache, its programs such as nvidia-smi, its
firmware) or amd.com/gpu (each GPU by index, and "all": /dev/kfd and the
GPUs' /dev/dri nodes, ROCm's libraries where the host has them). As root it
writes <first cdiSpecDirs dir>/<vendor>.json (default /etc/cdi); as anyone
else, or with --output, it prints the spec or writes FILE. Generate again
after every driver update ('shoal doctor' says when a spec is stale).

'list' prints the devices of every valid spec file of the spec dirs, one per
line, and one error line for each file that is not valid or not trusted
(exit status 1): every run asking for a CDI device fails until it is fixed.

Examples:
  sudo shoal cdi generate
  shoal cdi generate --vendor amd --output amd.json
  shoal cdi list
  shoal run --device nvidia.com/gpu=0 my/cuda:12 nvidia-smi`,
  async action({ args: [action], options: opts, verbosity }) {
    if (!(ACTIONS as readonly string[]).includes(action!)) {
      throw new UsageError(`cdi takes ${ACTIONS.join(" or ")}, not '${action}'`);
    }
    const { loaded, logger } = await commandContext(verbosity);
    if (action === "generate") return await generate(loaded, logger, opts);
    const given = (["vendor", "output", "root"] as const).find((k) => opts[k] !== undefined);
    if (given !== undefined) throw new UsageError(`--${given} is an option of 'cdi generate'`);
    await list(loaded, opts.format ?? loaded.preferences.format ?? "table", logger);
  },
});

/** The vendors to generate for: the one asked, else those whose driver is there. */
function vendorsOf(found: Discovery, asked: GpuVendor | undefined): GpuVendor[] {
  if (asked !== undefined) return [asked];
  const loaded = VENDORS.filter((v) =>
    v === "nvidia" ? found.nvidia !== null : (found.amd?.gpus.length ?? 0) > 0
  );
  if (loaded.length > 0) return loaded;
  // A GPU without its driver: that vendor's generator says what to load.
  const card = found.pci[0];
  if (card !== undefined) return [card.vendor];
  throw new ShoalError(`no NVIDIA or AMD GPU under ${found.root}`, {
    hint: "run it on a GPU node, or name the tree with --root",
  });
}

async function generate(
  loaded: LoadedConfig,
  logger: Logger,
  opts: { vendor?: GpuVendor; output?: string; root?: string },
): Promise<void> {
  const root = resolve(opts.root ?? "/");
  try {
    if (!Deno.statSync(root).isDirectory) throw new Error();
  } catch {
    throw new UsageError(`--root ${opts.root}: not a directory`);
  }
  const [{ discoverGpus }, { nvidiaSpec }, { amdSpec }] = await Promise.all([
    import("../gpu/discover.ts"),
    import("../gpu/generate_nvidia.ts"),
    import("../gpu/generate_amd.ts"),
  ]);
  const found = discoverGpus(root);
  const vendors = vendorsOf(found, opts.vendor);
  const generated: [GpuVendor, Generated][] = vendors.map((v) => [
    v,
    v === "nvidia" ? nvidiaSpec(found) : amdSpec(found),
  ]);
  for (const [, g] of generated) for (const w of g.warnings) logger.warn(w);
  const toStdout = opts.output === "-" || (opts.output === undefined && Deno.uid() !== 0);
  if (generated.length > 1 && (toStdout || opts.output !== undefined)) {
    throw new UsageError(`this node has both NVIDIA and AMD GPUs: name one with --vendor`);
  }
  if (toStdout) return printJson(generated[0]![1].spec);
  for (const [vendor, { spec }] of generated) {
    const dir = loaded.config.cdiSpecDirs[0] ?? "/etc/cdi";
    const path = opts.output === undefined ? `${dir}/${vendor}.json` : outputFile(opts.output);
    if (opts.output === undefined) await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
    await writeSpec(path, spec);
    const names = spec.devices.map((d) => d.name).join(", ");
    logger.info(`wrote ${path}: ${spec.kind} devices ${names}`);
    await warnOthers(path, spec.kind, loaded, logger);
  }
}

/** `--output FILE`, which the write replaces: a regular file or none (not /dev/stdout). */
function outputFile(output: string): string {
  const path = resolve(output);
  let info: Deno.FileInfo | undefined;
  try {
    info = Deno.lstatSync(path);
  } catch { /* a new file */ }
  if (info !== undefined && !info.isFile) {
    throw new UsageError(`--output ${output}: not a regular file`, {
      hint: "name a file to write, or --output - to print the spec",
    });
  }
  return path;
}

/** Writes atomically, mode 0644: runs trust a spec only when others cannot change it. */
async function writeSpec(path: string, spec: CdiSpec): Promise<void> {
  const { writeFileAtomic } = await import("../image/store/atomic.ts");
  try {
    await writeFileAtomic(
      path,
      new TextEncoder().encode(`${JSON.stringify(spec, null, 2)}\n`),
      0o644,
    );
  } catch (err) {
    throw new ShoalError(`cannot write ${path}: ${(err as Error).message}`, {
      hint: `check that ${dirname(path)} exists and is writable (the spec dirs need root)`,
    });
  }
}

/** Another file of the same dir with devices of `kind` makes every run asking for them fail. */
async function warnOthers(path: string, kind: string, loaded: LoadedConfig, logger: Logger) {
  if (!loaded.config.cdiSpecDirs.includes(dirname(path))) return;
  const { readSpecFiles } = await import("../cdi/registry.ts");
  for (const other of await readSpecFiles([dirname(path)], false)) {
    if (other.path !== path && "spec" in other && other.spec.kind === kind) {
      logger.warn(
        `${other.path} also defines ${kind} devices: runs asking for one defined in both fail; remove one of the files`,
      );
    }
  }
}

async function list(loaded: LoadedConfig, format: string, logger: Logger): Promise<void> {
  const { readSpecFiles } = await import("../cdi/registry.ts");
  const dirs = loaded.config.cdiSpecDirs;
  const files = await readSpecFiles(dirs, loaded.config.securityChecks);
  // As runs see them: a later dir's device replaces an earlier dir's.
  const devices = new Map<string, { device: string; file: string }>();
  const errors = files.flatMap((f) => "error" in f ? [{ file: f.path, error: f.error }] : []);
  for (const dir of dirs) {
    const here = new Map<string, string>();
    for (const f of files) {
      if (!("spec" in f) || dirname(f.path) !== dir) continue;
      for (const d of f.spec.devices) {
        const device = `${f.spec.kind}=${d.name}`;
        const other = here.get(device);
        if (other !== undefined) {
          errors.push({
            file: f.path,
            error: new ShoalError(
              `CDI device ${device} is defined both in ${other} and in ${f.path}`,
              {
                hint: "remove one of them (ask your admin)",
              },
            ),
          });
        }
        here.set(device, f.path);
        devices.set(device, { device, file: f.path });
      }
    }
  }
  if (format === "json") {
    printJson({
      dirs,
      devices: [...devices.values()],
      errors: errors.map((e) => ({ file: e.file, error: e.error.message, hint: e.error.hint })),
    });
  } else if (devices.size > 0) {
    printTable(["DEVICE", "SPEC FILE"], [...devices.values()].map((d) => [d.device, d.file]));
  } else if (errors.length === 0) {
    printLine(`no CDI spec files in ${dirs.join(", ")} (root: shoal cdi generate)`);
  }
  for (const e of errors) console.error(renderError(e.error, logger.verbosity === "debug"));
  if (errors.length > 0) throw new ExitStatus(1);
}
