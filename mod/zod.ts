/**
 * zod/mini with zod's English messages. shoal uses zod/mini rather than
 * classic zod because classic zod takes about 13 ms to import and `shoal run`
 * must start within twice runc's own time (bench/startup.ts). zod/mini loads
 * no locale, so every issue would read "Invalid input"; loading English here,
 * where every schema gets its z, keeps the messages users see saying what was
 * expected.
 */
import { config } from "zod/mini";
import en from "zod/v4/locales/en.js";

config(en());

export * from "zod/mini";
