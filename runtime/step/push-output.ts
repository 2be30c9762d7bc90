import { FSWatcher, watch } from 'node:fs';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdvanceOptions, blockDownstream, resumeDependents } from './advance';
import { memoTag } from './memo';
import { processExists, PulledInput, readJson, readLine, readNumber } from './state';
import { PROVENANCE } from '../../src/provenance';
import { StateFile, wrapperFile } from '../../src/wrapper';
import { TimeoutError } from '../oci/errors';
import { EMPTY_CONFIG } from '../oci/media-types';
import { walkTree } from '../oci/paths';
import { Reporter } from '../oci/progress';
import { push, PushResult } from '../oci/push';
import { parseReference, Reference } from '../oci/reference';
import { RegistryClient } from '../oci/registry-client';
import { waitFor } from '../oci/wait';

/** How often the state is read when nothing in it changes: notices a wrapper that died without a word. */
const POLL_MS = 200;

/**
 * How long oras-push waits for the registry to answer at all before it pushes: the registry may
 * still be starting, as when a workflow and its registry are applied at once.
 */
export const REGISTRY_WAIT_MS = 120_000;

/** How the app container ended. */
export type Outcome =
  /** `outputFailed`: why the wrapper could not copy the output out (placement 'copy'). */
  | { readonly exitCode: number; readonly outputFailed?: string }
  /** The wrapper ended without an exit code, or never started. */
  | { readonly died: string }
  /** The command did not run because its inputs are not there; the reason oras-pull or the wrapper gave. */
  | { readonly notRun: string }
  /** The command need not run: oras-pull stored the output made for its key (named here) under this run's tag. */
  | { readonly memoized: string };

/**
 * Wakes a waiting oras-push as soon as something in the state directory
 * changes (inotify works across the containers that share the emptyDir),
 * and after `ms` otherwise. Without inotify it only polls.
 */
class StateChanges {
  private readonly watcher?: FSWatcher;
  private changed = false;
  private wake?: () => void;

  constructor(state: string) {
    try {
      this.watcher = watch(state, () => {
        this.changed = true;
        this.wake?.();
      });
      this.watcher.on('error', () => this.watcher?.close());
    } catch {
      // No inotify (or no watches left): polling alone still sees everything.
    }
  }

  /** Resolves after `ms`, or at once when something changed since the last call. */
  public next(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const finish = (error?: unknown) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', aborted);
        this.wake = undefined;
        this.changed = false;
        if (error === undefined) resolve(); else reject(error);
      };
      const aborted = () => finish(signal!.reason);
      const timer = setTimeout(() => finish(), this.changed ? 0 : ms);
      this.wake = () => finish();
      signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  public close(): void {
    this.watcher?.close();
  }
}

/** What the state directory says now of the wrapper `id`: an outcome, or undefined while the command may still run. */
async function settled(state: string, id?: string): Promise<Outcome | undefined> {
  const memoized = await readLine(state, StateFile.MEMOIZED);
  if (memoized !== undefined) return { memoized };
  const exitCode = await readNumber(state, wrapperFile(StateFile.EXIT_CODE, id));
  if (exitCode !== undefined) return { exitCode, outputFailed: await readLine(state, wrapperFile(StateFile.OUTPUT_FAILED, id)) };
  const failed = await readLine(state, StateFile.PULL_FAILED);
  if (failed !== undefined) return { notRun: failed };
  return undefined;
}

/**
 * Waits for the wrapper in the app container: first for its PID (up to
 * `startTimeoutMs`), then for its exit code, woken by changes in the state
 * directory. A wrapper that disappears without writing one (SIGKILL, OOM kill
 * of the whole container) ends the wait within POLL_MS; inputs that could not
 * be pulled end it at once.
 */
