// Inline SVG bar charts, rendered on the server: no script, no external image, readable by a
// screen reader (`role="img"` with the whole series in `aria-label`) and by pointer (a `<title>`
// per bar). Colours come from the stylesheet's classes, so light and dark schemes both apply.
import { WORKFLOW_RUN_STATUSES, type WorkflowRunStatus } from "../extend/schemas.ts";
import type { WorkflowSummary } from "./data.ts";

// Sized for the chart's card at the page's full width, so text renders near its nominal size.
const WIDTH = 560;
const LABEL_WIDTH = 128;
const ROW_HEIGHT = 36;
const BAR_HEIGHT = 22;
/** Room right of the longest bar for its printed value: bold 14px digits are at most ~9px wide. */
const countWidth = (displays: string[]) =>
  Math.max(56, 16 + 9 * Math.max(0, ...displays.map((d) => d.length)));
/**
 * Every non-zero bar is at least this wide, so a status with 3 runs stays visible next to one
 * with 98,000; its exact count is printed beside it either way.
 */
export const MIN_BAR_WIDTH = 4;

/**
 * A count or a credit sum as `/stats` writes it ("98211", "26573.5"): no grouping, every decimal
 * Extend gave, so the page's text is the API's number for a reader, a screen reader and a script.
 */
export const formatNumber = (n: number): string => String(n);

const tenth = (n: number) => Math.round(n * 10) / 10;

// The workflows chart spans the page's full width, with room for a workflow id (about 30
// characters of 14px text) left of its bar.
const WIDE_WIDTH = 960;
const WIDE_LABEL_WIDTH = 272;
const WIDE_LABEL_CHARS = 32;

/** The drawn width of `value` on a linear scale up to `max`, never thinner than MIN_BAR_WIDTH. */
export function barWidth(value: number, max: number, span: number): number {
  if (value <= 0 || max <= 0) return 0;
  return Math.max(MIN_BAR_WIDTH, tenth((value / max) * span));
}

