import { AuthError, ContentMismatchError, RegistryError, StalledError, TransportError } from './errors';

/** How often and how patiently to try again. */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  readonly attempts: number;
  /** The first delay (ms), doubled for each further attempt, with jitter. */
  readonly baseMs: number;
  /** The longest delay (ms). */
  readonly maxMs: number;
}

/** The one policy of the client: 5 attempts, from 250 ms up to 10 s apart. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { attempts: 5, baseMs: 250, maxMs: 10_000 };

/** Connection failures that a new connection may not meet. */
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ERR_STREAM_PREMATURE_CLOSE']);
/** Answers that say "not now" rather than "no". */
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/** Longest Retry-After we honour. */
const MAX_RETRY_AFTER_MS = 30_000;

/**
 * Whether a retry may succeed: connection errors, stalls, 429 and 5xx answers, and transfers that
 * broke short. Never a deadline, a cancellation, an auth failure, a limit or content that is wrong.
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof TransportError) return isTransient(err.cause);
  if (err instanceof StalledError) return true;
  if (err instanceof ContentMismatchError) return err.truncated;
  if (err instanceof AuthError) return false;
  if (err instanceof RegistryError) return TRANSIENT_STATUS.has(err.status);
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && TRANSIENT_CODES.has(code);
}

export interface RetryOptions {
  readonly policy?: RetryPolicy;
  /** Stops the waiting between attempts; the retry then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** Which failures to try again. Default isTransient. */
  readonly retryable?: (err: unknown) => boolean;
  /** Called before each new attempt, after the delay. */
  readonly onRetry?: (err: unknown, attempt: number) => void | Promise<void>;
}

/** Runs `work` until it succeeds, a failure is not retryable, the attempts are spent or the signal aborts. */
export async function retry<T>(work: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const policy = options.policy ?? DEFAULT_RETRY_POLICY;
  const retryable = options.retryable ?? isTransient;
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted();
    try {
      return await work(attempt);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (attempt >= policy.attempts || !retryable(err)) throw err;
      await sleep(backoff(policy, attempt, (err as RegistryError).retryAfterMs), options.signal);
      await options.onRetry?.(err, attempt);
    }
  }
}

/** The delay after attempt `attempt` (1-based): Retry-After if the registry sent one, else doubling with jitter. */
export function backoff(policy: RetryPolicy, attempt: number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
  const base = Math.min(policy.baseMs * 2 ** (attempt - 1), policy.maxMs);
  return base / 2 + Math.random() * base / 2;
}

/** Waits `ms`; rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', aborted);
    };
    const aborted = () => {
      done();
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      done();
      resolve();
    }, ms);
    signal?.addEventListener('abort', aborted, { once: true });
  });
}
