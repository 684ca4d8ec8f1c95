import { ApiError } from "../app/errors.ts";

/**
 * Removes the REDACT_FIELDS from every run of a list body on its way out. Without fields the
 * text passes through untouched (no parse, no re-serialisation). A body that cannot be parsed is
 * refused rather than served unredacted.
 */
export function redactRuns(body: string, fields: readonly string[]): string {
  if (fields.length === 0) return body;
  let list: unknown;
  try {
    list = JSON.parse(body);
  } catch {
    throw new ApiError(
      "UPSTREAM_INVALID_RESPONSE",
      "Extend answered with a body that is not a list of runs.",
    );
  }
  const data = typeof list === "object" && list !== null ? (list as { data?: unknown }).data : undefined;
  if (!Array.isArray(data)) {
    throw new ApiError(
      "UPSTREAM_INVALID_RESPONSE",
      "Extend answered with a body that is not a list of runs.",
    );
  }
  for (const run of data) {
    if (typeof run !== "object" || run === null) continue;
    for (const field of fields) delete (run as Record<string, unknown>)[field];
  }
  return JSON.stringify(list);
}
