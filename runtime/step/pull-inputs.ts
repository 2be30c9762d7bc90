import { mkdir } from 'node:fs/promises';
import { PulledInput, writeStateFile } from './state';
import { StateFile } from '../../src/wrapper';
import { AuthError, TimeoutError } from '../oci/errors';
import { printable } from '../oci/printable';
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
 * What oras-pull does, beside the app container: leaves its PID in the state
 * directory, waits for each input (all within one deadline) and pulls it by
 * the digest it resolved to, so that a tag moved meanwhile cannot mix two
 * versions. Then it writes `inputs.json`, which tells the wrapper that the
 * command may start, or on failure `pull.failed` with the reason, which
 * tells the wrapper and oras-push that it must not.
 */
export async function pullInputs(options: PullInputsOptions): Promise<PulledInput[]> {
  await mkdir(options.state, { recursive: true });
  await writeStateFile(options.state, StateFile.PULL_PID, `${process.pid}\n`);
  try {
    const pulled = await pullEach(options);
    await writeStateFile(options.state, StateFile.INPUTS, JSON.stringify(pulled));
    return pulled;
  } catch (err) {
    await writeStateFile(options.state, StateFile.PULL_FAILED, `${printable((err as Error).message)}\n`);
    throw err;
  }
}

async function pullEach(options: PullInputsOptions): Promise<PulledInput[]> {
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
