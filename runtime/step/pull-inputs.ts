import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PulledInput, StateFile } from './state';
import { WRAPPER_SCRIPT } from './wrapper';
import { AuthError, TimeoutError } from '../oci/errors';
import { Reporter } from '../oci/progress';
import { pull } from '../oci/pull';
import { parseReference, Reference } from '../oci/reference';
import { RegistryClient } from '../oci/registry-client';
import { waitFor } from '../oci/wait';

/** A waiting step asks the registry at least this often, so it starts soon after its producer ends. */
const POLL_MAX_MS = 2_000;

export interface StepInput {
  readonly reference: string;
  /** Directory (a volume the app container mounts at the input's path). */
  readonly dir: string;
}

export interface PullInputsOptions {
  readonly state: string;
  readonly wrapper: string;
  readonly timeoutMs: number;
  readonly inputs: StepInput[];
  readonly clientFor: (reference: Reference) => RegistryClient;
  readonly reporter: Reporter;
  /** Largest size one directory layer may unpack to (see PullOptions). */
  readonly maxUnpackedBytes?: number;
  /** Cancels waiting and pulling (SIGTERM); staged files are removed first. */
  readonly signal?: AbortSignal;
}

/**
 * What the init container does: installs the wrapper, prepares the state
 * directory, then waits for each input (all within one deadline) and pulls
 * it by the digest it resolved to, so that a tag moved meanwhile cannot mix
 * two versions.
 */
export async function pullInputs(options: PullInputsOptions): Promise<PulledInput[]> {
  // The app may run as any user: it writes its PID and exit code here.
  await mkdir(options.state, { recursive: true });
  await chmod(options.state, 0o777);
  await mkdir(join(options.wrapper, '..'), { recursive: true });
  await writeFile(options.wrapper, WRAPPER_SCRIPT, { mode: 0o755 });

  const deadline = Date.now() + options.timeoutMs;
  const pulled: PulledInput[] = [];
  for (const input of options.inputs) {
    const reference = parseReference(input.reference);
    const client = options.clientFor(reference);
    try {
      const digest = await waitFor(async (signal) => (await client.resolve(reference.repository, reference.manifestReference, { signal })).digest, {
        timeoutMs: Math.max(deadline - Date.now(), 1),
        onRetry: (message) => options.reporter.event('waiting', { reference: reference.text, message }),
        maxDelayMs: POLL_MAX_MS,
        signal: options.signal,
      }).catch((err: Error) => {
        throw inputProblem(reference, err);
      });
      const pinned = parseReference(`${reference.registry}/${reference.repository}@${digest}`);
      await pull(client, pinned, input.dir, { reporter: options.reporter, maxUnpackedBytes: options.maxUnpackedBytes, signal: options.signal })
        .catch((err: Error) => {
          throw inputProblem(reference, err);
        });
      pulled.push({ reference: reference.text, digest });
      options.reporter.event('input', { reference: reference.text, digest, dir: input.dir });
    } finally {
      client.close();
    }
  }
  await writeFile(join(options.state, StateFile.INPUTS), JSON.stringify(pulled));
  return pulled;
}

/** What went wrong with an input, in words that point at the cause: the producer, or this step's credentials. */
function inputProblem(reference: Reference, err: Error): Error {
  if (err instanceof TimeoutError) {
    return new Error(`input ${reference.text} is not there: ${err.message}. The step that produces it may have failed or not finished yet; `
      + 'look at its Job. inputTimeout sets how long a step waits for its inputs.', { cause: err });
  }
  if (err instanceof AuthError) {
    return new Error(`input ${reference.text}: the registry refused this step's credentials (${err.message}). `
      + 'Check the user and password in the Secret named by oras-env (ORAS_USER with ORAS_PASS or ORAS_PULL_PASS).', { cause: err });
  }
  return new Error(`input ${reference.text}: ${err.message}`, { cause: err });
}
