import { withDeadline } from './deadline';
import { RegistryError, TimeoutError } from './errors';
import { isTransient, retry } from './retry';

export interface WaitOptions {
  /** How long to wait in all; a request still in flight then is cut short. */
  readonly timeoutMs: number;
  /** Called with the last answer before each new try. */
  readonly onRetry?: (message: string) => void;
  /** Longest pause between tries (ms). Default 5 s. */
  readonly maxDelayMs?: number;
  /** Stops the wait (SIGTERM); it then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/**
 * Waits until `resolve` succeeds: not-found answers and transient failures are tried again with
 * backoff (doubling from 0.5 s up to `maxDelayMs`); anything else (auth, usage) ends the wait. At
 * the deadline it rejects with a TimeoutError that quotes the last answer.
 */
export async function waitFor<T>(resolve: (signal: AbortSignal) => Promise<T>, options: WaitOptions): Promise<T> {
  let last = 'no answer yet';
  const notYet = (err: unknown) => {
    const retryable = isTransient(err) || (err instanceof RegistryError && err.status === 404);
    if (retryable) last = (err as Error).message;
    return retryable;
  };
  try {
    return await withDeadline('waiting', { timeoutMs: options.timeoutMs, signal: options.signal }, (signal) => retry(() => resolve(signal!), {
      policy: { attempts: Infinity, baseMs: 500, maxMs: options.maxDelayMs ?? 5_000 },
      signal,
      retryable: notYet,
      onRetry: () => options.onRetry?.(last),
    }));
  } catch (err) {
    if (err instanceof TimeoutError && !options.signal?.aborted) throw new TimeoutError('waiting', options.timeoutMs, `the last answer was: ${last}`);
    throw err;
  }
}
