import { execFile } from 'node:child_process';
import { readFile, realpath } from 'node:fs/promises';
import { posix } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One line of /proc/self/mountinfo. */
interface MountInfo {
  /** major:minor of the filesystem. */
  readonly device: string;
  /** The path within that filesystem that the mount shows (a bind mount's source). */
  readonly root: string;
  readonly point: string;
  readonly options: string[];
}

/** The mounts of this namespace in mount order (octal escapes of mountinfo decoded). */
async function mountTable(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const decode = (value: string) => value.replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)));
  return text.split('\n').filter(Boolean).map((line) => {
    const fields = line.split(' ');
    return { device: fields[2], root: decode(fields[3]), point: decode(fields[4]), options: fields[5].split(',') };
  });
}

/** The topmost mount at `path`: the last one mounted there. */
function topAt(table: MountInfo[], path: string): MountInfo | undefined {
  return table.filter((m) => m.point === path).pop();
}

export async function isMountPoint(path: string): Promise<boolean> {
  return topAt(await mountTable(), path) !== undefined;
}

/**
 * Whether the topmost mount at `target` is a bind mount of the directory
 * `source`: the same filesystem, showing the same path within it.
 */
export async function isBindMountOf(target: string, source: string): Promise<boolean> {
  const table = await mountTable();
  const top = topAt(table, target);
  if (!top) return false;
  // A source removed while mounted shows as "<path>//deleted".
  const real = await realpath(source).catch(() => source);
  const inside = (m: MountInfo) => m.point === '/' || real === m.point || real.startsWith(`${m.point}/`);
  // The mount that holds `source`: the deepest mount point above it, the last mounted among equals.
  const holder = table.filter(inside).reduce<MountInfo | undefined>(
    (best, m) => (!best || m.point.length >= best.point.length ? m : best), undefined);
  const root = holder && posix.join(holder.root, posix.relative(holder.point, real));
  return top.device === holder?.device && (top.root === root || top.root === `${root}//deleted`);
}

/**
 * Bind-mounts `source` on `target` read-only. util-linux mount binds and
 * remounts read-only in one call; the result is checked, and remounted when
 * a mount program did not apply "ro". `--` ends the options: no path is read as one.
 */
export async function bindReadOnly(source: string, target: string): Promise<void> {
  await run('mount', ['-o', 'bind,ro', '--', source, target]);
  if (topAt(await mountTable(), target)?.options.includes('ro')) return;
  try {
    await run('mount', ['-o', 'remount,bind,ro', '--', target]);
  } catch (err) {
    await unmount(target).catch(() => undefined);
    throw err;
  }
}

export async function unmount(target: string): Promise<void> {
  await run('umount', ['--', target]);
}
