import { randomBytes } from 'crypto';
import * as fs from 'fs';
import { dirname, join } from 'path';
import { craft, inPieces, makeWritable, packToFile, present, put, rejection, scratch } from './helpers';
import { InvalidTarError, PathEscapeError } from '../../../../runtime/oci/errors';
import { extractTar } from '../../../../runtime/oci/tar/extract';
import { tarHeader } from '../../../../runtime/oci/tar/format';
import { CraftEntry, craftTar, laterSymlinkEscape } from '../../../util/crafted-tar';
import { describeWithPeers } from '../../../util/peers';
import { describeTree } from '../../../util/tree';

describeWithPeers(['python3'], 'extractTar refuses archives that escape the output directory', () => {
  /**
   * Extracts a crafted archive into <case>/dest next to <case>/sentinel/secret.txt, and checks that nothing
   * was written outside dest whatever happened.
   */
  async function attempt(entries: (c: string) => CraftEntry[], options: { stripPrefix?: string; prepare?: (dest: string) => void } = {}) {
    const caseDir = scratch('unsafe');
    const sentinel = join(caseDir, 'sentinel');
    const dest = join(caseDir, 'dest');
    put(sentinel, 'secret.txt', 'untouched\n');
    fs.mkdirSync(dest);
    options.prepare?.(dest);
    const archive = join(caseDir, 'archive.tar');
    craft(archive, entries(caseDir));
    const input = fs.createReadStream(archive);
    const error = await rejection(extractTar(input, dest, { stripPrefix: options.stripPrefix }));
    expect(input.destroyed).toBe(true);
    expect(fs.readdirSync(caseDir).sort()).toEqual(['archive.tar', 'dest', 'sentinel']);
    expect(fs.readdirSync(sentinel)).toEqual(['secret.txt']);
    expect(fs.readFileSync(join(sentinel, 'secret.txt'), 'utf8')).toBe('untouched\n');
    return { error, dest };
  }

  const escapes = (name: string) => new RegExp(`^refusing tar entry "${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}": it would escape the output directory`);

  test.each([
    ['../evil', 'its path has a ".." component'],
    ['a/../../x', 'its path has a ".." component'],
    ['ok/../../../sentinel/x.txt', 'its path has a ".." component'],
  ])('the file name %j', async (name, why) => {
    const { error } = await attempt(() => [{ name, data: 'pwned' }]);
    expect(error.message).toMatch(escapes(name));
    expect(error.message).toContain(why);
  });

  test('an absolute file name', async () => {
    const { error } = await attempt((c) => [{ name: join(c, 'sentinel', 'abs.txt'), data: 'pwned' }]);
    expect(error.message).toMatch(/^refusing tar entry "\/.*\/sentinel\/abs.txt": it would escape the output directory \(its path is absolute\)$/);
  });

  test.each([
    ['esc', '../../etc/passwd'],
    ['esc', '../sentinel'],
    ['sub/deeper/esc', '../../../sentinel/secret.txt'],
    ['esc', '/etc/passwd'],
  ])('the symlink %j -> %j', async (name, linkname) => {
    const { error, dest } = await attempt(() => [
      { name, type: 'symlink', linkname },
      { name: `${name}/pwned.txt`, data: 'pwned' },
    ]);
    expect(error.message).toMatch(escapes(name));
    expect(error.message).toContain(`its symlink target "${linkname}"`);
    expect(present(join(dest, name))).toBe(false);
  });

  test('a ".." through a symlink to "." (lexically inside, really outside)', async () => {
    const { error } = await attempt(() => [
      { name: 'self', type: 'symlink', linkname: '.' },
      { name: 'x', type: 'symlink', linkname: 'self/..' },
    ]);
    expect(error.message).toMatch(escapes('x'));
  });

  test('a ".." after a name that does not exist yet (it could become a symlink later)', async () => {
    const { error } = await attempt(() => [
      { name: 'x', type: 'symlink', linkname: 'later/..' },
      { name: 'later', type: 'symlink', linkname: '.' },
    ]);
    expect(error.message).toMatch(escapes('x'));
  });

  test('a directory replaced by a symlink later in the archive', async () => {
    const { error } = await attempt(() => [
      { name: 'd', type: 'dir' },
      { name: 'x', type: 'symlink', linkname: 'd/..' },
      { name: 'd', type: 'symlink', linkname: '.' },
    ]);
    expect(error.message).toBe('cannot extract tar entry "d": a directory already exists at "d"');
  });

  test('a symlink that a later entry turns into an escape: links are checked in their final state', async () => {
    const { error, dest } = await attempt(() => laterSymlinkEscape('data'), { stripPrefix: 'data' });
    expect(error).toBeInstanceOf(PathEscapeError);
    expect(error.message).toMatch(escapes('data/l'));
    expect(error.message).toContain('once the archive is extracted, its symlink target');
    expect(fs.readlinkSync(join(dest, 'p'))).toBe('.');
  });

  test('writing through a symlink the archive created (even one that points inside)', async () => {
    const { error, dest } = await attempt(() => [
      { name: 'real', type: 'dir' },
      { name: 'lnk', type: 'symlink', linkname: 'real' },
      { name: 'lnk/file.txt', data: 'through' },
    ]);
    expect(error.message).toBe('refusing tar entry "lnk/file.txt": its parent "lnk" is a symlink, and writing through it could escape the output directory');
    expect(fs.readdirSync(join(dest, 'real'))).toEqual([]);
  });

  test('writing through a symlink that already existed in the destination', async () => {
    const { error } = await attempt(() => [{ name: 'pre/pwned.txt', data: 'pwned' }], {
      prepare: (dest) => fs.symlinkSync('../sentinel', join(dest, 'pre')),
    });
    expect(error.message).toMatch(/^refusing tar entry "pre\/pwned.txt": its parent "pre" is a symlink/);
  });

  test('a symlink whose target goes through an existing symlink that leads outside', async () => {
    const { error } = await attempt(() => [{ name: 'x', type: 'symlink', linkname: 'pre/secret.txt' }], {
      prepare: (dest) => fs.symlinkSync('../sentinel', join(dest, 'pre')),
    });
    expect(error.message).toMatch(escapes('x'));
  });

  test.each([
    ['../sentinel/secret.txt', 'is outside'],
    ['/etc/passwd', 'is outside'],
    ['never-extracted.txt', 'is not a regular file extracted earlier from this archive'],
    ['lnk', 'is not a regular file extracted earlier from this archive'],
  ])('a hard link to %j', async (linkname, why) => {
    const { error, dest } = await attempt(() => [
      { name: 'lnk', type: 'symlink', linkname: 'lnk-target' },
      { name: 'h', type: 'hardlink', linkname },
    ]);
    expect(error.message).toMatch(escapes('h'));
    expect(error.message).toContain(`its hard link target "${linkname}" ${why}`);
    expect(present(join(dest, 'h'))).toBe(false);
  });

  test('an entry outside stripPrefix', async () => {
    const { error } = await attempt(() => [{ name: 'data/', type: 'dir' }, { name: 'other/x.txt', data: 'x' }], { stripPrefix: 'data' });
    expect(error.message).toBe('refusing tar entry "other/x.txt": it is outside the directory "data" this archive must hold');
  });

  test('a file named like stripPrefix itself', async () => {
    const { error } = await attempt(() => [{ name: 'data', data: 'x' }], { stripPrefix: 'data' });
    expect(error.message).toBe('refusing tar entry "data": it names the output directory itself but is not a directory');
  });

  test.each([
    ['fifo', 'a named pipe (FIFO)'],
    ['chr', 'a character device'],
    ['blk', 'a block device'],
  ] as Array<['fifo' | 'chr' | 'blk', string]>)('a %s entry', async (type, what) => {
    const { error } = await attempt(() => [{ name: 'dev', type }]);
    expect(error.message).toBe(`refusing tar entry "dev": it is ${what}; only files, directories and links are extracted`);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Fuzzing
// ---------------------------------------------------------------------------------------------------------------

/** A small seeded generator (mulberry32), so that a failing case can be replayed with FUZZ_SEED. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Offsets of the header blocks of a well-formed archive (to re-sign them after a mutation). */
function headerOffsets(archive: Buffer): number[] {
  const offsets: number[] = [];
  for (let at = 0; at + BLOCK_SIZE <= archive.length;) {
    const block = archive.subarray(at, at + BLOCK_SIZE);
    if (block.every((b) => b === 0)) break;
    offsets.push(at);
    const size = parseInt(block.toString('latin1', 124, 136).replace(/[^0-7]/g, '') || '0', 8);
    at += BLOCK_SIZE + Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE;
  }
  return offsets;
}

const BLOCK_SIZE = 512;

/** Writes a valid checksum into the header block at `at`, so that a mutated header reaches the parser. */
function sign(archive: Buffer, at: number): void {
  if (at + BLOCK_SIZE > archive.length) return;
  archive.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = at; i < at + BLOCK_SIZE; i++) sum += archive[i];
  archive.write(`${sum.toString(8).padStart(6, '0')}\0 `, at + 148, 'latin1');
}

/** Where the kernel would land following `link` (relative to `root`'s real path), following symlinks that exist. */
function landing(link: string, hops = 40): string {
  let at = fs.realpathSync(dirname(link));
  const parts = fs.readlinkSync(link).split('/');
  if (parts[0] === '') at = '/';
  for (const [i, part] of parts.entries()) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      at = dirname(at);
      continue;
    }
    const next = join(at, part);
    const info = fs.lstatSync(next, { throwIfNoEntry: false });
    if (info?.isSymbolicLink() && hops > 0) {
      at = landing(next, hops - 1);
    } else if (!info) {
      return join(next, ...parts.slice(i + 1));
    } else {
      at = next;
    }
  }
  return at;
}

describeWithPeers(['python3'], 'extractTar under fuzzing: random and mutated archives', () => {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
  const next = random(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)];
  const int = (n: number) => Math.floor(next() * n);
  const NAMES = ['data/x', 'data/../x', '/etc/x', 'data/a/b', 'data/p', 'data/l', 'data', 'data/', 'other/x', 'data/p/x', `data/${'n'.repeat(300)}`, 'data/.', 'data/a/../../..'];
  const TYPES = '0125LKxgSV7D3460\0'.split('');
  /** name, mode, size, mtime, type, linkname, magic, prefix */
  const FIELD_OFFSETS = [0, 100, 124, 136, 156, 157, 257, 345];
  /** NUL, '.', '/', '7', '9', base-256 markers, anything */
  const ODD_BYTES = [0, 0x2e, 0x2f, 0x37, 0x39, 0x80, 0xff, 0x41];
  let seeds: Buffer[];

  beforeAll(async () => {
    const dir = scratch('fuzz-seed');
    const src = join(dir, 'src');
    put(src, 'a.txt', 'alpha\n');
    put(src, 'sub/b.txt', 'beta\n'.repeat(300));
    fs.symlinkSync('sub/b.txt', join(src, 'link'));
    seeds = [
      await packToFile(src, join(dir, 'ours.tar')),
      craftTar(laterSymlinkEscape('data', 3)),
      craftTar([
        { name: 'data/', type: 'dir' },
        { name: 'data/f', data: 'f' },
        { name: 'data/h', type: 'hardlink', linkname: 'data/f' },
        { name: `data/${'long/'.repeat(30)}x`, data: 'long' },
        { name: 'data/s', type: 'symlink', linkname: '../data/f' },
      ], { format: 'GNU_FORMAT' }),
      craftTar([{ name: 'data/p', data: 'x', pax: { path: 'data/../../pax', mtime: '-1.5' } }], { global: { comment: 'g' } }),
    ];
  });

  /** One input: random bytes, a random but signed header, or a seed with mutations (headers re-signed or not). */
  function input(): Buffer {
    const kind = int(4);
    if (kind === 0) return randomBytes(int(3000));
    if (kind === 1) {
      const header = tarHeader({ name: pick(NAMES), type: 'file', mode: int(0o10000), size: int(2000), mtime: int(2 ** 34) - 2 ** 33 });
      const out = Buffer.concat([header.subarray(header.length - BLOCK_SIZE), randomBytes(int(2500)), Buffer.alloc(int(2) * 1024)]);
      out[156] = pick(TYPES).charCodeAt(0);
      out.write(pick(NAMES), 157, 'utf8');
      sign(out, 0);
      return out;
    }
    const base = Buffer.from(pick(seeds));
    const headers = headerOffsets(base);
    for (let n = int(6) + 1; n > 0; n--) {
      const op = int(5);
      if (op === 0) base[int(base.length)] = int(256);
      else if (op === 1 && headers.length > 0) base[pick(headers) + pick(FIELD_OFFSETS) + int(8)] = pick(ODD_BYTES);
      else if (op === 2 && headers.length > 0) base.write(pick(NAMES), pick(headers) + pick([0, 157]), 'utf8');
      else if (op === 3 && headers.length > 0) base[pick(headers) + 156] = pick(TYPES).charCodeAt(0);
      else base.write(pick(['5 a=\n', '30 path=../../../x\n', '9 size=-1\n', `${int(99999)} `]), int(base.length), 'latin1');
    }
    if (kind === 2) headers.forEach((at) => sign(base, at));
    return next() < 0.2 ? base.subarray(0, int(base.length)) : base;
  }

  test('nothing lands outside, links stay inside, and every failure is a typed error, within a few seconds', async () => {
    const started = Date.now();
    let cases = 0;
    while (Date.now() - started < 3000 || cases < 50) {
      const data = input();
      const caseDir = scratch('fuzz');
      const dest = join(caseDir, 'dest');
      put(join(caseDir, 'sentinel'), 'secret.txt', 'untouched\n');
      const context = `seed ${seed}, case ${cases}: ${data.toString('base64')}`;
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<Error>((resolve) => { timer = setTimeout(() => resolve(new Error(`hung: ${context}`)), 5000); });
      const outcome = await Promise.race([extractTar(inPieces(data, 1 + int(700)), dest, { stripPrefix: next() < 0.7 ? 'data' : undefined }).then(() => undefined, (err: Error) => err), hung]);
      clearTimeout(timer);
      const typed = outcome === undefined || outcome instanceof InvalidTarError || outcome instanceof PathEscapeError
        || (typeof (outcome as NodeJS.ErrnoException).code === 'string' && !(outcome as NodeJS.ErrnoException).code!.startsWith('ERR_'));
      expect({ context, error: typed ? undefined : `${outcome?.name}: ${outcome?.message}` }).toEqual({ context, error: undefined });
      expect({ context, files: fs.readdirSync(caseDir).sort() }).toEqual({ context, files: fs.existsSync(dest) ? ['dest', 'sentinel'] : ['sentinel'] });
      expect(fs.readdirSync(join(caseDir, 'sentinel'))).toEqual(['secret.txt']);
      if (outcome === undefined) {
        const root = fs.realpathSync(dest);
        // Links are not followed: a link loop is a valid archive.
        for (const [entry, kind] of Object.entries(describeTree(dest))) {
          if (!kind.startsWith('link:')) continue;
          const lands = landing(join(dest, entry));
          expect({ context, link: entry, inside: lands === root || lands.startsWith(`${root}/`) }).toEqual({ context, link: entry, inside: true });
        }
      }
      makeWritable(caseDir);
      fs.rmSync(caseDir, { recursive: true, force: true });
      cases += 1;
    }
  }, 30_000);
});
