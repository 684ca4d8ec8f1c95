import { WORKFLOW_RUN_STATUSES, type WorkflowRunStatus } from "../extend/schemas.ts";

/** The colours of one scheme; every pair a reader must tell apart meets WCAG 2.2 AA. */
export interface Scheme {
  /** Page background. */
  background: string;
  /** Cards, charts and tables sit on this. */
  surface: string;
  text: string;
  /** Secondary text (hints, axis labels): still 4.5:1 on the surface. */
  muted: string;
  border: string;
  /** Example text in empty fields: 4.5:1 on the field, yet lighter than a typed value. */
  placeholder: string;
  /** Form fields' borders: 3:1 against the card they sit on (WCAG 1.4.11), so a field is seen. */
  control: string;
  /** Links and the primary button's background. */
  accent: string;
  /** Text on the accent (the primary button's label). */
  onAccent: string;
  /** Field-level error text and the error outline. */
  error: string;
  /** A bar's empty track behind it. */
  track: string;
  /** Bar fills per status: 3:1 against the surface (non-text contrast, WCAG 1.4.11). */
  status: Record<WorkflowRunStatus, string>;
  /** The credits bars. */
  credits: string;
}

export const LIGHT: Scheme = {
  background: "#f3f5f8",
  surface: "#ffffff",
  text: "#1a1f26",
  muted: "#4a5361",
  border: "#c9d1db",
  placeholder: "#646d7a",
  control: "#7a8594",
  accent: "#0b57d0",
  onAccent: "#ffffff",
  error: "#b3261e",
  track: "#eef1f5",
  status: {
    PENDING: "#5b6b82",
    PROCESSING: "#1f63d6",
    NEEDS_REVIEW: "#a15c00",
    REJECTED: "#b4431a",
    PROCESSED: "#1b7f3b",
    FAILED: "#c0262d",
    CANCELLED: "#6b6f76",
    CANCELLING: "#7b3fc4",
  },
  credits: "#0b6e8a",
};

export const DARK: Scheme = {
  background: "#0e1116",
  surface: "#171b22",
  text: "#e8edf3",
  muted: "#a7b0bd",
  border: "#394150",
  placeholder: "#808996",
  control: "#707a8b",
  accent: "#8ab4ff",
  onAccent: "#0e1116",
  error: "#ff8f86",
  track: "#222833",
  status: {
    PENDING: "#9aabc3",
    PROCESSING: "#6ea2ff",
    NEEDS_REVIEW: "#f0b44c",
    REJECTED: "#f08a5d",
    PROCESSED: "#56c97a",
    FAILED: "#ff6f6f",
    CANCELLED: "#a3a8b1",
    CANCELLING: "#b992f0",
  },
  credits: "#4cc3de",
};

function variables(scheme: Scheme): string {
  const statusVars = Object.entries(scheme.status).map(([status, colour]) => `--s-${status}:${colour};`);
  return [
    `--bg:${scheme.background};`,
    `--surface:${scheme.surface};`,
    `--text:${scheme.text};`,
    `--muted:${scheme.muted};`,
    `--border:${scheme.border};`,
    `--placeholder:${scheme.placeholder};`,
    `--control:${scheme.control};`,
    `--accent:${scheme.accent};`,
    `--on-accent:${scheme.onAccent};`,
    `--error:${scheme.error};`,
    `--track:${scheme.track};`,
    `--credits:${scheme.credits};`,
    ...statusVars,
  ].join("");
}

