// Test support for the /stats suites: an independent reference fold, response types, and calls
// that follow resume tokens.
import { type FakeRun, listAll, STATUSES } from "../../../fake/extend.ts";
import type { WorkflowRunStats } from "../../../src/stats/schemas.ts";
import { json } from "./proxy.ts";
import type { Tenant } from "./tenant.ts";

export type { WorkflowRunStats };

export { STATUSES };

export interface ReferenceFilters {
  status?: string;
  workflowId?: string;
  batchId?: string;
  fileNameContains?: string;
  /** How the fake matches fileNameContains (FakeExtendOptions.fileNameCase); not a /stats parameter. */
  fileNameCase?: "insensitive" | "sensitive";
  since?: string;
  until?: string;
}

export interface Reference {
  total: number;
  byStatus: Record<string, number>;
  usage: { credits: number; totalCredits: number; runsWithoutUsage: number };
}

/** An independent fold over the fake's data: cents as integers, no code shared with src/. */
export function referenceStats(runs: readonly FakeRun[], filters: ReferenceFilters = {}): Reference {
  const since = filters.since === undefined ? undefined : Date.parse(filters.since);
  const until = filters.until === undefined ? undefined : Date.parse(filters.until);
  const byStatus: Record<string, number> = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  let credits = 0;
  let totalCredits = 0;
  let runsWithoutUsage = 0;
  let total = 0;
  const { since: _s, until: _u, ...listFilters } = filters;
  for (const run of listAll(runs, listFilters)) {
    const at = Date.parse(run.createdAt);
    if (since !== undefined && at < since) continue;
    if (until !== undefined && at > until) continue;
    total += 1;
    byStatus[run.status] = (byStatus[run.status] ?? 0) + 1;
    if (run.usage === null) {
      runsWithoutUsage += 1;
      continue;
    }
    credits += Math.round(run.usage.credits * 100);
    totalCredits += Math.round((run.usage.totalCredits ?? run.usage.credits) * 100);
  }
  return {
    total,
    byStatus,
    usage: { credits: credits / 100, totalCredits: totalCredits / 100, runsWithoutUsage },
  };
}

export function statsPath(params: Record<string, string | undefined> = {}): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined) search.set(name, value);
  const text = search.toString();
  return text ? `/stats?${text}` : "/stats";
}

/** GET /stats as the tenant (with `env` over its settings); anything but a 200 throws. */
export async function getStats(
  tenant: Pick<Tenant, "call">,
  params: Record<string, string | undefined>,
  env: Partial<Env> = {},
): Promise<{ response: Response; body: WorkflowRunStats }> {
  const response = await tenant.call(statsPath(params), { env });
  const body = await json<WorkflowRunStats>(response);
  if (response.status !== 200)
    throw new Error(`GET /stats answered ${response.status}: ${JSON.stringify(body)}`);
  return { response, body };
}

/** Follows resume tokens until the scan completes; returns every answer in order. */
export async function scanToEnd(
  tenant: Pick<Tenant, "call">,
  params: Record<string, string | undefined>,
  env: Partial<Env> = {},
  maxRequests = 200,
): Promise<WorkflowRunStats[]> {
  const answers: WorkflowRunStats[] = [];
  let token: string | undefined;
  for (let i = 0; i < maxRequests; i++) {
    const { body } = await getStats(tenant, { ...params, resumeToken: token }, env);
    answers.push(body);
    if (body.complete) return answers;
    if (body.resumeToken === null) throw new Error("incomplete answer without a resume token");
    token = body.resumeToken;
  }
  throw new Error(`scan did not complete within ${maxRequests} requests`);
}

/** The counted part of an answer; `byStatus` and `usage` are absent when REDACT_FIELDS hides them. */
export function summary(body: WorkflowRunStats): Pick<Reference, "total"> & Partial<Reference> {
  return { total: body.total, byStatus: body.byStatus, usage: body.usage };
}
