import { ExitStatus, renderError, UsageError } from "../errors.ts";
import { parseDeviceArgument } from "../runtime/devices.ts";
import { parseEnvOption, readEnvFile } from "../runtime/env.ts";
import { parseGpusOption } from "../gpu/option.ts";
import { type MountRequest, parseMountOption, parseVolumeOption } from "../runtime/mounts.ts";
import { parseAnnotationOption, type RunRequest } from "../runtime/spec.ts";
// Static: this module is loaded only for `shoal run` (program.ts), which needs the engine.
import { runContainer } from "../runtime/run.ts";
import { currentCaller, userOptionIsRoot } from "../runtime/user_option.ts";
import { commandContext } from "./context.ts";
import { choice, defineCommand, flag, list, value } from "./parser.ts";

/** `512m`, `2g`, `1048576`: bytes (k, m, g, t are powers of 1024, as tmpfs takes them). */
export function parseSize(option: string, value: string): number {
  const m = value.trim().toLowerCase().match(/^(\d+)\s*([kmgt]?)(i?b)?$/);
  if (m === null || Number(m[1]) === 0) {
    throw new UsageError(`${option} ${value}: expected a size such as 512m or 2g`);
  }
  const power = ["", "k", "m", "g", "t"].indexOf(m[2]!);
  return Number(m[1]) * 1024 ** power;
}

