const METHODS = ["log", "info", "warn", "error", "debug"] as const;

function render(arg: unknown): string {
  if (typeof arg === "string") return arg;
  if (arg instanceof Error) return `${arg.name}: ${arg.message}\n${arg.stack ?? ""}`;
  return JSON.stringify(arg) ?? String(arg);
}

/**
 * Captures, instead of printing, every console line written while `run` executes: exactly what
 * the code passed to console (before any scrubbing the proxy does on its way out).
 */
export async function captureConsole<T>(run: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  const originals = METHODS.map((method) => console[method]);
  for (const method of METHODS) {
    console[method] = (...args: unknown[]) => {
      lines.push(args.map(render).join(" "));
    };
  }
  try {
    return { result: await run(), lines };
  } finally {
    METHODS.forEach((method, i) => {
      const original = originals[i];
      if (original) console[method] = original;
    });
  }
}

/** The request log lines among captured lines, parsed. */
export function requestLines(lines: readonly string[]): Record<string, unknown>[] {
  return lines
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((record) => record.msg === "request");
}
