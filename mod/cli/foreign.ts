/**
 * Commands of Docker, Podman, Apptainer and Enroot that shoal does not have,
 * with what to do instead: users type them from habit, and a "did you mean"
 * guess at a shoal command of similar spelling would send them astray.
 */

const ONE_RUN = "a container lives as long as its 'shoal run'";

/** The command's name to the advice that follows "shoal has no 'NAME' command: ". */
export const FOREIGN_COMMANDS: Readonly<Record<string, string>> = {
  logs: "a container's output goes where its 'shoal run' writes (redirect it to a file to keep it)",
  shell: "'shoal run -it IMAGE sh' (or bash) gives a shell in a new container",
  attach: `${ONE_RUN}, attached to its terminal ('shoal run -it' for a terminal)`,
  build:
    "build with docker, podman or buildah, then push to a registry and 'shoal pull', or 'docker save' and 'shoal load'",
  commit:
    "a container's changes vanish when it ends; build an image instead and 'shoal pull' or 'shoal load' it",
  create: `containers are made by 'shoal run': ${ONE_RUN}`,
  start: `containers are started by 'shoal run': ${ONE_RUN}`,
  restart: `${ONE_RUN}; run it again with 'shoal run'`,
  stop: `${ONE_RUN}; end it with Ctrl-C, or 'shoal kill NAME TERM' ('shoal ps' lists them)`,
  rm: "containers are removed when they end; 'shoal rmi' removes images",
  inspect: "'shoal images' and 'shoal ps' show what shoal knows of images and containers",
  push: "shoal only pulls; push with docker, podman or skopeo",
  import:
    "'shoal pull' fetches an image from a registry; 'shoal load' stores one from a 'docker save' or OCI archive",
  list: "'shoal images' lists images, 'shoal ps' running containers",
  remove: "'shoal rmi' removes images; containers are removed when they end",
};