function parseCount(option: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${option} takes a number, not '${value}'`);
  return Number(value);
}

/** `--root`/`--fakeroot` and `-u`, which must not ask for both identities. */
function rootRequested(root: boolean, user: string | undefined): boolean {
  if (user === undefined) return root;
  const asRoot = userOptionIsRoot(user, currentCaller());
  if (root && !asRoot) {
    throw new UsageError(`-u ${user} and --root ask for two users: give one of them`);
  }
  return asRoot;
}

export const runCommand = defineCommand({
  name: "run",
  usage: "[OPTIONS] IMAGE [COMMAND [ARG...]]",
  args: [
    {
      name: "IMAGE",
      help: "a name as 'shoal images' lists it, the name without its registry, or an IMAGE ID",
    },
    {
      name: "COMMAND",
      help: "command and arguments (default: the image's)",
      variadic: true,
      optional: true,
    },
  ],
  stopAtFirstArgument: true,
  options: {
    root: flag("--root", "be root (uid 0) inside, with your subordinate ids mapped"),
    fakeroot: flag("--fakeroot", "same as --root"),
    user: value(
      "-u, --user <USER[:GROUP]>",
      "yourself (your name or uid) or root (0 or root, as --root); no other user",
    ),
    mount: list(
      "--mount <SPEC>",
      "bind mount: type=bind,source=/host,destination=/ctr[,readonly]",
    ),
    volume: list("-v, --volume <SRC:DST[:ro]>", "bind mount, Docker's short form"),
    env: list("-e, --env <NAME[=VALUE]>", "set a variable (NAME alone: take yours)"),
    envFile: list(
      "--env-file <FILE>",
      "set the variables of FILE: NAME=VALUE or NAME lines, # comments (before -e)",
    ),
    workdir: value(
      "-w, --workdir <DIR>",
      "working directory inside (absolute; created if missing)",
    ),
    entrypoint: value(
      "--entrypoint <CMD>",
      "replace the image's ENTRYPOINT and drop its CMD, as Docker does ('' clears it)",
    ),
    tty: flag("-t, --tty", "give the container a terminal"),
    interactive: flag(
      "-i, --interactive",
      "pass standard input when it is a terminal (pipes and files are always passed)",
    ),
    rm: flag("--rm", "accepted for Docker's sake: every container is removed when it ends"),
    init: flag("--init", "run a tiny init as PID 1 that reaps zombies"),
    pid: choice(
      "--pid <MODE>",
      ["host", "private"] as const,
      "pid namespace: host (the default) or private",
    ),
    name: value("--name <NAME>", "name the container (for 'shoal ps' and 'shoal kill')"),
    annotation: list("--annotation <KEY=VALUE>", "OCI annotation for hooks"),
    device: list(
      "--device <HOST[:CTR][:rwm]>",
      "make a host device available, or a CDI device vendor.com/class=name",
    ),
    gpus: value(
      "--gpus <GPUS>",
      "GPUs as Docker takes them: all, a count, device=0,2 or device=GPU-<uuid> (in a Slurm job: of the job's GPUs)",
    ),
    centralizedRepository: flag(
      "--centralized-repository",
      "take the image from the site's centralized repository",
    ),
    writableTmpfsSize: value(
      "--writable-tmpfs-size <SIZE>",
      "size limit of the writable layer (e.g. 2g)",
    ),
    preserveFds: value("--preserve-fds <N>", "pass file descriptors 3..3+N-1 to the container"),
    mpi: flag("--mpi", "replace the image's MPI with the host's (the site's default MPI type)"),
    mpiType: value("--mpi-type <NAME>", "as --mpi, with the site's MPI type NAME"),
    join: value(
      "--join <KEY>",
      "share one container with the other runs given KEY (ranks of a Slurm, hydra or PMIx step on one node share one anyway)",
    ),
  },
  more: `
Options after IMAGE belong to the container's command. The container shares
the host's network, IPC and (by default) process ids, sees /dev/shm and your
bind mounts, and gets a private /tmp and a writable root filesystem whose
changes vanish when it ends. You keep your uid, gids and $HOME path inside
unless you ask for --root; $HOME is an empty writable directory there unless
the site or a -v mount puts a directory at it. Standard input reaches the
container when it is a pipe or a file (on a terminal: with -i or -t). The
container's exit status is shoal's.

Examples:
  shoal run debian:bookworm cat /etc/os-release
  shoal run --root debian:bookworm bash -c 'apt-get update && apt-get install -y cowsay && /usr/games/cowsay hi'
  shoal run -v "$PWD":/work -w /work ubuntu:24.04 make -j8
  shoal run --mount=type=bind,source=$SCRATCH/data,destination=/data,readonly IMAGE ls /data
  shoal run -it --name dev debian:bookworm bash
  zcat data.gz | shoal run IMAGE python3 process.py
  srun -n 64 shoal run --centralized-repository my/mpi-app:1.0 ./solver`,
  async action({ args: [image, ...command], options: opts, verbosity }) {
    const mounts: MountRequest[] = [
      ...opts.mount.map(parseMountOption),
      ...opts.volume.map(parseVolumeOption),
    ];
    const request: RunRequest = {
      command,
      entrypoint: opts.entrypoint,
      mounts,
      env: [...opts.envFile.flatMap(readEnvFile), ...opts.env.map(parseEnvOption)],
      workdir: opts.workdir,
      tty: opts.tty,
      // A terminal only on request: runc reads its stdin whether or not the container
      // does, which would stop a run in the background (SIGTTIN) or take what is typed.
      stdin: opts.interactive || !Deno.stdin.isTerminal(),
      init: opts.init,
      pid: opts.pid ?? "host",
      name: opts.name,
      annotations: Object.fromEntries(opts.annotation.map(parseAnnotationOption)),
      devices: opts.device.map(parseDeviceArgument),
      gpus: opts.gpus === undefined ? undefined : parseGpusOption(opts.gpus),
      root: rootRequested(opts.root || opts.fakeroot, opts.user),
      writableTmpfsSize: opts.writableTmpfsSize === undefined
        ? undefined
        : parseSize("--writable-tmpfs-size", opts.writableTmpfsSize),
      ...(opts.mpi || opts.mpiType !== undefined ? { mpi: { type: opts.mpiType } } : {}),
    };
    if (request.tty && !Deno.stdin.isTerminal()) {
      throw new UsageError("-t needs a terminal on standard input", {
        hint: "drop -t: input from a pipe or a file is passed without it",
      });
    }
    const preserveFds = opts.preserveFds === undefined
      ? 0
      : parseCount("--preserve-fds", opts.preserveFds);
    const { loaded, logger } = await commandContext(verbosity);
    const outcome = await runContainer(loaded, {
      image: image!,
      centralized: opts.centralizedRepository,
      request,
      preserveFds,
      join: opts.join,
      logger,
    });
    if (outcome.error !== undefined) {
      console.error(renderError(outcome.error, logger.verbosity === "debug"));
    }
    if (outcome.status !== 0) throw new ExitStatus(outcome.status);
  },
});
