// The test oracle for Extend's list query, written from Extend's documentation and the SDK,
// independently of src/extend/schemas.ts: a test that reused the code under test could not catch it.

/** Every list parameter, in the order the official SDK sends them. */
export const LIST_PARAMS = [
  "status",
  "workflowId",
  "batchId",
  "fileNameContains",
  "sortBy",
  "sortDir",
  "nextPageToken",
  "maxPageSize",
] as const;
export type ListParam = (typeof LIST_PARAMS)[number];
export type ListQuery = Partial<Record<ListParam, string>>;
/** Extend's documented defaults (API version 2026-02-09). */
export const LIST_DEFAULTS = { sortBy: "updatedAt", sortDir: "desc", maxPageSize: "10" } as const;