export async function awaitOutcome(state: string, startTimeoutMs: number, signal?: AbortSignal, id?: string): Promise<Outcome> {
  const startDeadline = Date.now() + startTimeoutMs;
  const changes = new StateChanges(state);
  try {
    let pid: number | undefined;
    for (;;) {
      const outcome = await settled(state, id);
      if (outcome) return outcome;
      pid ??= await readNumber(state, wrapperFile(StateFile.WRAPPER_PID, id));
      if (pid === undefined && Date.now() > startDeadline) {
        return { died: `the app container did not start within ${Math.round(startTimeoutMs / 1000)} s` };
      }
      if (pid !== undefined && !processExists(pid)) {
        // It may have written its exit code just before it ended.
        return await settled(state, id)
          ?? { died: 'the app container ended without reporting an exit code (killed by SIGKILL, the OOM killer or the node)' };
      }
      await changes.next(POLL_MS, signal);
    }
  } finally {
    changes.close();
  }
}

/**
 * How several app containers ended, as one outcome: the first that died,
 * else a command that did not run, else the first non-zero exit code, else
 * an output that could not be copied, else success. Each message names its container.
 */
export async function awaitOutcomes(state: string, startTimeoutMs: number, launchers: readonly string[], signal?: AbortSignal): Promise<Outcome> {
  if (launchers.length === 0) return awaitOutcome(state, startTimeoutMs, signal);
  const outcomes = await Promise.all(launchers.map(async (id) => {
    const outcome = await awaitOutcome(state, startTimeoutMs, signal, id);
    const named = (text: string) => `container ${id}: ${text}`;
    if ('died' in outcome) return { died: named(outcome.died) };
    if ('notRun' in outcome || 'memoized' in outcome) return outcome;
    return { exitCode: outcome.exitCode, outputFailed: outcome.outputFailed && named(outcome.outputFailed) };
  }));
  return outcomes.find((o) => 'memoized' in o)
    ?? outcomes.find((o) => 'died' in o)
    ?? outcomes.find((o) => 'notRun' in o)
    ?? outcomes.find((o) => 'exitCode' in o && o.exitCode !== 0)
    ?? outcomes.find((o) => 'exitCode' in o && o.outputFailed !== undefined)
    ?? outcomes[0];
}

export interface PushOutputOptions {
  readonly state: string;
  /** The directories whose entries are pushed, merged (one per app container with placement 'copy'). */
  readonly dirs: readonly string[];
  /** The `--id` of each wrapper when the pod has several app containers; none for one. */
  readonly launchers?: readonly string[];
  readonly to?: string;
  readonly failureTo?: string;
  readonly unpack: boolean;
  readonly annotations: Record<string, string>;
  readonly startTimeoutMs: number;
  /** How long to wait for the registry to answer at all (default REGISTRY_WAIT_MS). */
  readonly registryWaitMs?: number;
  readonly clientFor: (reference: Reference) => RegistryClient;
  readonly reporter: Reporter;
  /** Cancels waiting and pushing (SIGTERM). */
  readonly signal?: AbortSignal;
  /** After exit code 0, also store the output under the memo tag oras-pull named in `memo.json`. */
  readonly memoize?: boolean;
  /** The Jobs to resume when the output exists, or to label blocked when it does not (see advance.ts). */
  readonly advance?: PushAdvance;
}

/** What oras-push needs to move a workflow on. */
export type PushAdvance = Omit<AdvanceOptions, 'clientFor' | 'reporter' | 'signal'>;

/**
 * What oras-push does: waits for the outcome, then pushes the output
 * directory's entries after exit code 0 (or to the failure reference after
 * another code, when one is set). Resolves to the process exit code.
 */
export async function pushOutput(options: PushOutputOptions): Promise<number> {
  const advance = options.advance;
  let ended: Ended;
  try {
    ended = await settle(options);
  } catch (err) {
    if (advance) {
      // The push error is what the pod ends with; a failure to label the Jobs downstream is reported beside it.
      await blockDownstream(advancing(options, advance), `oras-push failed: ${(err as Error).message}`)
        .catch((blockErr: Error) => options.reporter.event('not-blocked', { message: blockErr.message }));
    }
    throw err;
  }
  if (advance) {
    if (ended.output) await resumeDependents(advancing(options, advance));
    else await blockDownstream(advancing(options, advance), ended.reason);
  }
  return ended.code;
}

