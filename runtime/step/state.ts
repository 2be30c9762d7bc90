import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** A state file's text, or undefined while it is missing. */
async function readStateFile(state: string, file: string): Promise<string | undefined> {
  try {
    return await readFile(join(state, file), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** A state file's JSON (written whole by writeStateFile), or undefined while it is missing. */
export async function readJson<T>(state: string, file: string): Promise<T | undefined> {
  const text = await readStateFile(state, file);
  return text === undefined ? undefined : JSON.parse(text) as T;
}

/** A whole decimal line, or undefined while the file is missing or still being written. */
export async function readNumber(state: string, file: string): Promise<number | undefined> {
  const match = /^(\d+)\n$/.exec(await readStateFile(state, file) ?? '');
  return match ? Number(match[1]) : undefined;
}

/** The first line of a state file, or undefined while it is missing or that line is still being written. */
export async function readLine(state: string, file: string): Promise<string | undefined> {
  const text = await readStateFile(state, file);
  const end = text?.indexOf('\n') ?? -1;
  return end >= 0 ? text!.slice(0, end) : undefined;
}

/** Writes a state file whole: under a temporary name first, so that a reader in another container never sees half of it. */
export async function writeStateFile(state: string, file: string, text: string): Promise<void> {
  const staged = join(state, `.${file}.${process.pid}`);
  await writeFile(staged, text);
  await rename(staged, join(state, file));
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
