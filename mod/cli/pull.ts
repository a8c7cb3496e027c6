import { compressions } from "../config/choices.ts";
import { UsageError } from "../errors.ts";
import { commandContext, tlsVerifyOption } from "./context.ts";
import { choice, defineCommand, flag, parsed, value } from "./parser.ts";
import { printStored } from "./stored.ts";
import { pullProgress } from "./progress.ts";
import { readStdinSecret } from "./prompt.ts";
import { formatBytes, formatSeconds } from "./units.ts";

export const pullCommand = defineCommand({
  name: "pull",
  args: [{
    name: "IMAGE",
    help: "[REGISTRY[:PORT]/]PATH[:TAG][@DIGEST]; default registry docker.io",
  }],
  options: {
    platform: value(
      "--platform <OS/ARCH[/VARIANT]>",
      "the platform to pull (default: this machine's)",
    ),
    centralizedRepository: flag(
      "--centralized-repository",
      "store it in the site's repository for everyone (root)",
    ),
    tlsVerify: tlsVerifyOption(),
    username: value("--username <USER>", "credentials for this pull only (with --password-stdin)"),
    passwordStdin: flag("--password-stdin", "read this pull's password from standard input"),
    compression: choice(
      "--compression <ALGORITHM>",
      compressions,
      `squashfs compression: ${compressions.join(", ")} (default from the config)`,
    ),
    compressionLevel: parsed("--compression-level <N>", "compression level", (v = "") => {
      if (!/^\d+$/.test(v)) throw new UsageError(`--compression-level takes a number, not '${v}'`);
      return Number(v);
    }),
  },
  more: `
Layers already in the repository are not downloaded again, an interrupted
download resumes, and pulling an image that has not changed does no work.

Examples:
  shoal pull debian:bookworm
  shoal pull ghcr.io/owner/tool:1.2 --platform linux/arm64
  shoal pull --tls-verify=false localhost:5000/demo:latest
  echo "$TOKEN" | shoal pull --username me --password-stdin nvcr.io/nvidia/pytorch:24.05-py3
  sudo shoal pull --centralized-repository docker.io/library/ubuntu:24.04`,
  async action({ args: [image], options: opts, verbosity }) {
    if (opts.passwordStdin && opts.username === undefined) {
      throw new UsageError("--password-stdin needs --username");
    }
    const { loaded, logger } = await commandContext(verbosity);
    const { pull } = await import("../image/pull.ts");
    const password = opts.passwordStdin ? await readStdinSecret() : undefined;
    const quiet = logger.verbosity === "quiet";
    const result = await pull(loaded, {
      reference: image!,
      platform: opts.platform,
      tlsVerify: opts.tlsVerify,
      centralized: opts.centralizedRepository,
      compression: opts.compression,
      compressionLevel: opts.compressionLevel,
      username: opts.username,
      password,
    }, {
      logger,
      onEvent: quiet ? undefined : pullProgress(Deno.stderr.isTerminal()),
    });
    const img = result.image;
    if (quiet) return;
    const t = result.timings;
    printStored("Pulled", img, result.upToDate, t.resolve + t.download + t.convert, result.cluster);
    if (result.upToDate) return;
    logger.verbose(
      `resolve ${formatSeconds(t.resolve)}, download ${formatSeconds(t.download)} (${
        formatBytes(result.downloadedBytes)
      }), convert ${formatSeconds(t.convert)}; stored in ${img.squashfsPath}`,
    );
  },
});
