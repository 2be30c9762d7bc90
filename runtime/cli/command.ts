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

/** The conventional exit code of a process ended by `signal`: 128 + its number. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

/**
 * Runs `work` with a signal that SIGTERM and SIGINT abort with a CancelledError, so that the work
 * removes what it staged before the process ends. A second signal ends the process at once.
 */
export async function cancellable<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(signalExitCode(name));
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
