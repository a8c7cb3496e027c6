/** shoal's own version; bumped by releases. */
export const VERSION = "0.1.0";
