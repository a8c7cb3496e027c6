/**
 * `-u/--user` as Docker takes it (`USER[:GROUP]`, names or ids), mapped to the
 * two identities a shoal container has: the caller, with their own ids, or
 * root (`--root`). Any other user would need ids the caller does not own.
 */
import { UsageError } from "../errors.ts";
import { credentials, getgrgid, getpwuid } from "../sys/user.ts";

/** The caller's ids and names (undefined where NSS has none). */
export interface Caller {
  uid: number;
  gid: number;
  name?: string;
  groupName?: string;
}

export function currentCaller(): Caller {
  const { uid, gid } = credentials();
  return { uid, gid, name: getpwuid(uid)?.name, groupName: getgrgid(gid)?.name };
}

/** Whether `-u SPEC` asks for root (true) or for the caller (false); any other is refused. */
export function userOptionIsRoot(spec: string, caller: Caller): boolean {
  const [user = "", group, ...rest] = spec.split(":");
  const is = (word: string | undefined, id: number, name: string | undefined) =>
    word === String(id) || (name !== undefined && word === name);
  const groupIs = (id: number, name: string | undefined) =>
    group === undefined || is(group, id, name);
  if (rest.length === 0) {
    if (is(user, 0, "root") && groupIs(0, "root")) return true;
    if (is(user, caller.uid, caller.name) && groupIs(caller.gid, caller.groupName)) return false;
  }
  const you = `${caller.name ?? "you"} (${caller.uid}:${caller.gid})`;
  throw new UsageError(
    `-u ${spec}: shoal runs a container as ${you} or as root (-u 0, as --root), not as another user or group`,
    { hint: "leave -u out to run as yourself" },
  );
}
