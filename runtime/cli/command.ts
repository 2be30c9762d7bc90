import { constants } from 'node:os';
import { CancelledError } from '../oci/errors';

/** One `oras-runtime` sub-command. */
export interface Command {
  readonly name: string;
  /** One line for `oras-runtime --help`. */
  readonly summary: string;
  /** Full usage text for `oras-runtime <name> --help`. */
  readonly usage: string;
  /** Runs the command and resolves to the process exit code. */
  run(args: string[]): Promise<number>;
}

/** A mistake in how the command was called: printed with a hint, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * Runs `work` with a signal that SIGTERM and SIGINT abort with a CancelledError, so that the work
 * removes what it staged before the process ends. A second signal ends the process at once.
 */
export async function cancellable<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(128 + (constants.signals[name] ?? 0));
    controller.abort(new CancelledError(`${name} received`, name));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    return await work(controller.signal);
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
