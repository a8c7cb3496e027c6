/**
 * `shoal run`, `ps` and `kill` on path B: no helper installed, so images are
 * mounted with squashfuse in a user namespace (tests/support/run_cases.ts).
 */
import { registerRunTests } from "./support/run_cases.ts";

registerRunTests(false);
