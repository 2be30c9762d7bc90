import { isRetryableError, sleep } from './http';
import { RegistryError } from './registry-client';

/**
 * Waits until a manifest exists; not-found answers and connection errors are
 * retried with backoff (doubling from 0.5 s up to `maxDelayMs`) until the deadline.
 */
export async function waitFor(
  resolve: () => Promise<string>,
  timeoutMs: number,
  onRetry: (message: string) => void,
  maxDelayMs = 5_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let delay = 500;
  for (;;) {
    let last: string;
    try {
      return await resolve();
    } catch (err) {
      // Not there yet, or the registry is not up yet; anything else (auth, usage) ends the wait.
      const notYet = err instanceof RegistryError
        ? err.status === 404 || err.status >= 500
        : isRetryableError((err as { cause?: unknown }).cause ?? err);
      if (!notYet) throw err;
      last = (err as Error).message;
    }
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s; the last answer was: ${last}`);
    onRetry(last);
    await sleep(Math.min(delay, left));
    delay = Math.min(delay * 2, maxDelayMs) * (0.75 + Math.random() / 2);
  }
}

