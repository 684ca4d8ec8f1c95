// How Extend matches `fileNameContains`: its reference says "substring match" and no more, so
// whether case counts is not known. The index answers as Extend would, so it asks Extend once:
// it takes a name it holds, swaps the case of its letters, and lists with that. An Extend that
// ignores case returns the run whose name differs from the text in case alone; one that does not
// returns only names holding the text as written. The answer is kept with the index.
import { type CanonicalListQuery, listQuery, MAX_PAGE_SIZE } from "../extend/schemas.ts";
import { exactFileNames, FILE_NAME_SEPARATOR, fileNameList } from "./row.ts";
import type { FileNameMatch } from "./store.ts";
import type { SyncPage } from "./upstream.ts";

const META_KEY = "file_name_match";
/** Longest piece of a name the probe asks with: enough to be specific, short for the URL. */
const FRAGMENT_CHARS = 64;
const ASCII_LETTER = /[A-Za-z]/;

/** A run the index holds and a piece of one of its names with a letter in it, as Extend has it. */
export interface NameSample {
  id: string;
  workflowId: string;
  fragment: string;
}

/** What the index found out, or undefined before it has asked. */
export function storedFileNameMatch(sql: SqlStorage): FileNameMatch | undefined {
  const row = sql.exec<{ value: string }>(`SELECT value FROM run_meta WHERE key = ?`, META_KEY).toArray()[0];
  return row?.value === "exact" || row?.value === "folded" ? row.value : undefined;
}

export function storeFileNameMatch(sql: SqlStorage, match: FileNameMatch): void {
  sql.exec(
    `INSERT INTO run_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
    META_KEY,
    match,
  );
}

/** Whether case can change what `text` matches: it has a letter with an upper and a lower case. */
export function hasCase(text: string): boolean {
  return text.toLowerCase() !== text.toUpperCase();
}

/** A name to ask with: the first the index holds with an ASCII letter, or undefined when none has. */
export function nameSample(sql: SqlStorage): NameSample | undefined {
  // The lowercased part of the column holds every ASCII letter of the names, as a lowercase one.
  const row = sql
    .exec<{ id: string; workflow_id: string; file_names: string }>(
      `SELECT id, workflow_id, file_names FROM runs WHERE file_names GLOB '*[a-z]*' LIMIT 1`,
    )
    .toArray()[0];
  if (!row) return undefined;
  const name = exactFileNames(row.file_names)
    .split(FILE_NAME_SEPARATOR)
    .find((n) => ASCII_LETTER.test(n));
  if (name === undefined) return undefined;
  const chars = Array.from(name);
  const first = chars.findIndex((c) => ASCII_LETTER.test(c));
  return {
    id: row.id,
    workflowId: row.workflow_id,
    fragment: chars.slice(first, first + FRAGMENT_CHARS).join(""),
  };
}

/** `text` with the case of every ASCII letter swapped. */
export function swapAsciiCase(text: string): string {
  return text.replace(/[A-Za-z]/g, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()));
}

/** The list query that asks for runs whose names contain `text`, within the sample's workflow. */
export function probeQuery(sample: NameSample, text: string): CanonicalListQuery {
  return listQuery(
    { ...(sample.workflowId !== "" ? { workflowId: sample.workflowId } : {}), fileNameContains: text },
    { maxPageSize: MAX_PAGE_SIZE },
  );
}

/** The names of a listed run as Extend has them. */
function namesOf(run: Record<string, unknown>): string[] {
  return fileNameList(run.files) ?? [];
}

/** Whether the page lists a run none of whose names holds `text` as written. */
export function listsOtherCase(page: SyncPage, text: string): boolean {
  return page.data.some((run) => !namesOf(run).some((name) => name.includes(text)));
}

/** Whether the page lists a run with a name that holds `text` as written. */
export function listsAsWritten(page: SyncPage, text: string): boolean {
  return page.data.some((run) => namesOf(run).some((name) => name.includes(text)));
}
