import { ChildProcess, spawn } from 'child_process';
import { closeSync, openSync, readSync, statSync } from 'fs';

/** A long-running peer process whose output the tests keep for error messages. */
export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  /** Everything it printed so far (the tail when long). */
  readonly output: () => string;
}

export interface StartChildOptions {
  /** Default: PATH and HOME only. */
  readonly env?: NodeJS.ProcessEnv;
  /** Write everything it prints to this file (appending) instead of through a pipe. */
  readonly logFile?: string;
}

/**
 * Spawns `binary`, keeping the tail of its stdout and stderr. With `logFile`,
 * both go straight to the file: a child whose output passes through this
 * process would block once the pipe is full, whenever the tests block the
 * event loop (spawnSync), and a blocked kubelet stops the whole node.
 */
export function startChild(name: string, binary: string, args: string[], options: StartChildOptions = {}): Child {
  const env = options.env ?? { PATH: process.env.PATH, HOME: process.env.HOME };
  if (options.logFile) {
    const logFile = options.logFile;
    const fd = openSync(logFile, 'a');
    const child = spawn(binary, args, { env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    return { name, process: child, output: () => tail(logFile, 1_000_000) };
  }
  let output = '';
  const child = spawn(binary, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (d: Buffer) => {
    output += d.toString();
    // Keep the tail only: Kubernetes components are chatty.
    if (output.length > 1_000_000) output = output.slice(-500_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return { name, process: child, output: () => output };
}

/** The last `bytes` of a file, or '' when it cannot be read. */
function tail(file: string, bytes: number): string {
  try {
    const size = statSync(file).size;
    const fd = openSync(file, 'r');
    try {
      const buffer = Buffer.alloc(Math.min(size, bytes));
      readSync(fd, buffer, 0, buffer.length, size - buffer.length);
      return buffer.toString();
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}

export function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (!running(child)) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => { if (running(child)) child.kill('SIGKILL'); }, graceMs);
  await exited;
  clearTimeout(timer);
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `probe` until it returns true, failing early when a child exits (one
 * child: its output is in the error; several: the caller reports theirs).
 */
export async function waitForChild(
  children: Child | Child[], what: string, deadline: number, probe: () => Promise<boolean> | boolean,
): Promise<void> {
  const watched = Array.isArray(children) ? children : [children];
  const output = () => (watched.length === 1 ? `:\n${watched[0].output().slice(-20_000)}` : '');
  let last = '';
  while (Date.now() < deadline) {
    const ended = watched.find((c) => !running(c.process));
    if (ended) {
      throw new Error(`${ended.name} exited (${ended.process.exitCode ?? ended.process.signalCode}) before ${what}:\n${ended.output().slice(-20_000)}`);
    }
    try {
      if (await probe()) return;
    } catch (err) {
      last = String(err);
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last})` : ''}${output()}`);
}
