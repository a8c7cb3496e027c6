/**
 * The command-line program: the command table, in the order `shoal --help`
 * lists it (start.ts runs it). A command's definition (its
 * options and action, and with them its engine) is loaded only when it runs
 * or is explained, so a command loads only its own code.
 */
import { VERSION } from "../version.ts";
import { FOREIGN_COMMANDS } from "./foreign.ts";
import type { Program } from "./parser.ts";
import { PROGRAM_SUMMARY, RUN_SUMMARY } from "./summaries.ts";

export const program: Program = {
  summary: PROGRAM_SUMMARY,
  version: VERSION,
  // Loading every command's definitions cost every start ~3 ms.
  commands: [
    {
      name: "run",
      summary: RUN_SUMMARY,
      load: async () => (await import("./run.ts")).runCommand,
    },
    {
      name: "exec",
      summary: "run a command in one of your running containers",
      load: async () => (await import("./exec.ts")).execCommand,
    },
    {
      name: "ps",
      summary: "list your running containers",
      load: async () => (await import("./ps.ts")).psCommand,
    },
    {
      name: "kill",
      summary: "send a signal to one of your running containers (default KILL)",
      load: async () => (await import("./kill.ts")).killCommand,
    },
    {
      name: "pull",
      summary: "pull an image from a registry and store it as a squashfs file",
      load: async () => (await import("./pull.ts")).pullCommand,
    },
    {
      name: "images",
      summary: "list the images in your repository (or the centralized one)",
      load: async () => (await import("./images.ts")).imagesCommand,
    },
    {
      name: "rmi",
      summary: "remove images (by name, tag, digest or IMAGE ID)",
      load: async () => (await import("./images.ts")).rmiCommand,
    },
    {
      name: "load",
      summary: "store an image from a `docker save` or OCI archive under a name",
      load: async () => (await import("./load.ts")).loadCommand,
    },
    {
      name: "system",
      summary: "show (df) or free (prune) what your repository holds beyond its images",
      load: async () => (await import("./system.ts")).systemCommand,
    },
    {
      name: "store",
      summary: "the cluster image store's commands (the converter)",
      load: async () => (await import("./store.ts")).storeCommand,
    },
    {
      name: "login",
      summary: "log in to a registry and keep the credentials for pulls",
      load: async () => (await import("./login.ts")).loginCommand,
    },
    {
      name: "logout",
      summary: "remove the credentials 'shoal login' stored for a registry",
      load: async () => (await import("./login.ts")).logoutCommand,
    },
    {
      name: "hooks",
      summary: "list the site's OCI hooks, and which a run would get",
      load: async () => (await import("./hooks.ts")).hooksCommand,
    },
    {
      name: "cdi",
      summary: "generate the CDI spec of this node's GPUs, or list the CDI devices",
      load: async () => (await import("./cdi.ts")).cdiCommand,
    },
    {
      name: "doctor",
      summary: "check that this machine and user can run containers, and say what to fix",
      load: async () => (await import("./doctor.ts")).doctorCommand,
    },
    {
      name: "version",
      summary: "print shoal's version and the versions it runs on",
      load: async () => (await import("./version.ts")).versionCommand,
    },
  ],
  more: `
Run 'shoal help COMMAND' for the options and examples of one command.

Examples:
  shoal doctor                 check that this machine and user can run containers
  shoal pull debian:bookworm   pull an image from Docker Hub
  shoal images                 list your images
  shoal --version`,
  foreign: FOREIGN_COMMANDS,
};
