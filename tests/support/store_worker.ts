/**
 * A separate process working on a repository, for the store tests:
 *
 *   commit REPO SEED [TAG] [--pause TEXT]   commit the image of SEED as TAG; with --pause,
 *                                           stop for good (until killed) right after the store
 *                                           logs a debug line containing TEXT, printing "paused"
 *   commit-loop REPO TAG                    commit ever new images as TAG, printing "committed"
 *   pull REPO SEED TAG SLEEP_MS             a pull: under the pull lock, "up to date" if the
 *                                           image is there, else sleep, commit, "pulled"
 *   hold REPO shared|exclusive              take the repository lock, print "held", wait
 *   lookup REPO REF COUNT                   COUNT lookups at once; prints how many found it
 *   list REPO                               prints the listed references as JSON
 *
 * Options: --centralized, --timeout SECONDS (repository lock). Errors end it
 * with status 1 and the message on stderr.
 */
import { acquireLock } from "../../mod/image/store/lock.ts";
import { openStore } from "../../mod/image/store/store.ts";
import type { Logger } from "../../mod/log.ts";
import { fakeImage, fakeSquashfs } from "./store.ts";

const MAX_LOOPS = 100_000;

function say(line: string): void {
  Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
}

function option(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i < 0 ? undefined : Deno.args[i + 1];
}

/** Blocks this process for good: the test kills it here. */
function freeze(): never {
  say("paused");
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  throw new Error("unreachable");
}

const pauseAt = option("--pause");
const logger: Logger = {
  verbosity: "debug",
  info: () => {},
  verbose: () => {},
  debug: (m) => {
    if (pauseAt !== undefined && m.includes(pauseAt)) freeze();
  },
  warn: (m) => Deno.stderr.writeSync(new TextEncoder().encode(`warning: ${m}\n`)),
};

const [command = "", repo = "", ...rest] = Deno.args;
const timeout = option("--timeout");
const store = openStore(repo, {
  centralized: Deno.args.includes("--centralized"),
  lockTimeoutSeconds: timeout === undefined ? 60 : Number(timeout),
  logger,
});

async function commit(seed: string, tag: string): Promise<void> {
  await using tmp = await store.tempDir();
  await store.commit(fakeImage(seed, { tag }), await fakeSquashfs(tmp.path, seed));
}

try {
  switch (command) {
    case "commit": {
      const [seed = "", tag = "latest"] = rest;
      await commit(seed, tag);
      say("committed");
      break;
    }
    case "commit-loop": {
      const [tag = "latest"] = rest;
      for (let i = 0; i < MAX_LOOPS; i++) {
        await commit(`${Deno.pid}-${i}`, tag);
        say("committed");
      }
      break;
    }
    case "pull": {
      const [seed = "", tag = "latest", sleepMs = "0"] = rest;
      const image = fakeImage(seed, { tag });
      await store.withPullLock(image, async () => {
        if (await store.lookup(image)) return say("up to date");
        await new Promise((r) => setTimeout(r, Number(sleepMs)));
        await commit(seed, tag);
        say("pulled");
      });
      break;
    }
    case "hold": {
      await acquireLock(store.paths.lock, {
        mode: rest[0] === "exclusive" ? "exclusive" : "shared",
        timeoutSeconds: 10,
        what: "repository lock",
        createMode: 0o644,
      });
      say("held");
      freeze();
      break;
    }
    case "lookup": {
      const [ref = "", count = "1"] = rest;
      const found = await Promise.all(
        Array.from({ length: Number(count) }, () => store.lookup(ref)),
      );
      say(String(found.filter((r) => r !== undefined).length));
      break;
    }
    case "list":
      say(JSON.stringify((await store.list()).map((r) => r.reference)));
      break;
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}`);
  }
} catch (err) {
  Deno.stderr.writeSync(new TextEncoder().encode(`${(err as Error).message}\n`));
  Deno.exit(1);
}
