/**
 * The closed sets of values config keys and options take, apart from the
 * schemas (schema.ts), so that the command line can offer them without
 * building the schemas, which a start does only when the config changed.
 */

export const compressions = ["zstd", "gzip", "lz4", "xz", "lzo", "lzma"] as const;

export const outputFormats = ["table", "json"] as const;