export interface Bar {
  key: string;
  label: string;
  value: number;
  /** The value as printed beside the bar. */
  display: string;
  /** Stylesheet class that colours the bar. */
  className: string;
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The `<svg>` both chart kinds share: one row per bar, its whole content read out as `label`. */
function ChartFrame(props: { id: string; label: string; width: number; rows: number; children: unknown }) {
  const height = props.rows * ROW_HEIGHT + 6;
  return (
    <svg
      class="chart"
      id={props.id}
      role="img"
      aria-label={props.label}
      viewBox={`0 0 ${props.width} ${height}`}
      width={props.width}
      height={height}
      xmlns="http://www.w3.org/2000/svg"
    >
      {props.children}
    </svg>
  );
}

/** Where row `row`'s bar starts vertically, and the middle its labels are centred on. */
function rowGeometry(row: number): { y: number; middle: number } {
  const y = 3 + row * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2;
  return { y, middle: y + BAR_HEIGHT / 2 };
}

/** A horizontal bar chart: one labelled row per bar, the exact value printed at its end. */
export function BarChart(props: { id: string; label: string; bars: Bar[]; unit: string }) {
  const max = Math.max(0, ...props.bars.map((bar) => bar.value));
  const plot = WIDTH - LABEL_WIDTH - countWidth(props.bars.map((bar) => bar.display));
  const summary = props.bars.map((bar) => `${bar.label} ${bar.display}`).join(", ");
  return (
    <ChartFrame id={props.id} label={`${props.label}: ${summary}`} width={WIDTH} rows={props.bars.length}>
      {props.bars.map((bar, row) => {
        const { y, middle } = rowGeometry(row);
        const width = barWidth(bar.value, max, plot);
        return (
          <g class="bar" data-key={bar.key}>
            <title>{`${bar.label}: ${bar.display} ${props.unit}`}</title>
            <text x={LABEL_WIDTH - 10} y={middle} text-anchor="end" dominant-baseline="central">
              {truncate(bar.label, 20)}
            </text>
            <rect class="track" x={LABEL_WIDTH} y={y} width={plot} height={BAR_HEIGHT} rx="3" />
            {width > 0 ? (
              <rect class={bar.className} x={LABEL_WIDTH} y={y} width={width} height={BAR_HEIGHT} rx="3" />
            ) : null}
            <text class="count" x={LABEL_WIDTH + width + 8} y={middle} dominant-baseline="central">
              {bar.display}
            </text>
          </g>
        );
      })}
    </ChartFrame>
  );
}

/** Runs per status: all eight statuses, zeros included, in Extend's order. */
export function StatusChart(props: { byStatus: Record<WorkflowRunStatus, number> }) {
  const bars = WORKFLOW_RUN_STATUSES.map((status) => ({
    key: status,
    label: status,
    value: props.byStatus[status],
    display: formatNumber(props.byStatus[status]),
    className: `s-${status}`,
  }));
  return <BarChart id="chart-status" label="Runs per status" bars={bars} unit="runs" />;
}

export function CreditsChart(props: { credits: number; totalCredits: number }) {
  const bars = [
    {
      key: "credits",
      label: "Credits",
      value: props.credits,
      display: formatNumber(props.credits),
      className: "credits",
    },
    {
      key: "totalCredits",
      label: "Total credits",
      value: props.totalCredits,
      display: formatNumber(props.totalCredits),
      className: "credits",
    },
  ];
  return <BarChart id="chart-credits" label="Credits used" bars={bars} unit="credits" />;
}

/** "PROCESSED 950, FAILED 50": the statuses a workflow has runs in, in Extend's order. */
export function statusMix(byStatus: Record<WorkflowRunStatus, number>): string {
  return WORKFLOW_RUN_STATUSES.filter((s) => byStatus[s] > 0)
    .map((s) => `${s} ${formatNumber(byStatus[s])}`)
    .join(", ");
}

/**
 * The top workflows by runs, each bar split by status. Bars share one scale, so their lengths
 * compare workflows; each segment's `<title>` gives its exact count. Without a status mix
 * (REDACT_FIELDS hides `status`) each bar is one plain segment.
 */
export function WorkflowsChart(props: { workflows: WorkflowSummary[] }) {
  const max = Math.max(0, ...props.workflows.map((w) => w.total));
  const plot = WIDE_WIDTH - WIDE_LABEL_WIDTH - countWidth(props.workflows.map((w) => formatNumber(w.total)));
  const name = (w: WorkflowSummary) => w.name ?? w.id;
  const summary = props.workflows
    .map((w) => `${name(w)} ${formatNumber(w.total)}${w.byStatus ? ` (${statusMix(w.byStatus)})` : ""}`)
    .join("; ");
  return (
    <ChartFrame
      id="chart-workflows"
      label={`Top workflows by runs: ${summary}`}
      width={WIDE_WIDTH}
      rows={props.workflows.length}
    >
      {props.workflows.map((workflow, row) => {
        const { y, middle } = rowGeometry(row);
        const total = barWidth(workflow.total, max, plot);
        const byStatus = workflow.byStatus;
        let x = WIDE_LABEL_WIDTH;
        const segments = byStatus
          ? WORKFLOW_RUN_STATUSES.filter((s) => byStatus[s] > 0).map((status) => {
              const width = workflow.total > 0 ? (byStatus[status] / workflow.total) * total : 0;
              const segment = (
                <rect class={`s-${status}`} x={tenth(x)} y={y} width={tenth(width)} height={BAR_HEIGHT}>
                  <title>{`${name(workflow)}: ${status} ${formatNumber(byStatus[status])} runs`}</title>
                </rect>
              );
              x += width;
              return segment;
            })
          : [<rect class="runs" x={WIDE_LABEL_WIDTH} y={y} width={total} height={BAR_HEIGHT} rx="3" />];
        return (
          <g class="bar" data-key={workflow.id}>
            <title>{`${name(workflow)}: ${formatNumber(workflow.total)} runs`}</title>
            <text x={WIDE_LABEL_WIDTH - 10} y={middle} text-anchor="end" dominant-baseline="central">
              {truncate(name(workflow), WIDE_LABEL_CHARS)}
            </text>
            <rect class="track" x={WIDE_LABEL_WIDTH} y={y} width={plot} height={BAR_HEIGHT} rx="3" />
            {segments}
            <text class="count" x={WIDE_LABEL_WIDTH + total + 8} y={middle} dominant-baseline="central">
              {formatNumber(workflow.total)}
            </text>
          </g>
        );
      })}
    </ChartFrame>
  );
}
