/**
 * `shoal run`, `ps` and `kill` on path A: the setuid helper mounts images with
 * kernel squashfs (tests/support/run_cases.ts).
 */
import { registerRunTests } from "./support/run_cases.ts";

registerRunTests(true);