/** How oras-push ended: its exit code, and whether this run's output exists (pushed or memoized), else why not. */
type Ended = { readonly code: number; readonly output: true } | { readonly code: number; readonly output: false; readonly reason: string };

function advancing(options: PushOutputOptions, advance: PushAdvance): AdvanceOptions {
  return { ...advance, clientFor: options.clientFor, reporter: options.reporter, signal: options.signal };
}

async function settle(options: PushOutputOptions): Promise<Ended> {
  // Reach the registry while the command runs: the push after it then starts on a warm connection.
  const warm = new AbortController();
  const early = warmUp(options, AbortSignal.any([warm.signal, ...(options.signal ? [options.signal] : [])]));
  try {
    const outcome = await awaitOutcomes(options.state, options.startTimeoutMs, options.launchers ?? [], options.signal);
    if ('died' in outcome) {
      options.reporter.event('not-pushed', { message: `${outcome.died}; nothing is pushed` });
      return { code: 1, output: false, reason: outcome.died };
    }
    if ('notRun' in outcome) {
      options.reporter.event('not-pushed', { message: `the command did not run: ${outcome.notRun}; nothing is pushed` });
      return { code: 0, output: false, reason: `the command did not run: ${outcome.notRun}` };
    }
    if ('memoized' in outcome) {
      options.reporter.event('not-pushed', { message: `memoized: oras-pull stored the output made for these inputs (${outcome.memoized}); nothing to push` });
      return { code: 0, output: true };
    }
    const failed = { code: 0, output: false, reason: `the command exited ${outcome.exitCode}` } as const;
    const target = outcome.exitCode === 0 ? options.to : options.failureTo;
    if (!target) {
      options.reporter.event('not-pushed', { exitCode: outcome.exitCode, message: `the command exited ${outcome.exitCode}; nothing is pushed` });
      return failed;
    }
    if (outcome.outputFailed !== undefined) {
      options.reporter.event('not-pushed', { exitCode: outcome.exitCode, message: `${outcome.outputFailed}; nothing is pushed` });
      return { code: 1, output: false, reason: outcome.outputFailed };
    }
    const reference = parseReference(target);
    // The early check may have given up while the command ran; then the registry gets a wait of its own.
    const warmed = early && reference.registry === early.reference.registry && await early.answered === undefined ? early : undefined;
    const check = warmed ?? registryCheck(options, reference, options.signal);
    try {
      const result = await pushDirectory(options, reference, check, outcome.exitCode);
      options.reporter.event('output', { reference: target, digest: result.digest, exitCode: outcome.exitCode });
      return outcome.exitCode === 0 ? { code: 0, output: true } : failed;
    } finally {
      if (check !== early) check.client.close();
    }
  } finally {
    warm.abort();
    early?.client.close();
  }
}

/** The check of the registry pushed to after exit code 0; none when the settings are wrong (the push reports that). */
function warmUp(options: PushOutputOptions, signal: AbortSignal): RegistryCheck | undefined {
  const likely = options.to ?? options.failureTo;
  try {
    return likely ? registryCheck(options, parseReference(likely), signal) : undefined;
  } catch {
    return undefined;
  }
}

/** A client for a reference's registry, and the wait until that registry answers (settled, so never unhandled). */
interface RegistryCheck {
  readonly reference: Reference;
  readonly client: RegistryClient;
  readonly answered: Promise<Error | undefined>;
}

