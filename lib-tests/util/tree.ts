import { createHash } from 'crypto';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'fs';
import { dirname, join } from 'path';

/** A description of one entry: `file:<mode>:<size>:<sha256 of the content>`, `dir:<mode>`, or `link:<target>`. */
export function describeTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string, prefix: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const rel = prefix ? `${prefix}/${name}` : name;
      const info = lstatSync(path);
      if (info.isSymbolicLink()) {
        out[rel] = `link:${readlinkSync(path)}`;
      } else if (info.isDirectory()) {
        out[rel] = `dir:${(info.mode & 0o777).toString(8)}`;
        walk(path, rel);
      } else {
        const content = readFileSync(path);
        out[rel] = `file:${(info.mode & 0o777).toString(8)}:${content.length}:${createHash('sha256').update(content).digest('hex')}`;
      }
    }
  };
  walk(root, '');
  return out;
}

function write(path: string, content: string | Buffer, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  chmodSync(path, mode);
}

/**
 * The content matrix the interop tests push and pull: single and several
 * files, nested folders, symlinks, unicode names, empty files and exec bits.
 */
export function buildTree(root: string): { files: string[]; dirs: string[] } {
  write(join(root, 'hello.txt'), 'hello world\n');
  write(join(root, 'empty.bin'), '');
  write(join(root, 'run.sh'), '#!/bin/sh\necho run\n', 0o755);
  write(join(root, 'naïve ünïcode – 日本語.txt'), 'unicode name\n');
  const data = join(root, 'data');
  write(join(data, 'a.txt'), 'a\n');
  write(join(data, 'nested', 'deeper', 'b.csv'), 'x,y\n1,2\n');
  write(join(data, 'nested', 'tool'), '#!/bin/sh\n', 0o755);
  write(join(data, 'empty'), '');
  write(join(data, 'données', 'été.txt'), 'accents\n');
  write(join(data, 'long', 'x'.repeat(120), 'y'.repeat(120) + '.txt'), 'long path\n');
  write(join(data, 'random.bin'), Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7919) % 251)));
  mkdirSync(join(data, 'empty-dir'));
  symlinkSync('a.txt', join(data, 'link-to-a'));
  symlinkSync('nested/deeper', join(data, 'link-to-dir'));
  return { files: ['hello.txt', 'empty.bin', 'run.sh', 'naïve ünïcode – 日本語.txt'], dirs: ['data'] };
}
