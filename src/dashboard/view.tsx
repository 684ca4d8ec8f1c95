// The dashboard's pages as server-rendered JSX: the status page, the sign-in page and the error
// page. None carries a script; the one stylesheet is inline under the response's CSP nonce.
import { raw } from "hono/html";
import type { Child } from "hono/jsx";
import type { JSX } from "hono/jsx/jsx-runtime";
import type { FieldIssue } from "../app/errors.ts";
import { WORKFLOW_RUN_STATUSES } from "../extend/schemas.ts";
import { CreditsChart, formatNumber, StatusChart, statusMix, WorkflowsChart } from "./charts.tsx";
import type { DashboardStats, Freshness, WorkflowsMissing } from "./data.ts";
import { STYLESHEET } from "./theme.ts";

/** The form's fields, in the order shown; each is a /stats query parameter of the same name. */
export const FILTER_FIELDS = [
  "workflowId",
  "batchId",
  "status",
  "fileNameContains",
  "since",
  "until",
] as const;
export type FilterField = (typeof FILTER_FIELDS)[number];

export interface FilterForm {
  /** What the form shows: the values as submitted, valid or not. */
  values: Partial<Record<FilterField, string>>;
  /** Field-level messages, worded as the API words them. */
  errors: FieldIssue[];
}

export interface Viewer {
  callerId: string;
  method: "token" | "jwt" | "anonymous";
  /** Signed in through the dashboard's token form (so it can sign out). */
  session: boolean;
}

const LABELS: Record<FilterField, string> = {
  workflowId: "Workflow",
  batchId: "Batch",
  status: "Status",
  fileNameContains: "File name contains",
  since: "Created since",
  until: "Created until",
};
const INSTANT_HINT = "ISO 8601, with a time zone";

function Document(props: { nonce: string; title: string; children: Child }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light dark" />
        <title>{props.title}</title>
        {/* A constant of ours, so unescaped: HTML-escaping would break its quoted font names. */}
        <style nonce={props.nonce}>{raw(STYLESHEET)}</style>
      </head>
      <body>
        <div class="wrap">{props.children}</div>
      </body>
    </html>
  );
}

/** Prepends the doctype hono's JSX leaves out (standards mode, not quirks). */
export async function renderDocument(element: JSX.Element): Promise<string> {
  return `<!DOCTYPE html>${await (await element).toString()}`;
}

function Header(props: { viewer?: Viewer }) {
  const viewer = props.viewer;
  return (
    <header class="top">
      <div>
        <p class="eyebrow">extend-runs-proxy</p>
        <h1>Workflow runs</h1>
      </div>
      {viewer ? (
        <div class="who">
          <span>
            {viewer.method === "anonymous"
              ? "Anonymous access"
              : viewer.method === "jwt"
                ? `Signed in as ${viewer.callerId}`
                : `Signed in with client token ${viewer.callerId}`}
          </span>
          {viewer.session ? (
            <form method="post" action="/dashboard/logout">
              <button type="submit" class="quiet">
                Sign out
              </button>
            </form>
          ) : null}
        </div>
      ) : null}
    </header>
  );
}

