/** Thrown by `Semaphore.run` when no place was free within the caller's wait. */
export class SemaphoreTimeout extends Error {
  constructor() {
    super("no place was free in time");
    this.name = "SemaphoreTimeout";
  }
}

/** How often a waiter looks whether a place was handed to it. */
export const SEMAPHORE_POLL_MS = 10;

interface Waiter {
  granted: boolean;
}

/**
 * At most `limit` holders at once; the rest wait in arrival order. Holders may belong to other
 * requests, and in workerd a request must not be woken by another request's promise: the
 * continuation would run in the other request's context, where workerd refuses this request's
 * I/O, and a request with nothing of its own pending is cancelled as hung. So a holder only marks
 * the next waiter as granted, and each waiter looks on a timer of its own.
 */
export class Semaphore {
  private readonly limit: number;
  private held = 0;
  private readonly waiting: Waiter[] = [];

  constructor(limit: number) {
    this.limit = limit;
  }

  /**
   * Runs `task` once a place is free, and frees it when `task` settles. Rejects with
   * SemaphoreTimeout, without running `task`, when no place is free within `maxWaitMs`.
   */
  async run<T>(task: () => Promise<T>, maxWaitMs: number): Promise<T> {
    if (this.held >= this.limit) await this.wait(maxWaitMs);
    else this.held += 1;
    try {
      return await task();
    } finally {
      // The place passes straight to the next waiter: `held` stays as it is.
      const next = this.waiting.shift();
      if (next) next.granted = true;
      else this.held -= 1;
    }
  }

  private async wait(maxWaitMs: number): Promise<void> {
    const waiter: Waiter = { granted: false };
    this.waiting.push(waiter);
    const deadline = Date.now() + maxWaitMs;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, SEMAPHORE_POLL_MS));
      if (waiter.granted) return;
      if (Date.now() >= deadline) {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        throw new SemaphoreTimeout();
      }
    }
  }
}
