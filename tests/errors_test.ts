/**
 * Errors that say what happened: one line naming the actual problem, the
 * right exit code, nothing left behind (issue 11, item 5).
 */
import { assertEquals, assertMatch } from "./support/assert.ts";
import { shoal } from "./support/shoal.ts";

function oneLineError(stderr: string, pattern: RegExp): void {
  const lines = stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, stderr);
  assertMatch(lines[0] ?? "", /^shoal: error: /);
  assertMatch(lines[0] ?? "", pattern);
}

Deno.test("a registry port outside 1-65535 is named as the problem, not as an invalid URL", async () => {
  const home = await Deno.makeTempDir();
  try {
    const env = { HOME: home, XDG_DATA_HOME: `${home}/data` };
    for (
      const args of [["pull", "127.0.0.1:99999/busybox"], ["run", "localhost:0/busybox", "true"]]
    ) {
      const r = await shoal(args, { env });
      assertEquals(r.code, 2, r.stderr);
      oneLineError(r.stderr, /port (99999|0) is out of range \(1-65535\)/);
    }
    const login = await shoal(["login", "-u", "me", "--password-stdin", "127.0.0.1:70000"], {
      env,
      stdin: "secret\n",
    });
    assertEquals(login.code, 2, login.stderr);
    oneLineError(
      login.stderr,
      /'127\.0\.0\.1:70000' is not a registry: port 70000 is out of range/,
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
