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
