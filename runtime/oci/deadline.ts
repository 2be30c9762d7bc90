import { TimeoutError } from './errors';

/** How an operation is bounded in time from outside. */
export interface DeadlineOptions {
  /** Aborts the operation, which then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** Overall time limit (ms); the operation then rejects with a TimeoutError. Default: none. */
  readonly timeoutMs?: number;
}

/**
 * Runs `work` with one signal that aborts when `options.signal` does or when `options.timeoutMs` has
 * passed (with a TimeoutError naming `what`). Once aborted, the abort reason is what rejects, whatever
 * error the work met on its way out.
 */
export async function withDeadline<T>(what: string, options: DeadlineOptions, work: (signal?: AbortSignal) => Promise<T>): Promise<T> {
  const { timeoutMs } = options;
  let timer: NodeJS.Timeout | undefined;
  let signal = options.signal;
  if (timeoutMs !== undefined && timeoutMs > 0) {
    const controller = new AbortController();
    timer = setTimeout(() => controller.abort(new TimeoutError(what, timeoutMs)), timeoutMs);
    signal = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
  }
  try {
    signal?.throwIfAborted();
    return await work(signal);
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
