import { Stats } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, rename, rm, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PathEscapeError } from './errors';
import { lstatOrUndefined } from './paths';

/**
 * A hidden directory inside the output where a pull writes everything first. Nothing appears under a
 * final name until every layer is verified; removing the staging directory undoes the rest.
 */
export class Staging {
  public static async create(out: string): Promise<Staging> {
    return new Staging(await mkdtemp(join(out, '.oras-pull-')));
  }

  private constructor(public readonly dir: string) {}

  public path(name: string): string {
    return join(this.dir, name);
  }

  public remove(): Promise<void> {
    return removeTree(this.dir);
  }
}

/**
 * `rm -rf` that also works as non-root on read-only directories (a layer may hold some): on EACCES
 * or EPERM it makes the directories writable and tries again.
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
    await makeWritable(path);
    await rm(path, { recursive: true, force: true });
  }
}

async function makeWritable(path: string): Promise<void> {
  const info = await lstatOrUndefined(path);
  if (!info?.isDirectory()) return;
  await chmod(path, 0o700);
  for (const name of await readdir(path)) await makeWritable(join(path, name));
}

/** Refuses what `oras pull` refuses: a directory over a file or a symlink, a file over a directory. */
export function checkPlace(isDirectory: boolean, existing: Stats | undefined, shown: string): void {
  if (!existing) return;
  if (!isDirectory) {
    if (existing.isDirectory()) throw new Error(`"${shown}" exists as a directory in the output directory; cannot replace it with a file`);
  } else if (existing.isSymbolicLink()) {
    throw new PathEscapeError(shown, `"${shown}" in the output directory is a symlink; refusing to unpack a directory layer through it`);
  } else if (!existing.isDirectory()) {
    throw new Error(`"${shown}" exists in the output directory and is not a directory; cannot unpack a directory layer there`);
  }
}

/** checkPlace for every entry of the staged tree `from` against `to`, before anything moves. */
export async function checkMerge(from: string, to: string, shown: string): Promise<void> {
  const [info, existing] = await Promise.all([lstat(from), lstatOrUndefined(to)]);
  checkPlace(info.isDirectory(), existing, shown);
  if (!info.isDirectory() || !existing) return;
  for (const name of await readdir(from)) await checkMerge(join(from, name), join(to, name), `${shown}/${name}`);
}

/**
 * Moves the staged tree `from` to `to` as `oras pull` unpacks a directory layer: what the layer holds
 * replaces what is there, everything else in `to` stays. A file simply replaces. Run checkMerge first.
 */
export async function mergeInto(from: string, to: string): Promise<void> {
  const [info, existing] = await Promise.all([lstat(from), lstatOrUndefined(to)]);
  if (!info.isDirectory()) {
    await mkdir(dirname(to), { recursive: true });
    await rename(from, to);
  } else if (!existing) {
    // A directory that moves to another parent must be writable (its ".." changes).
    await mkdir(dirname(to), { recursive: true });
    await chmod(from, 0o700);
    await rename(from, to);
    await restore(to, info);
  } else {
    // Entries leave a read-only staged directory only once it is writable (non-root). An existing
    // directory keeps its mode and takes the layer's times, as oras-go's MkdirAll and Chtimes do.
    await chmod(from, 0o700);
    for (const name of await readdir(from)) await mergeInto(join(from, name), join(to, name));
    await utimes(to, info.atime, info.mtime);
  }
}

async function restore(path: string, info: Stats): Promise<void> {
  await chmod(path, info.mode % 0o10000);
  await utimes(path, info.atime, info.mtime);
}
