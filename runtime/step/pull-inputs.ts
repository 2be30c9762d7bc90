import { mkdir } from 'node:fs/promises';
import { contentDigest, memoKey, reuseOutput } from './memo';
import { REGISTRY_WAIT_MS } from './push-output';
import { PulledInput, writeStateFile } from './state';
import { PROVENANCE } from '../../src/provenance';
import { StateFile } from '../../src/wrapper';
import { AuthError, TimeoutError } from '../oci/errors';
import { printable } from '../oci/printable';
import { Reporter } from '../oci/progress';
import { pull } from '../oci/pull';
import { parseReference, Reference } from '../oci/reference';
import { FetchedManifest, RegistryClient } from '../oci/registry-client';
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
  /** Memoize: reuse an output made for the same key instead of pulling (see memo.ts). */
  readonly memo?: MemoOptions;
}

export interface MemoOptions {
  /** The step's definition as a hex digest (`--memo-key`, computed at synth time). */
  readonly definition: string;
  /** The output reference of this run. */
  readonly to: string;
  /** Annotations of this run's output. */
  readonly annotations: Record<string, string>;
}

/**
 * What oras-pull does, beside the app container: leaves its PID in the state
 * directory, waits for each input (all within one deadline) and pulls it by
 * the digest it resolved to, so that a tag moved meanwhile cannot mix two
 * versions. Then it writes `inputs.json`, which tells the wrapper that the
 * command may start, or on failure `pull.failed` with the reason, which
 * tells the wrapper and oras-push that it must not.
 *
 * A memoized step first looks for an output made for its key (its
 * definition and the inputs' content). When there is one, it is stored
 * under this run's tag, nothing is pulled, and `memoized` tells the wrapper
 * and oras-push that the command need not run. Otherwise `memo.json` tells
 * oras-push the memo tag to store the output under too.
 */
export async function pullInputs(options: PullInputsOptions): Promise<PulledInput[] | 'memoized'> {
  await mkdir(options.state, { recursive: true });
  await writeStateFile(options.state, StateFile.PULL_PID, `${process.pid}\n`);
  try {
    const resolved = await resolveEach(options);
    if (options.memo) {
      const key = memoKey(options.memo.definition, resolved.map((r) => r.content!));
      const from = await reuse(options, options.memo, key, resolved);
      if (from !== undefined) {
        await writeStateFile(options.state, StateFile.MEMOIZED, `${printable(from)}\n`);
        return 'memoized';
      }
      await writeStateFile(options.state, StateFile.MEMO, JSON.stringify({ key }));
    }
    const pulled = await pullEach(options, resolved);
    await writeStateFile(options.state, StateFile.INPUTS, JSON.stringify(pulled));
    return pulled;
  } catch (err) {
    await writeStateFile(options.state, StateFile.PULL_FAILED, `${printable((err as Error).message)}\n`);
    throw err;
  }
}

/** An input as it resolved: its digest, and with memoization its manifest (fetched for the key) and content digest. */
interface Resolved {
  readonly input: StepInput;
  readonly reference: Reference;
  readonly digest: string;
  readonly manifest?: FetchedManifest;
  readonly content?: string;
}

/** Waits for every input (all within one deadline) and resolves it to a digest, so that a tag moved meanwhile cannot mix two versions. */
async function resolveEach(options: PullInputsOptions): Promise<Resolved[]> {
  const deadline = Date.now() + options.timeoutMs;
  const resolved: Resolved[] = [];
  for (const input of options.inputs) {
    const reference = parseReference(input.reference);
    const client = options.clientFor(reference);
    try {
      // The memo key needs the manifest itself; without it, a HEAD that resolves the digest is enough.
      const found = await waitFor(async (signal): Promise<{ digest: string; manifest?: FetchedManifest }> => {
        if (!options.memo) return { digest: (await client.resolve(reference.repository, reference.manifestReference, { signal })).digest };
        const manifest = await client.fetchManifest(reference.repository, reference.manifestReference, undefined, { signal });
        return { digest: manifest.descriptor.digest, manifest };
      }, {
        timeoutMs: Math.max(deadline - Date.now(), 1),
        onRetry: (message) => options.reporter.event('waiting', { reference: reference.text, message }),
        maxDelayMs: POLL_MAX_MS,
        signal: options.signal,
      }).catch((err: Error) => {
        throw inputProblem(reference, err);
      });
      resolved.push({ input, reference, ...found, content: found.manifest && contentDigest(found.manifest.manifest) });
    } finally {
      client.close();
    }
  }
  return resolved;
}

async function pullEach(options: PullInputsOptions, resolved: readonly Resolved[]): Promise<PulledInput[]> {
  const pulled: PulledInput[] = [];
  for (const { input, reference, digest, manifest } of resolved) {
    const client = options.clientFor(reference);
    try {
      const pinned = parseReference(`${reference.registry}/${reference.repository}@${digest}`);
      const pullOptions = { reporter: options.reporter, maxUnpackedBytes: options.maxUnpackedBytes, signal: options.signal, manifest };
      await pull(client, pinned, input.dir, pullOptions)
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

/** Stores the output made for `key` under this run's tag, when there is one; resolves to what it reuses. */
async function reuse(options: PullInputsOptions, memo: MemoOptions, key: string, resolved: readonly Resolved[]): Promise<string | undefined> {
  const to = parseReference(memo.to);
  const client = options.clientFor(to);
  try {
    const inputs = JSON.stringify(resolved.map((r) => `${r.reference.text}@${r.digest}`));
    // The registry may still be starting (a workflow applied with its registry): wait for it as oras-push does.
    return await waitFor((signal) => reuseOutput({
      client,
      to,
      key,
      reporter: options.reporter,
      signal,
      annotations: { ...memo.annotations, [PROVENANCE.INPUTS]: inputs },
    }), {
      timeoutMs: REGISTRY_WAIT_MS,
      maxDelayMs: POLL_MAX_MS,
      onRetry: (message) => options.reporter.event('waiting', { reference: to.text, message }),
      signal: options.signal,
    });
  } catch (err) {
    throw new Error(`looking up a memoized output in ${to.registry}/${to.repository}: ${(err as Error).message}`, { cause: err });
  } finally {
    client.close();
  }
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
