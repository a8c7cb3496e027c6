/**
 * Rendering a pull's progress on stderr: redrawn bars per layer and in total
 * on a terminal, one plain line per step otherwise (logs, batch jobs).
 */
import type { PullEvent } from "../image/pull.ts";
import { formatBytes, shortId } from "./units.ts";

const enc = new TextEncoder();

interface LayerState {
  digest: string;
  total: number;
  done: number;
  complete: boolean;
  cached: boolean;
  started: number;
  resumedFrom: number;
}

export function pullProgress(terminal: boolean): (event: PullEvent) => void {
  return terminal ? new BarRenderer().handle : new LineRenderer().handle;
}

function write(s: string): void {
  Deno.stderr.writeSync(enc.encode(s));
}

class LineRenderer {
  #layers = new Map<string, LayerState>();

  handle = (e: PullEvent): void => {
    switch (e.kind) {
      case "resolved": {
        const total = e.layers.reduce((n, l) => n + l.size, 0);
        write(
          `Pulling ${e.reference} (${e.platform}, ${e.layers.length} layers, ${
            formatBytes(total)
          })\n`,
        );
        break;
      }
      case "layer": {
        const p = e.progress;
        let s = this.#layers.get(p.digest);
        if (!s) {
          s = {
            ...p,
            complete: false,
            started: performance.now(),
            resumedFrom: p.cached ? 0 : p.done,
          };
          this.#layers.set(p.digest, s);
        }
        if (p.complete && !s.complete) {
          s.complete = true;
          const secs = (performance.now() - s.started) / 1000;
          const how = p.cached
            ? "already present"
            : `downloaded ${formatBytes(p.total - s.resumedFrom)} in ${secs.toFixed(1)} s${
              s.resumedFrom > 0 ? ` (resumed at ${formatBytes(s.resumedFrom)})` : ""
            }`;
          write(`  layer ${shortId(p.digest)}: ${how}\n`);
        }
        break;
      }
      case "converting":
        write(`Converting ${e.layers} layers to squashfs\n`);
        break;
      case "committing":
        break;
    }
  };
}

/** Bars redrawn in place at most ten times a second. */
class BarRenderer {
  #layers: LayerState[] = [];
  #drawn = 0;
  #lastDraw = 0;
  #start = performance.now();

  handle = (e: PullEvent): void => {
    switch (e.kind) {
      case "resolved":
        write(`Pulling ${e.reference} (${e.platform})\n`);
        this.#layers = e.layers.map((l) => ({
          digest: l.digest,
          total: l.size,
          done: 0,
          complete: false,
          cached: false,
          started: performance.now(),
          resumedFrom: 0,
        }));
        this.#draw(true);
        break;
      case "layer": {
        const s = this.#layers.find((l) => l.digest === e.progress.digest);
        if (!s) return;
        Object.assign(s, {
          done: e.progress.done,
          total: e.progress.total,
          complete: e.progress.complete,
          cached: e.progress.cached,
        });
        this.#draw(e.progress.complete);
        break;
      }
      case "converting":
        this.#draw(true);
        write(`Converting ${e.layers} layers to squashfs\n`);
        this.#drawn = 0;
        break;
      case "committing":
        break;
    }
  };

  #draw(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    const lines = this.#layers.map((l) => this.#line(shortId(l.digest), l.done, l.total, l));
    const done = this.#layers.reduce((n, l) => n + l.done, 0);
    const total = this.#layers.reduce((n, l) => n + l.total, 0);
    lines.push(this.#line("total", done, total));
    // Move up over the previous drawing and clear each line as it is rewritten.
    const up = this.#drawn > 0 ? `\x1b[${this.#drawn}A` : "";
    write(up + lines.map((l) => `\r\x1b[2K${l}\n`).join(""));
    this.#drawn = lines.length;
  }

  #line(label: string, done: number, total: number, layer?: LayerState): string {
    const width = 24;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const filled = Math.round(frac * width);
    const bar = "=".repeat(Math.max(0, filled - 1)) + (filled > 0 ? (frac < 1 ? ">" : "=") : "") +
      " ".repeat(width - filled);
    const secs = (performance.now() - (layer?.started ?? this.#start)) / 1000;
    const rate = secs > 0.2 && !layer?.cached ? `  ${formatBytes(done / secs)}/s` : "";
    const state = layer?.cached ? "  already present" : layer?.complete ? "  done" : rate;
    return `  ${label.padEnd(12)} [${bar}] ${formatBytes(done).padStart(9)} / ${
      formatBytes(total).padEnd(9)
    }${state}`;
  }
}
