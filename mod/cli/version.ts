import { VERSION } from "../version.ts";
import { formatOption } from "./context.ts";
import { printJson, printTable } from "./output.ts";
import { defineCommand } from "./parser.ts";

export const versionCommand = defineCommand({
  name: "version",
  args: [],
  options: { format: formatOption() },
  more: "Examples:\n  shoal version\n  shoal version --format json",
  action({ options: opts }) {
    const info = {
      shoal: VERSION,
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      typescript: Deno.version.typescript,
      os: `${Deno.build.os}/${Deno.build.arch}`,
    };
    if (opts.format === "json") printJson(info);
    else printTable(["COMPONENT", "VERSION"], Object.entries(info));
  },
});
