import { ExitStatus, renderError } from "../errors.ts";
import { parseMountOption, parseVolumeOption } from "../runtime/mounts.ts";
import { containerArgs, parseAnnotationOption } from "../runtime/spec.ts";
import {
  type HookFacts,
  hookRefusal,
  type HookWhen,
  type InstalledHook,
  readHooks,
} from "../runtime/hooks.ts";
import { readerFor } from "../image/store/reader.ts";
import { commandContext, formatOption } from "./context.ts";
import { printJson, printTable } from "./output.ts";
import { defineCommand, flag, list, value } from "./parser.ts";

function describeWhen(when: HookWhen): string {
  const parts: string[] = [];
  if (when.always !== undefined) parts.push(`always=${when.always}`);
  for (const [k, v] of Object.entries(when.annotations ?? {})) parts.push(`annotation ${k}=${v}`);
  if (when.commands !== undefined) parts.push(`command ${when.commands.join("|")}`);
  if (when.hasBindMounts !== undefined) parts.push(`hasBindMounts=${when.hasBindMounts}`);
  return parts.join(" and ");
}

export const hooksCommand = defineCommand({
  name: "hooks",
  usage: "[OPTIONS] [IMAGE [COMMAND [ARG...]]]",
  args: [
    { name: "IMAGE", help: "say which hooks a run of this image would get", optional: true },
    {
      name: "COMMAND",
      help: "the run's command (default: the image's)",
      variadic: true,
      optional: true,
    },
  ],
  stopAtFirstArgument: true,
  options: {
    annotation: list("--annotation <KEY=VALUE>", "as for run: selects annotation hooks"),
    mount: list("--mount <SPEC>", "as for run: a bind mount (for hasBindMounts)"),
    volume: list("-v, --volume <SRC:DST[:ro]>", "as for run: a bind mount (for hasBindMounts)"),
    entrypoint: value("--entrypoint <CMD>", "as for run: replaces the image's ENTRYPOINT"),
    centralizedRepository: flag(
      "--centralized-repository",
      "take the image from the site's centralized repository",
    ),
    format: formatOption(),
  },
  more: `
Lists the OCI hooks of the site's hooks dir (hooksDir in the site config,
default <prefix>/etc/hooks.d): its *.json files in the oci-hooks(5) 1.0.0
format, in the order runc gets them, with their stages and the conditions of
their 'when'. Given the options, IMAGE and COMMAND of a 'shoal run' line, it
also says which of them that run gets, and why not the others. A hook file
that is broken, or whose program others could change, is reported (exit
status 1): every 'shoal run' refuses to start until it is fixed or removed.

Examples:
  shoal hooks
  shoal hooks --annotation com.example.gpu=all my/cuda:12 nvidia-smi
  shoal hooks --format json`,
  async action({ args: [image, ...command], options: opts, verbosity }) {
    const { loaded, logger } = await commandContext(verbosity);
    const { hooks, errors } = readHooks(loaded.paths.hooksDir, loaded.config.securityChecks);
    let facts: HookFacts | undefined;
    if (image !== undefined) {
      const store = readerFor(loaded, opts.centralizedRepository, logger);
      const found = await store.lookup(image);
      if (found === undefined) throw store.notFound(image);
      facts = {
        annotations: Object.fromEntries(opts.annotation.map(parseAnnotationOption)),
        command: containerArgs({ command, entrypoint: opts.entrypoint }, found)[0]!,
        hasBindMounts: [
          ...opts.mount.map(parseMountOption),
          ...opts.volume.map(parseVolumeOption),
        ].length > 0,
      };
    }
    const refusal = (h: InstalledHook) => facts && hookRefusal(h, facts);
    const format = opts.format ?? loaded.preferences.format ?? "table";
    if (format === "json") {
      printJson(hooks.map((h) => ({
        file: h.name,
        stages: h.stages,
        when: h.when,
        hook: h.hook,
        ...(facts === undefined ? {} : { runs: refusal(h) === undefined, why: refusal(h) }),
      })));
    } else {
      printTable(
        ["FILE", "STAGES", "WHEN", "PROGRAM", ...(facts ? ["RUNS"] : [])],
        hooks.map((h) => [
          h.name,
          h.stages.join(","),
          describeWhen(h.when),
          h.hook.path,
          ...(facts ? [refusal(h) === undefined ? "yes" : `no: ${refusal(h)}`] : []),
        ]),
      );
    }
    for (const err of errors) console.error(renderError(err, logger.verbosity === "debug"));
    if (errors.length > 0) throw new ExitStatus(1);
  },
});
