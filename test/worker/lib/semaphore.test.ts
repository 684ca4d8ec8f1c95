import { describe, expect, it } from "vitest";
import { Semaphore, SemaphoreTimeout } from "../../../src/lib/semaphore.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("Semaphore", () => {
  it("runs at most `limit` tasks at once, the rest in arrival order", async () => {
    const semaphore = new Semaphore(2);
    let running = 0;
    let most = 0;
    const started: number[] = [];
    const task = (n: number) => async () => {
      started.push(n);
      running += 1;
      most = Math.max(most, running);
      await sleep(15);
      running -= 1;
      return n;
    };
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => semaphore.run(task(n), 5_000)));
    expect(results).toEqual([1, 2, 3, 4, 5]);
    expect(most).toBe(2);
    expect(started).toEqual([1, 2, 3, 4, 5]);
  });

  it("gives up on a wait past maxWaitMs without running the task, and loses no place", async () => {
    const semaphore = new Semaphore(1);
    let release: () => void = () => undefined;
    const holder = semaphore.run(() => new Promise<void>((resolve) => (release = resolve)), 5_000);
    let ran = false;
    const late = semaphore.run(async () => {
      ran = true;
    }, 20);
    await expect(late).rejects.toBeInstanceOf(SemaphoreTimeout);
    expect(ran).toBe(false);
    release();
    await holder;
    // The place the late waiter gave up is free again, once.
    const order: string[] = [];
    await Promise.all([
      semaphore.run(async () => {
        order.push("a");
        await sleep(10);
        order.push("a done");
      }, 1_000),
      semaphore.run(async () => {
        order.push("b");
      }, 1_000),
    ]);
    expect(order).toEqual(["a", "a done", "b"]);
  });

  it("frees the place when the task fails", async () => {
    const semaphore = new Semaphore(1);
    await expect(semaphore.run(() => Promise.reject(new Error("boom")), 100)).rejects.toThrow("boom");
    await expect(semaphore.run(async () => "next", 100)).resolves.toBe("next");
  });
});

describe("Semaphore with weights (a byte budget)", () => {
  it("holds at most `limit` of weight at once, in arrival order, and lets one heavier than the limit run alone", async () => {
    const budget = new Semaphore(10);
    let held = 0;
    let most = 0;
    const order: number[] = [];
    const task = (n: number, weight: number) => async () => {
      order.push(n);
      held += weight;
      most = Math.max(most, held);
      await sleep(15);
      held -= weight;
    };
    const weights = [4, 4, 4, 12, 2, 8];
    await Promise.all(weights.map((w, n) => budget.run(task(n, w), 5_000, w)));
    // Two of 4 fit; the 12 runs alone; 2 and 8 together. The last two are granted at once, and
    // each starts when its own timer next looks, so either may be first.
    expect(order.slice(0, 4)).toEqual([0, 1, 2, 3]);
    expect([...order.slice(4)].sort()).toEqual([4, 5]);
    expect(most).toBe(12);
    const together = new Semaphore(10);
    held = 0;
    most = 0;
    await Promise.all([4, 4, 4].map((w, n) => together.run(task(n, w), 5_000, w)));
    expect(most).toBe(8);
  });
});
