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
  weight: number;
  granted: boolean;
}

/**
 * Up to `limit` held at once, each holder holding its `weight` (1 unless given: a count of
 * places; bytes, for a byte budget); the rest wait in arrival order, and a holder heavier than
 * the whole limit still runs, alone. Holders may belong to other requests, and in workerd a
 * request must not be woken by another request's promise: the continuation would run in the
 * other request's context, where workerd refuses this request's I/O, and a request with nothing
 * of its own pending is cancelled as hung. So a holder only marks waiters as granted, and each
 * waiter looks on a timer of its own.
 */
export class Semaphore {
  private readonly limit: number;
  private held = 0;
  private readonly waiting: Waiter[] = [];

  constructor(limit: number) {
    this.limit = limit;
  }

  /**
   * Runs `task` once `weight` fits (or nothing else is held), and frees it when `task` settles.
   * Rejects with SemaphoreTimeout, without running `task`, when it does not fit within `maxWaitMs`.
   */
  async run<T>(task: () => Promise<T>, maxWaitMs: number, weight = 1): Promise<T> {
    if (this.waiting.length > 0 || !this.fits(weight)) await this.wait(weight, maxWaitMs);
    else this.held += weight;
    try {
      return await task();
    } finally {
      this.held -= weight;
      this.grant();
    }
  }

  private fits(weight: number): boolean {
    return this.held === 0 || this.held + weight <= this.limit;
  }

  /** Hands what is free to the waiters in arrival order, as far as it goes. */
  private grant(): void {
    for (;;) {
      const next = this.waiting[0];
      if (!next || !this.fits(next.weight)) return;
      this.waiting.shift();
      this.held += next.weight;
      next.granted = true;
    }
  }

  private async wait(weight: number, maxWaitMs: number): Promise<void> {
    const waiter: Waiter = { weight, granted: false };
    this.waiting.push(waiter);
    this.grant();
    const deadline = Date.now() + maxWaitMs;
    for (;;) {
      if (waiter.granted) return;
      await new Promise((resolve) => setTimeout(resolve, SEMAPHORE_POLL_MS));
      if (waiter.granted) return;
      if (Date.now() >= deadline) {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        // The waiter that gave up may have held back lighter ones behind it.
        this.grant();
        throw new SemaphoreTimeout();
      }
    }
  }
}
