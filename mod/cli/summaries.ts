/**
 * Lines of `shoal --help` that both programs need: program.ts's, of every
 * command, and main_run.ts's, of `shoal run` alone (which must not import
 * program.ts: its loaders would bring every command's chunks into its bundle).
 */
export const PROGRAM_SUMMARY = "Rootless OCI containers for HPC clusters.";
export const RUN_SUMMARY = "run a command in a new container from a pulled image";
