// /docs in real Chromium, with every request to another origin aborted as on a machine without
// internet: the reference must render the routes of the OpenAPI document from this origin alone.
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, violations, watchedPage } from "./support/browser.ts";
import { browserSuite } from "./support/context.ts";

const suite = browserSuite();

interface Document {
  paths: Record<string, Record<string, { summary?: string }>>;
}

describe.skipIf(suite === null)("/docs in Chromium, offline", () => {
  if (suite === null) return;
  let browser: Browser;

  beforeAll(async () => {
    browser = await connect(suite);
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("renders every route of the OpenAPI document, asking nothing of any other origin", async () => {
    const document = (await (await fetch(`${suite.proxyUrl}/openapi.json`)).json()) as Document;
    const summaries = Object.values(document.paths).flatMap((item) =>
      Object.values(item).flatMap((operation) => (operation.summary ? [operation.summary] : [])),
    );
    expect(summaries.length).toBeGreaterThanOrEqual(6);

    const watched = await watchedPage(browser, [suite.proxyUrl]);
    const { page, context } = watched;
    try {
      const response = await page.goto(`${suite.proxyUrl}/docs`);
      expect(response?.status()).toBe(200);
      expect(response?.headers()["content-security-policy"]).toMatch(/script-src 'nonce-[^']+'/);
      // Scalar renders client-side; the operations appear once its bundle (from this origin) ran.
      await page
        .getByText(summaries[0] ?? "", { exact: true })
        .first()
        .waitFor({ timeout: 20_000 });
      const text = (await page.locator("body").textContent()) ?? "";
      for (const summary of summaries) expect(text, summary).toContain(summary);
      // Every path too, before anyone scrolls: Scalar renders an operation only as it comes near.
      for (const path of Object.keys(document.paths)) expect(text, path).toContain(path);
      expect(watched.requests.some((url) => /\/docs\/scalar-[\d.]+\.js$/.test(url))).toBe(true);
      expect(watched.requests.some((url) => url.endsWith("/openapi.json"))).toBe(true);
      expect(watched.foreign, "requests outside the origin").toEqual([]);
      expect(await violations(watched), "CSP violations").toEqual([]);
      expect(watched.errors, "console errors").toEqual([]);
    } finally {
      await context.close();
    }
  });

  it("leaves a browser nothing to fetch that fails, its tab icon included", async () => {
    // Without interception: Playwright's request routing stops Chromium from fetching a tab icon.
    const watched = await watchedPage(browser, [suite.proxyUrl], { intercept: false });
    const { page, context } = watched;
    try {
      // Until the network is quiet: what Chromium asks for on its own comes after the load.
      const response = await page.goto(`${suite.proxyUrl}/docs`, { waitUntil: "networkidle" });
      expect(response?.status()).toBe(200);
      await page.getByText("List workflow runs", { exact: true }).first().waitFor({ timeout: 20_000 });
      expect(watched.foreign, "requests outside the origin").toEqual([]);
      expect(await violations(watched), "CSP violations").toEqual([]);
      expect(watched.errors, "console errors").toEqual([]);
    } finally {
      await context.close();
    }
  });
});
