import { Dirent, Stats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { isAbsolute, join, posix, relative, sep } from 'node:path';
import { PathEscapeError } from './errors';

/**
 * The layer title for a path given on the command line: relative, '/'-separated,
 * without './' and never climbing out with '..'.
 */
export function titleForPath(path: string): string {
  const normalized = posix.normalize(path.split(sep).join('/')).replace(/\/+$/, '');
  if (isAbsolute(path) || normalized.startsWith('/')) {
    throw new Error(`"${path}" is an absolute path. Run from its parent directory and name it relatively, so that pulling it cannot write outside the output directory.`);
  }
  if (normalized === '..' || normalized.startsWith('../') || normalized === '.' || normalized === '') {
    throw new Error(`"${path}" is outside the current directory. Run from a directory that contains it and name it relatively.`);
  }
  return normalized;
}

/**
 * Checks that a layer title names a path inside the output directory:
 * relative, no '..' component, no empty or NUL parts. Throws naming the title.
 */
export function assertSafeTitle(title: string): void {
  const parts = title.split('/');
  const bad = title === '' || title.includes('\0') || title.includes('\\') || title.startsWith('/')
    || parts.some((p) => p === '..' || p === '.' || p === '');
  if (bad) {
    throw new PathEscapeError(title, `layer title "${title}" would escape the output directory (absolute, "..", empty or "\\" parts); refusing to pull it`);
  }
}

/**
 * Refuses a target whose existing parent directories (below `root`) include a
 * symlink: writing through it could land outside `root`.
 */
export async function assertNoSymlinkParents(root: string, target: string): Promise<void> {
  const rel = relative(root, target);
  if (rel.startsWith('..') || isAbsolute(rel)) throw new PathEscapeError(target, `"${target}" is outside "${root}"`);
  const parts = rel.split(sep).slice(0, -1);
  let current = root;
  for (const part of parts) {
    current = join(current, part);
    const info = await lstatOrUndefined(current);
    if (!info) return;
    if (info.isSymbolicLink()) throw new PathEscapeError(rel, `"${relative(root, current)}" in the output directory is a symlink; refusing to write "${rel}" through it`);
    if (!info.isDirectory()) throw new Error(`"${relative(root, current)}" in the output directory is not a directory; cannot write "${rel}" under it`);
  }
}

/** lstat, or undefined when nothing is there. */
export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Every entry under `dir`, parents before their children, with its path
 * relative to `dir` ("/"-separated). Symbolic links are listed, not followed
 * (Node 20's recursive readdir follows them into loops).
 */
export async function* walkTree(dir: string, prefix = ''): AsyncGenerator<{ path: string; entry: Dirent }> {
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    yield { path, entry };
    if (entry.isDirectory()) yield* walkTree(dir, path);
  }
}
