// The dashboard in real Chromium, served by `wrangler dev` from the fake Extend's data: signing
// in with a static token, the counts against /stats with JavaScript on and off, the SVG charts
// (the per-workflow one from the run index, built before the tests start), the workflow select,
// the page's CSP and origin discipline, and the screenshot in the README.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STATUSES } from "../../fake/extend.ts";
import { PROJECT_ROOT } from "../../scripts/wrangler-dev.ts";
import {
  connect,
  statsFromApi,
  statsOracle,
  tokenTaker,
  untilIndexed,
  violations,
  type Watched,
  watchedPage,
} from "./support/browser.ts";
import { browserSuite } from "./support/context.ts";

const suite = browserSuite();
/** Set to regenerate docs/dashboard.png (README); CI leaves the committed file alone. */
const UPDATE_SCREENSHOT = process.env.UPDATE_SCREENSHOTS === "1";

describe.skipIf(suite === null)("the dashboard in Chromium", () => {
  if (suite === null) return;
  const takeToken = tokenTaker(suite.tokens.dashboard);
  const oracle = tokenTaker(suite.tokens.oracle);
  let browser: Browser;
  const opened: Watched[] = [];

  beforeAll(async () => {
    browser = await connect(suite);
    await untilIndexed(suite, oracle);
  }, 120_000);
  afterAll(async () => {
    for (const watched of opened) await watched.context.close();
    await browser?.close();
  });

  const open = async (options: { javaScriptEnabled?: boolean; colorScheme?: "light" | "dark" } = {}) => {
    const watched = await watchedPage(browser, [suite.proxyUrl], options);
    opened.push(watched);
    return watched;
  };

  const signIn = async (page: Page, token: string) => {
    await page.goto(`${suite.proxyUrl}/dashboard`);
    await expect.poll(() => page.title()).toMatch(/^Sign in/);
    await page.getByLabel("Client token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL((url) => url.pathname === "/dashboard");
    await expect.poll(() => page.title()).toMatch(/^Workflow runs/);
  };

  /** What the page's table says, as numbers. */
  const tableCounts = async (page: Page): Promise<Record<string, number>> => {
    const rows = await page
      .locator("#table-status tr[data-status]")
      .evaluateAll((trs) =>
        trs.map((tr) => [tr.getAttribute("data-status") ?? "", tr.querySelector("td")?.textContent ?? ""]),
      );
    return Object.fromEntries(rows.map(([status, count]) => [status, Number(count?.replaceAll(",", ""))]));
  };

  /** What each bar of the status chart prints. */
  const chartCounts = async (page: Page): Promise<Record<string, number>> => {
    const bars = await page
      .locator("svg#chart-status g.bar")
      .evaluateAll((groups) =>
        groups.map((g) => [
          g.getAttribute("data-key") ?? "",
          g.querySelector("text.count")?.textContent ?? "",
        ]),
      );
    return Object.fromEntries(bars.map(([status, count]) => [status, Number(count?.replaceAll(",", ""))]));
  };

  /**
   * Every pair on the rendered page that falls short of WCAG 2.2 AA: text (placeholders too)
   * under 4.5:1 against what is behind it, and form-field borders and chart bars under 3:1.
   */
  const contrastFailures = (page: Page): Promise<string[]> =>
    page.evaluate(() => {
      type Rgb = [number, number, number];
      const rgb = (colour: string): Rgb | undefined => {
        const parts = /rgba?\(([^)]+)\)/
          .exec(colour)?.[1]
          ?.split(/[\s,/]+/)
          .map(Number);
        if (!parts || (parts[3] ?? 1) === 0) return undefined;
        return [parts[0] ?? 0, parts[1] ?? 0, parts[2] ?? 0];
      };
      const luminance = (c: Rgb) => {
        const [r, g, b] = c.map((v) => {
          const x = v / 255;
          return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
        }) as Rgb;
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
      };
      const ratio = (a: Rgb, b: Rgb) => {
        const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
        return (hi + 0.05) / (lo + 0.05);
      };
      const behind = (element: Element | null): Rgb => {
        for (let e = element; e; e = e.parentElement) {
          const colour = rgb(getComputedStyle(e).backgroundColor);
          if (colour) return colour;
        }
        return [255, 255, 255];
      };
      const failures: string[] = [];
      const check = (what: string, fg: string, bg: Rgb, minimum: number) => {
        const colour = rgb(fg);
        const r = colour ? ratio(colour, bg) : 0;
        if (r < minimum) failures.push(`${what}: ${fg} on rgb(${bg.join(", ")}) is ${r.toFixed(2)}:1`);
      };
      for (const element of document.querySelectorAll("body *")) {
        if (element.closest("svg")) continue;
        const own = [...element.childNodes].some((n) => n.nodeType === 3 && n.textContent?.trim());
        if (own) check(`text of ${element.tagName}`, getComputedStyle(element).color, behind(element), 4.5);
      }
      for (const field of document.querySelectorAll("input:not([type=hidden]), select")) {
        const around = behind(field.parentElement);
        check(`border of #${field.id}`, getComputedStyle(field).borderTopColor, around, 3);
        if (field.getAttribute("placeholder")) {
          check(
            `placeholder of #${field.id}`,
            getComputedStyle(field, "::placeholder").color,
            behind(field),
            4.5,
          );
        }
      }
      for (const bar of document.querySelectorAll("svg.chart g.bar")) {
        const surface = behind(bar.closest("svg"));
        const track = rgb(getComputedStyle(bar.querySelector("rect.track") ?? bar).fill) ?? surface;
        for (const text of bar.querySelectorAll("text")) {
          check("chart text", getComputedStyle(text).fill, surface, 4.5);
          check("chart text on its track", getComputedStyle(text).fill, track, 4.5);
        }
        for (const rect of bar.querySelectorAll("rect:not(.track)")) {
          check(`bar ${rect.getAttribute("class")}`, getComputedStyle(rect).fill, surface, 3);
          check(`bar ${rect.getAttribute("class")} on its track`, getComputedStyle(rect).fill, track, 3);
        }
      }
      return failures;
    });

  const expectClean = async (watched: Watched) => {
    expect(watched.foreign, "requests outside the origin").toEqual([]);
    for (const url of watched.requests) expect(new URL(url).origin).toBe(suite.proxyUrl);
    expect(await violations(watched), "CSP violations").toEqual([]);
    expect(watched.errors, "console errors").toEqual([]);
  };

  it.each([
    ["on", true],
    ["off", false],
  ])(
    "signs in with a token and shows exactly /stats's counts, JavaScript %s",
    async (_name, javaScriptEnabled) => {
      const watched = await open({ javaScriptEnabled });
      const { page, context } = watched;
      const token = takeToken();
      await signIn(page, token);

      const cookies = await context.cookies(suite.proxyUrl);
      expect(cookies.map((c) => c.name)).toEqual(["__Host-dashboard_session"]);
      const [cookie] = cookies;
      expect(cookie).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict", path: "/" });
      expect(cookie?.value).not.toContain(token);
      expect(page.url()).not.toContain(token);

      const stats = await statsFromApi(suite, oracle());
      expect(await tableCounts(page)).toEqual({ ...stats.byStatus, total: stats.total });
      expect(await chartCounts(page)).toEqual(stats.byStatus);
      expect(stats.total).toBe(suite.dataset.size);

      // Filters go through the plain GET form.
      await page.getByRole("combobox", { name: "Status" }).selectOption("FAILED");
      await page.getByLabel("Created since").fill("2026-01-01T00:00:00Z");
      await page.getByRole("button", { name: "Apply filters" }).click();
      await page.waitForURL((url) => url.searchParams.get("status") === "FAILED");
      const url = new URL(page.url());
      expect(url.searchParams.get("since")).toBe("2026-01-01T00:00:00Z");
      const filtered = await statsFromApi(suite, oracle(), {
        status: "FAILED",
        since: "2026-01-01T00:00:00Z",
      });
      expect(await tableCounts(page)).toEqual({ ...filtered.byStatus, total: filtered.total });
      expect(filtered.total).toBeGreaterThan(0);
      expect(filtered.total).toBeLessThan(stats.total);
      await expectClean(watched);
    },
  );

  it("draws its charts as inline SVG that a screen reader can name", async () => {
    const watched = await open();
    const { page } = watched;
    await signIn(page, takeToken());
    const status = page.getByRole("img", { name: /^Runs per status: PENDING \d/ });
    await expect.poll(() => status.count()).toBe(1);
    expect(await status.evaluate((svg) => svg.namespaceURI)).toBe("http://www.w3.org/2000/svg");
    expect(await page.locator("svg#chart-status g.bar > title").count()).toBe(STATUSES.length);
    expect(
      await page.getByRole("img", { name: /^Credits used: Credits [\d,.]+, Total credits/ }).count(),
    ).toBe(1);
    // Every non-zero status has a visible bar, however small its share.
    const widths = await page
      .locator("svg#chart-status g.bar")
      .evaluateAll((groups) =>
        groups.map((g) => [
          g.querySelector("text.count")?.textContent,
          g.querySelector("rect:not(.track)")?.getBoundingClientRect().width ?? 0,
        ]),
      );
    for (const [count, width] of widths)
      if (count !== "0") expect(width, String(count)).toBeGreaterThanOrEqual(2);
    await expectClean(watched);
  });

  it.each([
    ["on", true],
    ["off", false],
  ])(
    "draws the top workflows from the run index and offers them in a select, JavaScript %s",
    async (_name, javaScriptEnabled) => {
      const watched = await open({ javaScriptEnabled });
      const { page } = watched;
      await signIn(page, takeToken());
      const stats = statsOracle(suite, oracle);
      const count = (n: number) => String(n);
      expect(await page.locator("#freshness").textContent()).toMatch(/^From the run index/);

      const chart = page.getByRole("img", { name: /^Top workflows by runs: / });
      await expect.poll(() => chart.count()).toBe(1);
      expect(await chart.evaluate((svg) => svg.namespaceURI)).toBe("http://www.w3.org/2000/svg");
      const label = (await chart.getAttribute("aria-label")) ?? "";
      const bars = await page.locator("svg#chart-workflows g.bar").evaluateAll((groups) =>
        groups.map((g) => ({
          id: g.getAttribute("data-key") ?? "",
          title: g.querySelector(":scope > title")?.textContent ?? "",
          printed: g.querySelector("text.count")?.textContent ?? "",
          segments: [...g.querySelectorAll("rect[class^='s-']")].map((rect) => ({
            status: (rect.getAttribute("class") ?? "").slice(2),
            title: rect.querySelector("title")?.textContent ?? "",
          })),
        })),
      );
      const overall = await stats();
      expect(overall.source).toBe("index");
      let sum = 0;
      let previous = Number.POSITIVE_INFINITY;
      for (const bar of bars) {
        const api = await stats({ workflowId: bar.id });
        expect(api.source).toBe("index");
        expect(bar.printed, bar.id).toBe(count(api.total));
        expect(bar.title).toBe(`${bar.id}: ${count(api.total)} runs`);
        const mix = STATUSES.filter((s) => (api.byStatus[s] ?? 0) > 0);
        expect(bar.segments).toEqual(
          mix.map((status) => ({
            status,
            title: `${bar.id}: ${status} ${count(api.byStatus[status] ?? 0)} runs`,
          })),
        );
        expect(label).toContain(
          `${bar.id} ${count(api.total)} (${mix.map((s) => `${s} ${count(api.byStatus[s] ?? 0)}`).join(", ")})`,
        );
        expect(api.total).toBeLessThanOrEqual(previous);
        previous = api.total;
        sum += api.total;
      }
      // The fake has fewer workflows than the chart's bound: every run is in one of the bars.
      expect(bars.length).toBeGreaterThan(1);
      expect(sum).toBe(overall.total);

      // The select lists the same workflows, most runs first, and keeps the one chosen.
      const select = page.getByRole("combobox", { name: "Workflow", exact: true });
      const options = await select
        .locator("option")
        .evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
      expect(options).toEqual(["", ...bars.map((bar) => bar.id)]);
      const chosen = bars.at(-1)?.id ?? "";
      await select.selectOption(chosen);
      await page.getByRole("button", { name: "Apply filters" }).click();
      await page.waitForURL((url) => url.searchParams.get("workflowId") === chosen);
      expect(await select.inputValue()).toBe(chosen);
      const filtered = await stats({ workflowId: chosen });
      expect(await tableCounts(page)).toEqual({ ...filtered.byStatus, total: filtered.total });
      expect(
        await page
          .locator("svg#chart-workflows g.bar")
          .evaluateAll((gs) => gs.map((g) => g.getAttribute("data-key"))),
      ).toEqual([chosen]);
      await expectClean(watched);
    },
  );

  it("shows a bad filter next to its field with the API's message", async () => {
    const watched = await open({ javaScriptEnabled: false });
    const { page } = watched;
    await signIn(page, takeToken());
    await page.getByLabel("Created until").fill("2026-11-01");
    await page.getByRole("button", { name: "Apply filters" }).click();
    await page.waitForURL((url) => url.searchParams.get("until") === "2026-11-01");
    const api = await fetch(`${suite.proxyUrl}/stats?until=2026-11-01`, {
      headers: { authorization: `Bearer ${oracle()}` },
    });
    const body = (await api.json()) as { details: { field: string; message: string }[] };
    const detail = body.details.find((d) => d.field === "until");
    const field = page.getByLabel("Created until");
    expect(await field.getAttribute("aria-invalid")).toBe("true");
    expect(await page.locator("#e-until").textContent()).toBe(`until ${detail?.message}`);
    expect(await field.inputValue()).toBe("2026-11-01");
    expect(await page.locator("svg").count()).toBe(0);
    await expectClean(watched);
  });

  it("refuses a wrong token, then signs out and forgets the session", async () => {
    const watched = await open();
    const { page, context } = watched;
    await page.goto(`${suite.proxyUrl}/dashboard`);
    await page.getByLabel("Client token").fill("not-a-client-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => page.locator("#e-token").textContent()).toContain("not one of the proxy");
    expect(await context.cookies(suite.proxyUrl)).toEqual([]);

    await signIn(page, takeToken());
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect.poll(() => page.title()).toMatch(/^Sign in/);
    expect(await context.cookies(suite.proxyUrl)).toEqual([]);
    await expectClean(watched);
  });

  it("follows prefers-color-scheme, with every colour it draws in contrast", async () => {
    const light = await open({ colorScheme: "light" });
    const dark = await open({ colorScheme: "dark" });
    const background = async (watched: Watched) => {
      await signIn(watched.page, takeToken());
      return watched.page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
    };
    expect(await background(light)).toBe("rgb(243, 245, 248)");
    expect(await background(dark)).toBe("rgb(14, 17, 22)");
    // What Chromium draws, not the palette: a colour the stylesheet leaves to the browser counts too.
    expect(await contrastFailures(light.page), "light").toEqual([]);
    expect(await contrastFailures(dark.page), "dark").toEqual([]);
  });

  it("fits a 320 px wide screen without scrolling sideways", async () => {
    const { page } = await open();
    await signIn(page, takeToken());
    await page.setViewportSize({ width: 320, height: 800 });
    await expect.poll(() => page.locator("tr[data-workflow]").count()).toBeGreaterThan(0);
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    expect(overflow).toBe(0);
    // Wrapping is for ids: a number, a heading or a status name broken inside a word ("178"
    // over "5") reads as something else.
    const split = await page.$$eval("table th, table td", (cells) =>
      cells
        .filter((cell) => cell.closest("tr[data-workflow]") === null)
        .flatMap((cell) => [...cell.childNodes])
        .filter((node) => node.nodeType === Node.TEXT_NODE && /^\S+$/.test(node.textContent ?? ""))
        .filter((node) => {
          const range = document.createRange();
          range.selectNodeContents(node);
          return new Set([...range.getClientRects()].map((rect) => Math.round(rect.top))).size > 1;
        })
        .map((node) => node.textContent),
    );
    expect(split).toEqual([]);
    const tables = await page.$$eval("table", (list) =>
      list
        .filter((table) => {
          const card = table.closest(".card");
          return card !== null && table.getBoundingClientRect().right > card.getBoundingClientRect().right;
        })
        .map((table) => table.id),
    );
    expect(tables).toEqual([]);
    // Chart text keeps its size rather than shrinking with the chart, and a label never runs into its value.
    const rows = await page.$$eval("svg.chart g.bar", (bars) =>
      bars.map((bar) => {
        const [label, count] = [...bar.querySelectorAll(":scope > text")].map((t) =>
          t.getBoundingClientRect(),
        );
        const chart = bar.closest("svg")?.getBoundingClientRect();
        return {
          key: (bar as SVGGElement).dataset.key,
          tall: (label?.height ?? 0) >= 14 && (count?.height ?? 0) >= 14,
          apart: (count?.left ?? 0) > (label?.right ?? 0),
          inside:
            chart !== undefined &&
            (label?.left ?? 0) >= chart.left - 1 &&
            (count?.right ?? 0) <= chart.right + 1,
        };
      }),
    );
    expect(rows.length).toBeGreaterThan(STATUSES.length);
    expect(rows.filter((row) => !row.tall || !row.apart || !row.inside)).toEqual([]);
    if (UPDATE_SCREENSHOT) {
      writeFileSync(
        join(PROJECT_ROOT, ".wrangler", "dashboard-320.png"),
        await page.screenshot({ fullPage: true }),
      );
    }
  });

  it("renders the README's screenshot from the fake's data", async () => {
    const watched = await open({ colorScheme: "light" });
    const { page } = watched;
    await page.setViewportSize({ width: 1200, height: 900 });
    await signIn(page, takeToken());
    // The README shows the per-workflow view too, not the sentence about an index being built.
    expect(await page.locator("svg#chart-workflows").count()).toBe(1);
    const png = await page.screenshot({ fullPage: true, animations: "disabled" });
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    if (UPDATE_SCREENSHOT) writeFileSync(join(PROJECT_ROOT, "docs", "dashboard.png"), png);
    await expectClean(watched);
  });
});
