// Inline SVG bar charts, rendered on the server: no script, no external image, readable by a
// screen reader (`role="img"` with the whole series in `aria-label`) and by pointer (a `<title>`
// per bar). Colours come from the stylesheet's classes, so light and dark schemes both apply.
import { WORKFLOW_RUN_STATUSES, type WorkflowRunStatus } from "../extend/schemas.ts";
import type { WorkflowSummary } from "./data.ts";

// Each row is a label line (the name left, the exact value right) over a full-width bar. The
// SVG has no viewBox: its units are CSS pixels, so text keeps its size on a 320 px phone and on a
// wide screen alike, and bar lengths are percentages of the chart's width.
const ROW_HEIGHT = 46;
const LABEL_Y = 10;
const BAR_Y = 22;
const BAR_HEIGHT = 16;
/** Characters of a status or credits label, and of a workflow's name, that fit beside its value at 320 px. */
const LABEL_CHARS = 20;
const WORKFLOW_LABEL_CHARS = 24;
/**
 * Every non-zero bar is at least this share of the chart's width (in percent), so a status with 3
 * runs stays visible next to one with 98,000; its exact count is printed above it either way.
 */
export const MIN_BAR_PERCENT = 1.5;

/**
 * A count or a credit sum as `/stats` writes it ("98211", "26573.5"): no grouping, every decimal
 * Extend gave, so the page's text is the API's number for a reader, a screen reader and a script.
 */
export const formatNumber = (n: number): string => String(n);

const tenth = (n: number) => Math.round(n * 10) / 10;

/** The drawn length of `value` in percent of the chart on a linear scale up to `max`, never under MIN_BAR_PERCENT. */
export function barPercent(value: number, max: number): number {
  if (value <= 0 || max <= 0) return 0;
  return Math.max(MIN_BAR_PERCENT, tenth((value / max) * 100));
}

const percent = (n: number) => `${tenth(n)}%`;

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

/** The `<svg>` every chart shares: one row per bar, its whole content read out as `label`. */
function ChartFrame(props: { id: string; label: string; rows: number; children: unknown }) {
  return (
    <svg
      class="chart"
      id={props.id}
      role="img"
      aria-label={props.label}
      width="100%"
      height={props.rows * ROW_HEIGHT}
      xmlns="http://www.w3.org/2000/svg"
    >
      {props.children}
    </svg>
  );
}

/** One row's label line and the track its bar lies on; `children` draws the bar. */
function Row(props: { row: number; label: string; display: string; children: unknown }) {
  const top = props.row * ROW_HEIGHT;
  return (
    <>
      <text x="1" y={top + LABEL_Y} dominant-baseline="central">
        {props.label}
      </text>
      <text class="count" x="100%" y={top + LABEL_Y} text-anchor="end" dominant-baseline="central">
        {props.display}
      </text>
      <rect class="track" x="0" y={top + BAR_Y} width="100%" height={BAR_HEIGHT} rx="3" />
      {props.children}
    </>
  );
}

const barY = (row: number) => row * ROW_HEIGHT + BAR_Y;

/** A horizontal bar chart: one labelled row per bar, its exact value printed above its end. */
export function BarChart(props: { id: string; label: string; bars: Bar[]; unit: string }) {
  const max = Math.max(0, ...props.bars.map((bar) => bar.value));
  const summary = props.bars.map((bar) => `${bar.label} ${bar.display}`).join(", ");
  return (
    <ChartFrame id={props.id} label={`${props.label}: ${summary}`} rows={props.bars.length}>
      {props.bars.map((bar, row) => {
        const width = barPercent(bar.value, max);
        return (
          <g class="bar" data-key={bar.key}>
            <title>{`${bar.label}: ${bar.display} ${props.unit}`}</title>
            <Row row={row} label={truncate(bar.label, LABEL_CHARS)} display={bar.display}>
              {width > 0 ? (
                <rect
                  class={bar.className}
                  x="0"
                  y={barY(row)}
                  width={percent(width)}
                  height={BAR_HEIGHT}
                  rx="3"
                />
              ) : null}
            </Row>
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
  const name = (w: WorkflowSummary) => w.name ?? w.id;
  const summary = props.workflows
    .map((w) => `${name(w)} ${formatNumber(w.total)}${w.byStatus ? ` (${statusMix(w.byStatus)})` : ""}`)
    .join("; ");
  return (
    <ChartFrame
      id="chart-workflows"
      label={`Top workflows by runs: ${summary}`}
      rows={props.workflows.length}
    >
      {props.workflows.map((workflow, row) => {
        const y = barY(row);
        const total = barPercent(workflow.total, max);
        const byStatus = workflow.byStatus;
        let x = 0;
        const segments = byStatus
          ? WORKFLOW_RUN_STATUSES.filter((s) => byStatus[s] > 0).map((status) => {
              const width = workflow.total > 0 ? (byStatus[status] / workflow.total) * total : 0;
              const segment = (
                <rect class={`s-${status}`} x={percent(x)} y={y} width={percent(width)} height={BAR_HEIGHT}>
                  <title>{`${name(workflow)}: ${status} ${formatNumber(byStatus[status])} runs`}</title>
                </rect>
              );
              x += width;
              return segment;
            })
          : [<rect class="runs" x="0" y={y} width={percent(total)} height={BAR_HEIGHT} rx="3" />];
        return (
          <g class="bar" data-key={workflow.id}>
            <title>{`${name(workflow)}: ${formatNumber(workflow.total)} runs`}</title>
            <Row
              row={row}
              label={truncate(name(workflow), WORKFLOW_LABEL_CHARS)}
              display={formatNumber(workflow.total)}
            >
              {segments}
            </Row>
          </g>
        );
      })}
    </ChartFrame>
  );
}