function registryCheck(options: PushOutputOptions, reference: Reference, signal?: AbortSignal): RegistryCheck {
  const client = options.clientFor(reference);
  const answered = waitFor((s) => client.hasBlob(reference.repository, EMPTY_CONFIG.digest, 'push', { signal: s }), {
    timeoutMs: options.registryWaitMs ?? REGISTRY_WAIT_MS,
    maxDelayMs: 2_000,
    onRetry: (message) => options.reporter.event('waiting', { reference: reference.text, message }),
    signal,
  }).then(() => undefined, (err: Error) => (err instanceof TimeoutError
    ? new Error(`the registry of ${reference.text} does not answer: ${err.message}`, { cause: err })
    : err));
  return { reference, client, answered };
}

/** Two app containers wrote the same file: their outputs cannot be merged without losing one. */
export class OutputConflict extends Error {
  public override readonly name = 'OutputConflict';
  constructor(public readonly path: string) {
    super(`more than one app container wrote "${path}"; the outputs are merged into one artifact, so give each container's files their own names`);
  }
}

/**
 * The directory to push and whether it is a merge to remove afterwards: the
 * one directory that has entries, or the union of several copied into a
 * scratch directory. A file that two of them hold is an OutputConflict.
 */
async function mergedOutput(dirs: readonly string[]): Promise<{ dir: string; scratch: boolean }> {
  const filled: string[] = [];
  for (const dir of dirs) if ((await readdir(dir)).length > 0) filled.push(dir);
  if (filled.length <= 1) return { dir: filled[0] ?? dirs[0], scratch: false };
  const seen = new Map<string, boolean>();
  for (const dir of filled) {
    for await (const { path, entry } of walkTree(dir)) {
      const isDir = entry.isDirectory();
      const before = seen.get(path);
      if (before !== undefined && !(before && isDir)) throw new OutputConflict(path);
      seen.set(path, isDir);
    }
  }
  const merged = await mkdtemp(join(tmpdir(), 'oras-output-'));
  for (const dir of filled) await cp(dir, merged, { recursive: true, force: false, errorOnExist: true, verbatimSymlinks: true });
  return { dir: merged, scratch: true };
}

/** Pushes the output with the check's client; the caller closes it. */
async function pushDirectory(options: PushOutputOptions, reference: Reference, check: RegistryCheck, exitCode: number): Promise<PushResult> {
  const output = await mergedOutput(options.dirs);
  try {
    return await pushEntries(options, reference, check, exitCode, output.dir);
  } finally {
    if (output.scratch) await rm(output.dir, { recursive: true, force: true });
  }
}

async function pushEntries(
  options: PushOutputOptions, reference: Reference, check: RegistryCheck, exitCode: number, dir: string,
): Promise<PushResult> {
  const entries = (await readdir(dir)).sort();
  const inputs = await readFile(join(options.state, StateFile.INPUTS), 'utf8')
    .then((text) => JSON.parse(text) as PulledInput[])
    .catch(() => [] as PulledInput[]);
  // Memoized only after success: a failed run's output must never be reused.
  const memo = options.memoize && exitCode === 0 ? await readJson<{ key: string }>(options.state, StateFile.MEMO) : undefined;
  try {
    const failed = await check.answered;
    if (failed) throw failed;
    return await push(check.client, reference, entries.map((path) => ({ path })), {
      cwd: dir,
      unpack: options.unpack,
      reporter: options.reporter,
      signal: options.signal,
      annotations: {
        $manifest: {
          ...options.annotations,
          [PROVENANCE.EXIT_CODE]: String(exitCode),
          [PROVENANCE.INPUTS]: JSON.stringify(inputs.map((i) => `${i.reference}@${i.digest}`)),
          ...(memo ? { [PROVENANCE.MEMO_KEY]: memo.key } : {}),
        },
      },
      alsoTags: memo ? [memoTag(memo.key)] : [],
    });
  } catch (err) {
    const error = err as NodeJS.ErrnoException;
    if (error.code === 'EACCES') {
      throw new Error(`cannot read the output (${error.message}). oras-push runs as uid 65532: write output files readable by others (umask 022).`);
    }
    throw err;
  }
}
