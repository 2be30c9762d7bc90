import { withDeadline } from '../oci/deadline';
import { RegistryError, TimeoutError } from '../oci/errors';
import { Reporter } from '../oci/progress';
import { parseReference, Reference } from '../oci/reference';
import { RegistryClient } from '../oci/registry-client';
import { retry } from '../oci/retry';

/** A Job that waits (suspended) for this step, and every in-workflow input it reads. */
export interface Dependent {
  readonly job: string;
  readonly needs: readonly string[];
}

/** The Kubernetes calls advancing needs (runtime/kube/client.ts). */
export interface JobPatcher {
  patchJob(name: string, patch: Record<string, unknown>): Promise<'patched' | 'missing'>;
}

export interface AdvanceOptions {
  /** This step's name, for the blocked label. */
  readonly step: string;
  readonly resume: readonly Dependent[];
  /** Every Job downstream of this step. */
  readonly block: readonly string[];
  readonly jobs: JobPatcher;
  readonly clientFor: (reference: Reference) => RegistryClient;
  readonly reporter: Reporter;
  /** How long a Job that does not exist yet (applied after its producer ended) is waited for. Default 5 minutes. */
  readonly missingJobWaitMs?: number;
  readonly signal?: AbortSignal;
}

/** The label a blocked Job carries: the step that failed. `kubectl get jobs -L oras.land/blocked-by` shows it. */
export const BLOCKED_LABEL = 'oras.land/blocked-by';
export const BLOCKED_REASON = 'oras.land/blocked-reason';

/** A Job not created yet, while kubectl apply still runs. */
class JobMissing extends Error {
  constructor(public readonly job: string) {
    super(`Job ${job} does not exist (yet)`);
  }
}

/**
 * After this step's output exists (pushed or memoized): resumes each
 * dependent whose inputs now all exist in the registry. The decision rests
 * on the registry, not on who finished first, and un-suspending is an
 * idempotent patch, so a fan-in is resumed by its last producer to finish
 * whatever the order (two that finish together both patch, to one effect).
 */
export async function resumeDependents(options: AdvanceOptions): Promise<void> {
  for (const dependent of options.resume) {
    const missing = await missingInputs(options, dependent);
    if (missing.length > 0) {
      options.reporter.event('not-resumed', { job: dependent.job, message: `still waiting for ${missing.join(', ')}; the producer of the last resumes it` });
      continue;
    }
    await patchWhenThere(options, dependent.job, { spec: { suspend: false } });
    options.reporter.event('resumed', { job: dependent.job });
  }
}

/**
 * After this step failed: labels every Job downstream as blocked by it, with
 * the reason, and leaves them suspended: they never start, and `kubectl get
 * jobs -L oras.land/blocked-by` says why.
 */
export async function blockDownstream(options: AdvanceOptions, reason: string): Promise<void> {
  const patch = { metadata: { labels: { [BLOCKED_LABEL]: options.step }, annotations: { [BLOCKED_REASON]: reason.slice(0, 1024) } } };
  for (const job of options.block) {
    await patchWhenThere(options, job, patch);
    options.reporter.event('blocked', { job, by: options.step });
  }
}

/** The inputs of `dependent` that the registry does not have yet. */
async function missingInputs(options: AdvanceOptions, dependent: Dependent): Promise<string[]> {
  const missing: string[] = [];
  for (const text of dependent.needs) {
    const reference = parseReference(text);
    const client = options.clientFor(reference);
    try {
      await client.resolve(reference.repository, reference.manifestReference, { signal: options.signal });
    } catch (err) {
      if (!(err instanceof RegistryError && err.status === 404)) throw err;
      missing.push(text);
    } finally {
      client.close();
    }
  }
  return missing;
}

/** Patches a Job, waiting (up to missingJobWaitMs) for one that does not exist yet: a workflow still being applied. */
async function patchWhenThere(options: AdvanceOptions, job: string, patch: Record<string, unknown>): Promise<void> {
  const waitMs = options.missingJobWaitMs ?? 300_000;
  try {
    await withDeadline(`waiting for Job ${job}`, { timeoutMs: waitMs, signal: options.signal }, (signal) => retry(async () => {
      if (await options.jobs.patchJob(job, patch) === 'missing') throw new JobMissing(job);
    }, {
      policy: { attempts: Infinity, baseMs: 500, maxMs: 2000 },
      retryable: (err) => err instanceof JobMissing,
      signal,
    }));
  } catch (err) {
    if (err instanceof TimeoutError && !options.signal?.aborted) {
      throw new Error(`${new JobMissing(job).message} after ${Math.round(waitMs / 1000)} s; apply the whole workflow in one kubectl apply`);
    }
    throw err;
  }
}
