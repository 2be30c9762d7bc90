import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { processExists, PulledInput, readNumber, StateFile } from './state';
import { PROVENANCE } from '../../src/injection';
import { Reporter } from '../oci/progress';
import { push, PushResult } from '../oci/push';
import { parseReference, Reference } from '../oci/reference';
import { RegistryClient } from '../oci/registry-client';
import { sleep } from '../oci/retry';

const POLL_MS = 200;

/** How the app container ended. */
export type Outcome = { readonly exitCode: number } | { readonly died: string };

/**
 * Waits for the wrapper in the app container: first for its PID (up to
 * `startTimeoutMs`), then for its exit code. A wrapper that disappears without
 * writing one (SIGKILL, OOM kill of the whole container) ends the wait at once.
 */
export async function awaitOutcome(state: string, startTimeoutMs: number, signal?: AbortSignal): Promise<Outcome> {
  const startDeadline = Date.now() + startTimeoutMs;
  let pid: number | undefined;
  for (;;) {
    const exitCode = await readNumber(state, StateFile.EXIT_CODE);
    if (exitCode !== undefined) return { exitCode };
    pid ??= await readNumber(state, StateFile.WRAPPER_PID);
    if (pid === undefined && Date.now() > startDeadline) {
      return { died: `the app container did not start within ${Math.round(startTimeoutMs / 1000)} s` };
    }
    if (pid !== undefined && !processExists(pid)) {
      // It may have written its exit code just before it ended.
      const last = await readNumber(state, StateFile.EXIT_CODE);
      if (last !== undefined) return { exitCode: last };
      return { died: 'the app container ended without reporting an exit code (killed by SIGKILL, the OOM killer or the node)' };
    }
    await sleep(POLL_MS, signal);
  }
}

export interface PushOutputOptions {
  readonly state: string;
  readonly dir: string;
  readonly to?: string;
  readonly failureTo?: string;
  readonly unpack: boolean;
  readonly annotations: Record<string, string>;
  readonly startTimeoutMs: number;
  readonly clientFor: (reference: Reference) => RegistryClient;
  readonly reporter: Reporter;
  /** Cancels waiting and pushing (SIGTERM). */
  readonly signal?: AbortSignal;
}

/**
 * What oras-push does: waits for the outcome, then pushes the output
 * directory's entries after exit code 0 (or to the failure reference after
 * another code, when one is set). Resolves to the process exit code.
 */
export async function pushOutput(options: PushOutputOptions): Promise<number> {
  const outcome = await awaitOutcome(options.state, options.startTimeoutMs, options.signal);
  if ('died' in outcome) {
    options.reporter.event('not-pushed', { message: `${outcome.died}; nothing is pushed` });
    return 1;
  }
  const target = outcome.exitCode === 0 ? options.to : options.failureTo;
  if (!target) {
    options.reporter.event('not-pushed', { exitCode: outcome.exitCode, message: `the command exited ${outcome.exitCode}; nothing is pushed` });
    return 0;
  }
  const result = await pushDirectory(options, parseReference(target), outcome.exitCode);
  options.reporter.event('output', { reference: target, digest: result.digest, exitCode: outcome.exitCode });
  return 0;
}

async function pushDirectory(options: PushOutputOptions, reference: Reference, exitCode: number): Promise<PushResult> {
  const entries = (await readdir(options.dir)).sort();
  const inputs = await readFile(join(options.state, StateFile.INPUTS), 'utf8')
    .then((text) => JSON.parse(text) as PulledInput[])
    .catch(() => [] as PulledInput[]);
  const client = options.clientFor(reference);
  try {
    return await push(client, reference, entries.map((path) => ({ path })), {
      cwd: options.dir,
      unpack: options.unpack,
      reporter: options.reporter,
      signal: options.signal,
      annotations: {
        $manifest: {
          ...options.annotations,
          [PROVENANCE.EXIT_CODE]: String(exitCode),
          [PROVENANCE.INPUTS]: JSON.stringify(inputs.map((i) => `${i.reference}@${i.digest}`)),
        },
      },
    });
  } catch (err) {
    const error = err as NodeJS.ErrnoException;
    if (error.code === 'EACCES') {
      throw new Error(`cannot read the output (${error.message}). oras-push runs as uid 65532: write output files readable by others (umask 022).`);
    }
    throw err;
  } finally {
    client.close();
  }
}
