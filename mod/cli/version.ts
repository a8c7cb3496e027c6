import type { Command } from "@commander-js/extra-typings";
import { VERSION } from "../version.ts";
import { addGlobalOptions, formatOption } from "./context.ts";
import { printJson, printTable } from "./output.ts";

export function registerVersion(program: Command): void {
  addGlobalOptions(
    program.command("version")
      .description("print shoal's version and the versions it runs on")
      .addOption(formatOption())
      .addHelpText("after", "\nExamples:\n  shoal version\n  shoal version --format json"),
  ).action((opts) => {
    const info = {
      shoal: VERSION,
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      typescript: Deno.version.typescript,
      os: `${Deno.build.os}/${Deno.build.arch}`,
    };
    if (opts.format === "json") printJson(info);
    else printTable(["COMPONENT", "VERSION"], Object.entries(info));
  });
}
