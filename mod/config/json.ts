/**
 * Parses a JSON config file with errors that point at a line and column.
 * JSON.parse gives no position for its most common complaint (an unexpected
 * token, such as a trailing comma), so a small syntax scanner finds the first
 * error itself before JSON.parse builds the value.
 */

export interface JsonSyntaxError {
  line: number;
  column: number;
  /** What was expected and what was found, e.g. `expected a value, found "]"`. */
  problem: string;
}

/** Deeper nesting than any config needs; bounds the scanner's recursion. */
const MAX_DEPTH = 256;

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

class Failure {
  constructor(readonly offset: number, readonly problem: string) {}
}

/** The first syntax error in `text`, or undefined when it is valid JSON. */
export function jsonSyntaxError(text: string): JsonSyntaxError | undefined {
  try {
    const end = new Scanner(text).document();
    if (end !== text.length) {
      throw new Failure(end, `expected the end of the file, found ${at(text, end)}`);
    }
    return undefined;
  } catch (err) {
    if (!(err instanceof Failure)) throw err;
    const before = text.slice(0, err.offset);
    const line = before.split("\n").length;
    const column = err.offset - (before.lastIndexOf("\n") + 1) + 1;
    return { line, column, problem: err.problem };
  }
}

/** How the character at `i` is shown in a message. */
function at(text: string, i: number): string {
  const c = text[i];
  if (c === undefined) return "the end of the file";
  const code = c.charCodeAt(0);
  if (code < 0x20 || code === 0x7f || code === 0xfeff) {
    return `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  }
  return JSON.stringify(c);
}

class Scanner {
  private i = 0;
  constructor(private readonly text: string) {}

  /** Scans one value with its surrounding whitespace; returns where it ended. */
  document(): number {
    this.space();
    this.value(0);
    this.space();
    return this.i;
  }

  private fail(expected: string): never {
    throw new Failure(this.i, `expected ${expected}, found ${at(this.text, this.i)}`);
  }

  private space(): void {
    while (/[ \t\n\r]/.test(this.text[this.i] ?? "")) this.i++;
  }

  private value(depth: number): void {
    if (depth > MAX_DEPTH) throw new Failure(this.i, `nested more than ${MAX_DEPTH} levels deep`);
    const c = this.text[this.i];
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return this.string();
    if (c === "-" || /[0-9]/.test(c ?? "")) return this.number();
    for (const word of ["true", "false", "null"]) {
      if (this.text.startsWith(word, this.i)) {
        this.i += word.length;
        return;
      }
    }
    this.fail("a value");
  }

  private object(depth: number): void {
    this.i++;
    this.space();
    if (this.text[this.i] === "}") {
      this.i++;
      return;
    }
    for (;;) {
      if (this.text[this.i] !== '"') this.fail("a property name in double quotes");
      this.string();
      this.space();
      if (this.text[this.i] !== ":") this.fail('":" after the property name');
      this.i++;
      this.space();
      this.value(depth + 1);
      this.space();
      if (this.text[this.i] === "}") {
        this.i++;
        return;
      }
      if (this.text[this.i] !== ",") this.fail('"," or "}"');
      this.i++;
      this.space();
    }
  }

  private array(depth: number): void {
    this.i++;
    this.space();
    if (this.text[this.i] === "]") {
      this.i++;
      return;
    }
    for (;;) {
      this.value(depth + 1);
      this.space();
      if (this.text[this.i] === "]") {
        this.i++;
        return;
      }
      if (this.text[this.i] !== ",") this.fail('"," or "]"');
      this.i++;
      this.space();
    }
  }

  private string(): void {
    this.i++;
    for (;;) {
      const c = this.text[this.i];
      if (c === undefined || c.charCodeAt(0) < 0x20) this.fail('a closing "');
      if (c === '"') {
        this.i++;
        return;
      }
      if (c === "\\") {
        this.i++;
        const e = this.text[this.i] ?? "";
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(this.text.slice(this.i + 1, this.i + 5))) {
            this.i++;
            this.fail("four hex digits after \\u");
          }
          this.i += 4;
        } else if (!'"\\/bfnrt'.includes(e) || e === "") {
          this.fail("an escape sequence");
        }
      }
      this.i++;
    }
  }

  private number(): void {
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.text);
    if (m === null) {
      this.i++;
      this.fail("a digit");
    }
    this.i += m[0].length;
    // "01" and "1." would scan as a number followed by junk; name the real fault.
    if (/[0-9.eE]/.test(this.text[this.i] ?? "")) this.fail("the end of the number");
  }
}
