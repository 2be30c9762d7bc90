import { spawn } from 'child_process';

export interface RunAsyncOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Run as this user and group id (the tests run as root). */
  readonly user?: number;
  /** SIGKILL after this long. Default 60 s. */
  readonly timeoutMs?: number;
}

export interface RunAsyncResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout and stderr as they came, interleaved. */
  readonly output: string;
}

/**
 * Runs a program without blocking the event loop, so that a server in the test process (a
 * RogueRegistry, a TokenIssuer) keeps answering it. Never rejects on a non-zero exit.
 */
export function runAsync(file: string, args: string[], options: RunAsyncOptions = {}): Promise<RunAsyncResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: options.cwd, env: options.env ?? process.env, uid: options.user, gid: options.user, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let output = '';
    child.stdout.on('data', (d) => { stdout += d; output += d; });
    child.stderr.on('data', (d) => { stderr += d; output += d; });
    const timeoutMs = options.timeoutMs ?? 60_000;
    const timer = setTimeout(() => {
      const note = `\n(killed after ${timeoutMs} ms)`;
      stderr += note;
      output += note;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr, output }); });
  });
}
