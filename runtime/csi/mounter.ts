import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The mounts of this namespace: mount point -> per-mount options (octal escapes of mountinfo decoded). */
async function mounts(): Promise<Map<string, string[]>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const decode = (value: string) => value.replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)));
  return new Map(text.split('\n').filter(Boolean).map((line) => {
    const fields = line.split(' ');
    return [decode(fields[4]), fields[5].split(',')];
  }));
}

export async function isMountPoint(path: string): Promise<boolean> {
  return (await mounts()).has(path);
}

/**
 * Bind-mounts `source` on `target` read-only. util-linux mount binds and
 * remounts read-only in one call; the result is checked, and remounted when
 * a mount program did not apply "ro".
 */
export async function bindReadOnly(source: string, target: string): Promise<void> {
  await run('mount', ['-o', 'bind,ro', source, target]);
  if ((await mounts()).get(target)?.includes('ro')) return;
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
