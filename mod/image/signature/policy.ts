/**
 * The site's signature policy (config `signatures`), in the spirit of
 * containers-policy.json's scopes: a rule names a registry, a namespace in it
 * or one repository, and the most specific rule that covers an image decides.
 * `*` covers every image, `load` the images `shoal load` stored.
 */
import type { SiteConfig } from "../../config/schema.ts";

export type SignatureRule = SiteConfig["signatures"][number];

/** Whether `scope` covers the repository `name` (`registry/path`): equal, or a path prefix of it. */
function covers(scope: string, name: string): boolean {
  return scope === "*" || name === scope || name.startsWith(scope + "/");
}

/** The rule for an image `registry/repository`, or undefined when none covers it. */
export function ruleFor(
  rules: readonly SignatureRule[],
  registry: string,
  repository: string,
): SignatureRule | undefined {
  const name = `${registry}/${repository}`;
  let best: SignatureRule | undefined;
  for (const r of rules) {
    if (!covers(r.scope, name)) continue;
    // "*" is the least specific; otherwise the longer scope is the narrower one.
    const rank = (s: string) => s === "*" ? -1 : s.length;
    if (best === undefined || rank(r.scope) > rank(best.scope)) best = r;
  }
  return best;
}
