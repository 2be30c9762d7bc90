import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Mount points of this mount namespace (octal escapes of mountinfo decoded). */
export async function mountPoints(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return new Set(text.split('\n').filter(Boolean).map((line) => line.split(' ')[4].replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)))));
}

export async function isMountPoint(path: string): Promise<boolean> {
  return (await mountPoints()).has(path);
}

/** Bind-mounts `source` on `target` read-only: a bind, then a read-only remount (a bind alone ignores ro). */
export async function bindReadOnly(source: string, target: string): Promise<void> {
  await run('mount', ['--bind', source, target]);
  try {
    await run('mount', ['-o', 'remount,bind,ro', target]);
  } catch (err) {
    await run('umount', [target]).catch(() => undefined);
    throw err;
  }
}

export async function unmount(target: string): Promise<void> {
  await run('umount', [target]);
}
