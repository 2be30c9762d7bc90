import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Files the init container, the wrapper and oras-push share in the state directory. */
export const StateFile = {
  WRAPPER_PID: 'wrapper.pid',
  EXIT_CODE: 'exit-code',
  INPUTS: 'inputs.json',
} as const;

/** A whole decimal line, or undefined while the file is missing or still being written. */
export async function readNumber(state: string, file: string): Promise<number | undefined> {
  try {
    const match = /^(\d+)\n$/.exec(await readFile(join(state, file), 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Whether a process of the pod (shared process namespace) still exists. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** One input as pulled: the reference and the digest it resolved to. */
export interface PulledInput {
  readonly reference: string;
  readonly digest: string;
}