function relative(seconds: number): string {
  if (seconds < 90) return `${Math.max(0, Math.round(seconds))} s ago`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function utc(iso: string): string {
  return `${iso.slice(0, 19).replace("T", " ")} UTC`;
}

/** The freshness line: where the numbers come from, as of when, and how they were served. */
export function freshnessText(freshness: Freshness, now: number): string {
  const age = (now - Date.parse(freshness.asOf)) / 1000;
  const when = `${utc(freshness.asOf)} (${relative(age)})`;
  const served =
    freshness.cache === "HIT" || freshness.cache === "STALE"
      ? `, served from the proxy's cache${freshness.cache === "STALE" ? " while it refreshes" : ""}`
      : "";
  if (freshness.source === "index") {
    const lag =
      freshness.lagSeconds !== undefined ? `, ${formatNumber(freshness.lagSeconds)} s behind Extend` : "";
    return `From the run index, as of ${when}${lag}${served}.`;
  }
  const building = freshness.indexBuilding
    ? ` The run index is still being built${
        freshness.indexBuilding.runsIndexed !== undefined
          ? ` (${formatNumber(freshness.indexBuilding.runsIndexed)} runs indexed so far)`
          : ""
      }, so these numbers come from a live scan.`
    : "";
  return `Live scan of Extend, counted ${when}${served}.${building}`;
}

function Field(props: { name: FilterField; form: FilterForm; children?: Child; hint?: string }) {
  const error = props.form.errors.find((issue) => issue.field === props.name);
  return (
    <div class="field">
      <label for={`f-${props.name}`}>{LABELS[props.name]}</label>
      {props.children}
      {props.hint && !error ? (
        <p class="hint" id={`h-${props.name}`}>
          {props.hint}
        </p>
      ) : null}
      {error ? (
        <p class="field-error" id={`e-${props.name}`}>
          {`${error.field} ${error.message}`}
        </p>
      ) : null}
    </div>
  );
}

function inputProps(name: FilterField, form: FilterForm, hint?: string) {
  const invalid = form.errors.some((issue) => issue.field === name);
  const describedBy = invalid ? `e-${name}` : hint ? `h-${name}` : undefined;
  return {
    id: `f-${name}`,
    name,
    ...(invalid ? { "aria-invalid": "true" } : {}),
    ...(describedBy ? { "aria-describedby": describedBy } : {}),
  };
}

function FiltersForm(props: { form: FilterForm; workflowChoices?: { id: string; name?: string }[] }) {
  const { form } = props;
  const value = (name: FilterField) => form.values[name] ?? "";
  const text = (name: FilterField, placeholder: string, hint?: string) => (
    <Field name={name} form={form} {...(hint ? { hint } : {})}>
      <input
        type="text"
        {...inputProps(name, form, hint)}
        value={value(name)}
        placeholder={placeholder}
        autocomplete="off"
        spellcheck={false}
      />
    </Field>
  );
  return (
    <form method="get" action="/dashboard" class="card filters" aria-label="Filters">
      {props.workflowChoices ? (
        <Field name="workflowId" form={form}>
          <select {...inputProps("workflowId", form)}>
            <option value="">All workflows</option>
            {props.workflowChoices.map((choice) => (
              <option value={choice.id} selected={choice.id === value("workflowId")}>
                {choice.name ? `${choice.name} (${choice.id})` : choice.id}
              </option>
            ))}
          </select>
        </Field>
      ) : (
        text("workflowId", "workflow_…")
      )}
      {text("batchId", "batch_…")}
      <Field name="status" form={form}>
        <select {...inputProps("status", form)}>
          <option value="">Any status</option>
          {WORKFLOW_RUN_STATUSES.map((status) => (
            <option value={status} selected={status === value("status")}>
              {status}
            </option>
          ))}
          {/* A refused value stays what the form shows, next to its message, as a text field's does. */}
          {value("status") !== "" &&
          !(WORKFLOW_RUN_STATUSES as readonly string[]).includes(value("status")) ? (
            <option value={value("status")} selected>
              {value("status")}
            </option>
          ) : null}
        </select>
      </Field>
      {text("fileNameContains", "invoice")}
      {text("since", "2026-11-01T00:00:00Z", INSTANT_HINT)}
      {text("until", "2026-11-30T23:59:59Z", INSTANT_HINT)}
      <div class="actions">
        <button type="submit" class="primary">
          Apply filters
        </button>
        <a href="/dashboard">Clear</a>
      </div>
    </form>
  );
}

function Alert(props: { message: string; details?: FieldIssue[] }) {
  return (
    <div class="alert" role="alert">
      <p>{props.message}</p>
      {props.details && props.details.length > 0 ? (
        <ul>
          {props.details.map((issue) => (
            <li>{`${issue.field} ${issue.message}`}</li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

function share(part: number, total: number): string {
  return total > 0 ? `${((part / total) * 100).toFixed(1)}%` : "–";
}

/** A status name that may wrap after its underscore on a narrow screen, and nowhere else. */
function breakable(status: string): Child {
  const [head, ...rest] = status.split("_");
  return rest.length === 0 ? status : [head, ...rest.flatMap((part) => ["_", <wbr />, part])];
}

type StatusCounts = NonNullable<DashboardStats["stats"]["byStatus"]>;
type Usage = NonNullable<DashboardStats["stats"]["usage"]>;

function StatusTable(props: { byStatus: StatusCounts; total: number }) {
  const { byStatus, total } = props;
  return (
    <table id="table-status">
      <caption>Runs and share per status</caption>
      <thead>
        <tr>
          <th scope="col">Status</th>
          <th scope="col" class="num">
            Runs
          </th>
          <th scope="col" class="num">
            Share
          </th>
        </tr>
      </thead>
      <tbody>
        {WORKFLOW_RUN_STATUSES.map((status) => (
          <tr data-status={status}>
            <th scope="row">
              <span class={`swatch s-${status}`} aria-hidden="true" />
              {breakable(status)}
            </th>
            <td class="num">{formatNumber(byStatus[status])}</td>
            <td class="num">{share(byStatus[status], total)}</td>
          </tr>
        ))}
      </tbody>
      <tfoot>
        <tr data-status="total">
          <th scope="row">Total</th>
          <td class="num">{formatNumber(total)}</td>
          <td class="num">{total > 0 ? "100%" : "–"}</td>
        </tr>
      </tfoot>
    </table>
  );
}

function CreditsTable(props: { usage: Usage }) {
  const { usage } = props;
  return (
    <table id="table-credits">
      <caption>Credit totals</caption>
      <tbody>
        <tr data-key="credits">
          <th scope="row">Credits</th>
          <td class="num">{formatNumber(usage.credits)}</td>
        </tr>
        <tr data-key="totalCredits">
          <th scope="row">Total credits</th>
          <td class="num">{formatNumber(usage.totalCredits)}</td>
        </tr>
        <tr data-key="runsWithoutUsage">
          <th scope="row">Runs without usage</th>
          <td class="num">{formatNumber(usage.runsWithoutUsage)}</td>
        </tr>
      </tbody>
    </table>
  );
}

/** Why the page has no per-workflow view, in a sentence. */
export function workflowsMissingText(missing: WorkflowsMissing): string {
  switch (missing.reason) {
    case "off":
      return "The per-workflow view comes from the run index, which is off on this proxy (RUN_INDEX=off).";
    case "building": {
      const progress = [
        missing.runsIndexed !== undefined ? `${formatNumber(missing.runsIndexed)} runs indexed so far` : "",
        missing.walks !== undefined && missing.walks > 0 && missing.walksDone !== undefined
          ? `${formatNumber(missing.walksDone)} of ${formatNumber(missing.walks)} walks done`
          : "",
      ].filter((part) => part !== "");
      return `The per-workflow view comes from the run index, which is still being built${
        progress.length > 0 ? ` (${progress.join(", ")})` : ""
      }: it appears here once the index is ready.`;
    }
    case "redacted":
      return "Hidden: this proxy redacts workflow.id (REDACT_FIELDS), so no workflow is listed.";
    case "unavailable":
      return "The per-workflow view comes from the run index, which did not answer this request.";
  }
}

function WorkflowsSection(props: { data: DashboardStats }) {
  const workflows = props.data.topWorkflows;
  const missing = props.data.workflowsMissing;
  if (!workflows) {
    if (!missing) return null;
    return (
      <section class="card" id="workflows-missing" aria-labelledby="workflows-heading">
        <h2 id="workflows-heading">Top workflows by runs</h2>
        <p class="hint">{workflowsMissingText(missing)}</p>
      </section>
    );
  }
  const withMix = workflows.some((workflow) => workflow.byStatus !== undefined);
  return (
    <section class="card" aria-labelledby="workflows-heading">
      <h2 id="workflows-heading">Top workflows by runs</h2>
      {workflows.length === 0 ? (
        <p class="hint" id="workflows-none">
          No workflow has runs that match these filters.
        </p>
      ) : (
        <>
          <WorkflowsChart workflows={workflows} />
          {withMix ? (
            <ul class="legend" aria-hidden="true">
              {WORKFLOW_RUN_STATUSES.map((status) => (
                <li>
                  <span class={`swatch s-${status}`} />
                  {status}
                </li>
              ))}
            </ul>
          ) : (
            <p class="hint">
              Runs only: this proxy redacts <code>status</code> (REDACT_FIELDS), so no status mix is shown.
            </p>
          )}
          <table id="table-workflows">
            <caption class="visually-hidden">Top workflows by runs</caption>
            <thead>
              <tr>
                <th scope="col">Workflow</th>
                <th scope="col" class="num">
                  Runs
                </th>
                {withMix ? <th scope="col">Status mix</th> : null}
              </tr>
            </thead>
            <tbody>
              {workflows.map((workflow) => (
                <tr data-workflow={workflow.id}>
                  <th scope="row">{workflow.name ?? workflow.id}</th>
                  <td class="num">{formatNumber(workflow.total)}</td>
                  {workflow.byStatus ? <td>{statusMix(workflow.byStatus)}</td> : null}
                </tr>
              ))}
            </tbody>
          </table>
          <p class="hint">
            From the run index: the {formatNumber(workflows.length)} workflows with the most runs under these
            filters.
          </p>
        </>
      )}
    </section>
  );
}

/** In place of numbers REDACT_FIELDS hides from /stats, and so from this page. */
function Hidden(props: { id: string; what: string; field: string }) {
  return (
    <section class="card" id={props.id}>
      <h2>{props.what}</h2>
      <p class="hint">
        Hidden: this proxy redacts <code>{props.field}</code> (REDACT_FIELDS), so neither <code>/stats</code>{" "}
        nor this page shows them.
      </p>
    </section>
  );
}

export interface DashboardPageProps {
  nonce: string;
  viewer: Viewer;
  form: FilterForm;
  data?: DashboardStats;
  /** A problem with the query as a whole (the API's message), shown above the form. */
  alert?: { message: string; details?: FieldIssue[] };
  /** Where "continue counting" leads when the scan stopped at its page budget. */
  continueHref?: string;
  now: number;
}

export function DashboardPage(props: DashboardPageProps) {
  const { data } = props;
  const stats = data?.stats;
  return (
    <Document nonce={props.nonce} title="Workflow runs · extend-runs-proxy">
      <Header viewer={props.viewer} />
      {data ? (
        <p class={`freshness${stats?.complete ? "" : " partial"}`} id="freshness">
          {freshnessText(data.freshness, props.now)}
          {stats && !stats.complete ? (
            <>
              {` Partial: the scan stopped after ${formatNumber(stats.pagesFetched)} pages (STATS_MAX_PAGES). `}
              {props.continueHref ? <a href={props.continueHref}>Continue counting</a> : null}
            </>
          ) : null}
        </p>
      ) : null}
      {props.alert ? <Alert {...props.alert} /> : null}
      <FiltersForm
        form={props.form}
        {...(data?.workflowChoices ? { workflowChoices: data.workflowChoices } : {})}
      />
      {data && stats ? (
        <main>
          <div class="total card">
            <span class="n" id="total">
              {formatNumber(stats.total)}
            </span>
            <span class="label">{stats.complete ? "runs match these filters" : "runs counted so far"}</span>
          </div>
          {stats.byStatus ? (
            <div class="pair">
              <section class="card" aria-labelledby="status-heading">
                <h2 id="status-heading">Runs per status</h2>
                <StatusChart byStatus={stats.byStatus} />
                <p class="hint">
                  One linear scale. Every status above zero keeps a visible bar, however small its share, and
                  each bar prints its exact count.
                </p>
              </section>
              <section class="card">
                <StatusTable byStatus={stats.byStatus} total={stats.total} />
              </section>
            </div>
          ) : (
            <Hidden id="hidden-status" what="Runs per status" field="status" />
          )}
          {stats.usage ? (
            <div class="pair">
              <section class="card" aria-labelledby="credits-heading">
                <h2 id="credits-heading">Credits</h2>
                <CreditsChart credits={stats.usage.credits} totalCredits={stats.usage.totalCredits} />
              </section>
              <section class="card">
                <CreditsTable usage={stats.usage} />
              </section>
            </div>
          ) : (
            <Hidden id="hidden-credits" what="Credits" field="usage" />
          )}
          <WorkflowsSection data={data} />
        </main>
      ) : null}
      <footer>
        Counts come from the same code as <code>GET /stats</code> with these filters.{" "}
        <a href="/docs">API reference</a>
      </footer>
    </Document>
  );
}

export interface SignInPageProps {
  nonce: string;
  /** Why the visitor is here (the API's 401 message, or what went wrong with the form). */
  message: string;
  /** Whether static tokens can sign in here (CLIENT_TOKENS is set). */
  tokenForm: boolean;
  /** Whether JWTs are accepted (an identity provider or Cloudflare Access in front). */
  jwt: boolean;
  /** The dashboard query to return to after signing in. */
  returnTo: string;
  tokenError?: string;
}

export function SignInPage(props: SignInPageProps) {
  return (
    <Document nonce={props.nonce} title="Sign in · extend-runs-proxy">
      <div class="login">
        <Header />
        <div class="card">
          <h2>Sign in to the dashboard</h2>
          <p>{props.message}</p>
          {props.tokenForm ? (
            <form method="post" action="/dashboard/login">
              <input type="hidden" name="returnTo" value={props.returnTo} />
              <div class="field">
                <label for="token">Client token</label>
                <input
                  id="token"
                  name="token"
                  type="password"
                  required
                  autocomplete="off"
                  spellcheck={false}
                  {...(props.tokenError ? { "aria-invalid": "true", "aria-describedby": "e-token" } : {})}
                />
                {props.tokenError ? (
                  <p class="field-error" id="e-token">
                    {props.tokenError}
                  </p>
                ) : (
                  <p class="hint">
                    One of the proxy's CLIENT_TOKENS. It is sent once, in this form's body; the browser keeps
                    only a signed session cookie that lasts an hour.
                  </p>
                )}
              </div>
              <button type="submit" class="primary">
                Sign in
              </button>
            </form>
          ) : null}
          {props.jwt ? (
            <p class="hint">
              Behind Cloudflare Access or an identity provider, open this page through it: the JWT it adds is
              enough.
            </p>
          ) : null}
        </div>
      </div>
    </Document>
  );
}

export function ErrorPage(props: {
  nonce: string;
  status: number;
  title: string;
  message: string;
  details?: FieldIssue[];
  requestId?: string;
}) {
  return (
    <Document nonce={props.nonce} title={`${props.title} · extend-runs-proxy`}>
      <Header />
      <Alert message={props.message} {...(props.details ? { details: props.details } : {})} />
      <p>
        <a href="/dashboard">Back to the dashboard</a>
      </p>
      {props.requestId ? (
        <footer>
          HTTP {props.status}, request <code>{props.requestId}</code>
        </footer>
      ) : null}
    </Document>
  );
}
