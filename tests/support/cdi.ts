/** CDI spec files and fake device nodes made by tests (cdi_test, gpus_test). */
import { assert } from "./assert.ts";

/** A character device like /dev/null (1:3), made in `dir`, usable by everyone. */
export async function fakeNode(dir: string, name: string): Promise<string> {
  const path = `${dir}/${name}`;
  const r = await new Deno.Command("mknod", { args: ["-m", "666", path, "c", "1", "3"] }).output();
  assert(r.success, new TextDecoder().decode(r.stderr));
  return path;
}

/** Writes a spec file (JSON of `spec`, or the text given) readable by everyone. */
export async function writeSpec(dir: string, name: string, spec: unknown): Promise<string> {
  const file = `${dir}/${name}`;
  await Deno.writeTextFile(file, typeof spec === "string" ? spec : JSON.stringify(spec));
  await Deno.chmod(file, 0o644);
  return file;
}
