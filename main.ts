/** shoal's entry point: the whole program (`shoal run` alone also has main_run.ts). */
import { program } from "./mod/cli/program.ts";
import { start } from "./mod/cli/start.ts";

await start(program);
