/**
 * The untrusted side of a publish: hands an image to the converter
 * (convert.ts, started as the store's owner by the helper) over its standard
 * input, and downloads the layers only when the converter says the store
 * does not have the image and this publish holds the claim.
 */
import { ShoalError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { SignedPayload } from "../signature/cosign.ts";
import { collectTail } from "../squashfs.ts";
import { PROTOCOL_LINE } from "./convert.ts";

export interface PublishSource {
  registry: string;
  repository: string;
  /** The platform manifest's digest: what the store keys the image by. */
  digest: string;
  /** The index the reference named, when it named one (its signatures may be the index's). */
  indexBytes?: Uint8Array;
  manifestBytes: Uint8Array;
  configBytes: Uint8Array;
  signatures: SignedPayload[];
  /** The layers, in manifest order, fetched when the converter asks for them. */
  layers(): Promise<LayerFile[]>;
}

/** A layer to send: a file, which may still be growing (a download in progress, follow.ts). */
export interface LayerFile {
  size: number;
  open(): Promise<Deno.FsFile>;
  /** Resolves with the bytes the file has once it has more than `offset`, or all it will have. */
  written(offset: number): Promise<number>;
}

/** A layer that is a complete file of `size` bytes at `path`. */
export function layerFile(path: string, size: number): LayerFile {
  return {
    size,
    open: () => Deno.open(path, { read: true }),
    written: () => Promise.resolve(size),
  };
}

export type PublishOutcome = { outcome: "exists" } | { outcome: "published"; size: number };

const encoder = new TextEncoder();

function part(keyword: string, bytes: Uint8Array): Uint8Array[] {
  return [encoder.encode(`${keyword} ${bytes.length}\n`), bytes];
}

/** Answer lines of the converter, one at a time. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    text += decoder.decode(chunk, { stream: true });
    for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n")) {
      yield text.slice(0, nl);
      text = text.slice(nl + 1);
    }
  }
}

/** Runs `argv` (the helper's publish, or the converter itself) and feeds it the image. */
export async function publishImage(
  argv: string[],
  src: PublishSource,
  logger: Logger,
): Promise<PublishOutcome> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    throw new ShoalError(`cannot run ${argv[0]}: ${(err as Error).message}`, {
      hint: "the cluster store needs the setuid helper: ask your admin (install.sh as root)",
    });
  }
  const stderr = collectTail(child.stderr);
  const input = child.stdin.getWriter();
  const answers = lines(child.stdout);
  let outcome: PublishOutcome | undefined;
  /** shoal's own failure (a download's): it says more than the converter's, left without input. */
  let failed: ShoalError | undefined;
  try {
    const header = [
      encoder.encode(`${PROTOCOL_LINE}\nname ${src.registry}/${src.repository}\n`),
      ...part("index", src.indexBytes ?? new Uint8Array()),
      ...part("manifest", src.manifestBytes),
      ...part("config", src.configBytes),
      encoder.encode(`signatures ${src.signatures.length}\n`),
      ...src.signatures.flatMap((s) => [
        encoder.encode(`${s.payload.length} ${s.signature}\n`),
        s.payload,
      ]),
    ];
    for (const chunk of header) await input.write(chunk);
    for await (const line of answers) {
      if (line.startsWith("wait ")) {
        logger.info(`waiting for another publish of this image (${line.slice(5)})`);
      } else if (line === "exists") {
        outcome = { outcome: "exists" };
        break;
      } else if (line === "send") {
        for (const layer of await src.layers()) await sendFile(input, layer);
        await input.close();
      } else if (line.startsWith("published ")) {
        outcome = { outcome: "published", size: Number(line.slice(10)) };
        break;
      }
    }
  } catch (err) {
    // The converter's own error says more than a broken pipe.
    if (err instanceof ShoalError) failed = err;
    else logger.debug(`publish: ${(err as Error).message}`);
  } finally {
    await input.close().catch(() => {});
    // Its output is read no further (a converter that failed may still write).
    await answers.return(undefined);
    await child.stdout.cancel().catch(() => {/* cancelled with its reader */});
  }
  const status = await child.status;
  const said = (await stderr).trim().split("\n").at(-1) ?? "";
  if (failed !== undefined) throw failed;
  if (outcome === undefined || !status.success) {
    throw new ShoalError(
      `publishing to the cluster store failed: ${
        said.replace(/^shoal: error: (publish: )?/, "") || `exit ${status.code}`
      }`,
    );
  }
  return outcome;
}

/**
 * Writes the layer's bytes to the converter as the file has them; it must
 * have the size the manifest says.
 */
async function sendFile(input: WritableStreamDefaultWriter<Uint8Array>, layer: LayerFile) {
  using file = await layer.open();
  const buffer = new Uint8Array(1024 * 1024);
  let sent = 0;
  let after = sent;
  while (sent < layer.size) {
    const written = await layer.written(after);
    const n = written > sent
      ? await file.read(buffer.subarray(0, Math.min(buffer.length, written - sent)))
      : null;
    if (n === null) {
      if (written === layer.size || written <= sent) {
        throw new ShoalError(`a layer has ${sent} bytes, not the ${layer.size} expected`);
      }
      // Shorter than the download said: it started over, and writes the same bytes again.
      after = written;
      continue;
    }
    sent += n;
    after = sent;
    // The write is done (in the pipe) when it resolves: the buffer is free again.
    await input.write(buffer.subarray(0, n));
  }
}
