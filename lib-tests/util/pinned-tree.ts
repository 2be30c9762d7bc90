import { chmodSync, lutimesSync, mkdirSync, symlinkSync, writeFileSync } from 'fs';
import { join } from 'path';

/** A seeded byte generator (xorshift32), so that the tree is the same on every machine. */
function bytes(seed: number, size: number, text: boolean): Buffer {
  const out = Buffer.alloc(size);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    out[i] = text ? 0x61 + (state % 20) : state & 0xff;
  }
  return out;
}

/**
 * A directory whose archive must never change: files of text and of random bytes (1 B to 1.5 MiB, so
 * gzip spans many blocks), many small files, a symlink, an empty directory, varied modes, and fixed
 * mtimes. Its tar and gzip digests are pinned in tests, so a faster writer cannot change the bytes of
 * existing artifacts (their digests and the memoization keys built on them).
 */
export function writePinnedTree(root: string): void {
  const TIME = 1_700_000_000;
  const dirs: string[] = [];
  const dir = (rel: string) => {
    mkdirSync(join(root, rel), { recursive: true });
    dirs.push(rel);
  };
  dir('');
  dir('empty');
  for (let d = 0; d < 8; d++) {
    dir(`d${d}`);
    for (let f = 0; f < 40; f++) {
      const size = 1 + ((d * 40 + f) * 997) % 7168;
      writeFileSync(join(root, `d${d}`, `f${f}.txt`), bytes(d * 1000 + f + 1, size, (f % 3) !== 0));
    }
  }
  writeFileSync(join(root, 'large.bin'), bytes(7, 1536 * 1024, false));
  writeFileSync(join(root, 'large.txt'), bytes(8, 1024 * 1024 + 123, true));
  writeFileSync(join(root, 'run.sh'), '#!/bin/sh\necho pinned\n');
  chmodSync(join(root, 'run.sh'), 0o755);
  chmodSync(join(root, 'd1', 'f1.txt'), 0o600);
  symlinkSync('d0/f0.txt', join(root, 'link'));
  for (const path of [join(root, 'link'), join(root, 'large.bin'), join(root, 'large.txt'), join(root, 'run.sh')]) lutimesSync(path, TIME, TIME);
  for (let d = 0; d < 8; d++) for (let f = 0; f < 40; f++) lutimesSync(join(root, `d${d}`, `f${f}.txt`), TIME + f, TIME + f);
  for (const rel of dirs.reverse()) lutimesSync(join(root, rel), TIME, TIME);
}
