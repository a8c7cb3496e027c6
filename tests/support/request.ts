/** A `shoal run` request with nothing asked for, for tests of the spec it becomes. */
import type { RunRequest } from "../../mod/runtime/spec.ts";

export function runRequest(over: Partial<RunRequest> = {}): RunRequest {
  return {
    command: [],
    mounts: [],
    env: [],
    tty: false,
    stdin: false,
    init: false,
    pid: "host",
    annotations: {},
    devices: [],
    root: false,
    ...over,
  };
}