const RULES = `
*{box-sizing:border-box}
html{background:var(--bg);color:var(--text);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
body{margin:0}
a{color:var(--accent)}
.wrap{max-width:68rem;margin:0 auto;padding:1.5rem 1.25rem 3rem}
header.top{display:flex;flex-wrap:wrap;gap:.75rem 1.5rem;align-items:flex-end;justify-content:space-between;margin-bottom:1rem}
h1{font-size:1.6rem;line-height:1.2;margin:0}
.eyebrow{margin:0 0 .2rem;color:var(--muted);font-size:.8rem;letter-spacing:.06em;text-transform:uppercase}
h2{font-size:1.05rem;margin:0 0 .75rem}
.who{display:flex;gap:.75rem;align-items:center;color:var(--muted);font-size:.9rem}
.who form{margin:0}
.freshness{margin:0 0 1rem;padding:.6rem .9rem;border:1px solid var(--border);border-left:4px solid var(--accent);border-radius:6px;background:var(--surface)}
.freshness.partial{border-left-color:var(--s-NEEDS_REVIEW)}
.card{background:var(--surface);border:1px solid var(--border);border-radius:10px;padding:1rem 1.1rem;margin-bottom:1rem}
.pair{display:grid;grid-template-columns:minmax(0,7fr) minmax(0,5fr);gap:1rem;margin-bottom:1rem}
.pair .card{margin-bottom:0}
.filters{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:.75rem 1rem;align-items:start}
@media (max-width:52rem){.pair,.filters{grid-template-columns:minmax(0,1fr)}}
.field label{display:block;font-size:.85rem;font-weight:600;margin-bottom:.25rem}
.field input,.field select{width:100%;font:inherit;color:var(--text);background:var(--bg);border:1px solid var(--control);border-radius:6px;padding:.4rem .5rem}
.field input::placeholder{color:var(--placeholder);opacity:1}
.field [aria-invalid=true]{border-color:var(--error);outline:2px solid var(--error);outline-offset:-1px}
.field-error{color:var(--error);font-size:.85rem;margin:.25rem 0 0}
.hint{color:var(--muted);font-size:.8rem;margin:.2rem 0 0}
.actions{grid-column:1/-1;display:flex;gap:1rem;align-items:center}
button{font:inherit;font-weight:600;border-radius:6px;padding:.45rem .9rem;cursor:pointer;border:1px solid var(--accent)}
button.primary{background:var(--accent);color:var(--on-accent)}
button.quiet{background:transparent;color:var(--accent)}
.alert{border:1px solid var(--error);border-left:4px solid var(--error);border-radius:6px;padding:.6rem .9rem;margin:0 0 1rem;background:var(--surface)}
.alert p{margin:0}
.alert ul{margin:.4rem 0 0;padding-left:1.2rem}
.total{display:flex;flex-wrap:wrap;align-items:baseline;gap:.25rem 1rem}
.total .n{font-size:2.4rem;font-weight:700;line-height:1.1;font-variant-numeric:tabular-nums}
.total .label{color:var(--muted)}
svg.chart{display:block;width:100%}
svg.chart text{fill:var(--text);font-size:14px}
svg.chart text.count{font-weight:600;font-variant-numeric:tabular-nums}
svg.chart .track{fill:var(--track)}
svg.chart .credits,svg.chart .runs{fill:var(--credits)}
${WORKFLOW_RUN_STATUSES.map((status) => `.s-${status}{fill:var(--s-${status});background:var(--s-${status})}`).join("\n")}
.legend{display:flex;flex-wrap:wrap;gap:.3rem 1rem;list-style:none;margin:.5rem 0 0;padding:0;font-size:.85rem;color:var(--muted)}
.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.35rem;vertical-align:-.1rem}
table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:700;font-size:1.05rem;margin-bottom:.5rem}
th,td{padding:.35rem .5rem;border-bottom:1px solid var(--border);text-align:left}
td.num,th.num{text-align:right}
td.num,th.num{white-space:nowrap}
@media (max-width:30rem){tr[data-workflow] th,tr[data-workflow] td{overflow-wrap:anywhere}}
tfoot th,tfoot td{font-weight:700;border-bottom:0}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.login{max-width:28rem;margin:3rem auto}
.login .field{margin-bottom:1rem}
footer{color:var(--muted);font-size:.85rem;margin-top:1.5rem}
`;

/** The dashboard's one stylesheet, sent inline under the page's CSP nonce. */
export const STYLESHEET = `:root{color-scheme:light dark;${variables(LIGHT)}}
@media (prefers-color-scheme: dark){:root{${variables(DARK)}}}
${RULES.trim()}`;
