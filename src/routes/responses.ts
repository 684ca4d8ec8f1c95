import { ERRORS, ErrorBody, type ErrorCode } from "../app/errors.ts";

/** OpenAPI error responses, grouped by status, generated from the error table. */
export function errorResponses(codes: readonly ErrorCode[] = Object.keys(ERRORS) as ErrorCode[]) {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) {
    const status = ERRORS[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      status,
      {
        description: list.map((code) => `\`${code}\`: ${ERRORS[code].description}`).join(" "),
        content: { "application/json": { schema: ErrorBody } },
      },
    ]),
  );
}
