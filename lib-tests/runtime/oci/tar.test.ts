import { createHash, Hash, randomBytes } from 'crypto';
import * as fs from 'fs';
import { createServer } from 'net';
import { tmpdir } from 'os';
import { dirname, join } from 'path';
import { Readable, Transform } from 'stream';
import { pipeline } from 'stream/promises';
import { createGunzip, createGzip } from 'zlib';
import { InvalidTarError, PathEscapeError } from '../../../runtime/oci/errors';
import { extractTar, ExtractResult, packDirectory, parsePaxRecords, paxRecord, tarDirectory, tarHeader } from '../../../runtime/oci/tar';
import { CraftEntry, CraftOptions, craftTar, laterSymlinkEscape } from '../../util/crafted-tar';
import { describeWithPeers, requirePeer, run } from '../../util/peers';
import { describeTree } from '../../util/tree';

const BASE = fs.mkdtempSync(join(tmpdir(), 'cdk8s-oras-tar-'));
afterAll(() => {
  makeWritable(BASE);
  fs.rmSync(BASE, { recursive: true, force: true });
});

/** Read-only directories in the trees would stop a non-root rmSync. */
function makeWritable(dir: string): void {
  fs.chmodSync(dir, 0o755);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) makeWritable(join(dir, entry.name));
  }
}

/** Whether anything, even a dangling symlink, is at `path`. */
const present = (path: string) => fs.lstatSync(path, { throwIfNoEntry: false }) !== undefined;

let scratchCount = 0;
/** A fresh, empty directory for one test. */
function scratch(label: string): string {
  scratchCount += 1;
  const dir = join(BASE, `${scratchCount}-${label}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

// ---------------------------------------------------------------------------------------------------------------
// The test tree and how trees are compared
// ---------------------------------------------------------------------------------------------------------------

/** How much of the tree a format can hold: v7 has 99-byte names, ustar 255-byte split names, no unicode. */
type TreeLevel = 'full' | 'ustar' | 'v7';

const DEEP = ['deep', ...Array.from({ length: 5 }, (_, i) => `segment-${i}-${'x'.repeat(50)}`), 'file.txt'].join('/');
const SPLIT = `split/${'p'.repeat(90)}/${'q'.repeat(40)}.txt`;
const LONG_NAME = `${'l'.repeat(120)}.txt`;
const BOUNDARY_LENGTHS = Array.from({ length: 11 }, (_, i) => 66 + i);

function put(root: string, rel: string, content: string | Buffer, mode = 0o644): void {
  const path = join(root, rel);
  fs.mkdirSync(dirname(path), { recursive: true });
  fs.writeFileSync(path, content);
  fs.chmodSync(path, mode);
}

/** Files, an empty file and directory, modes, relative symlinks to a file and a directory, a hard link, and (full) unicode and long names. */
function buildTree(root: string, level: TreeLevel = 'full'): void {
  fs.mkdirSync(root, { recursive: true });
  put(root, 'nested/a/b/c.txt', 'deep content\n');
  put(root, 'nested/a/sibling.txt', 'sibling\n');
  put(root, 'empty.txt', '');
  fs.mkdirSync(join(root, 'empty-dir'));
  put(root, 'run.sh', '#!/bin/sh\necho hi\n', 0o755);
  put(root, 'private.txt', 'secret\n', 0o600);
  put(root, "with space & 'quote'.txt", 'odd name\n');
  fs.symlinkSync('run.sh', join(root, 'link-to-file'));
  fs.symlinkSync('nested/a', join(root, 'link-to-dir'));
  fs.symlinkSync('../../run.sh', join(root, 'nested/a/up'));
  fs.linkSync(join(root, 'nested/a/sibling.txt'), join(root, 'hard-link.txt'));
  put(root, 'order/a/x', 'x\n');
  put(root, 'order/a.txt', 'a\n');
  put(root, 'order/B', 'B\n');
  put(root, 'order/z', 'z\n');
  put(root, 'read-only/inside.txt', 'inside a read-only directory\n', 0o444);
  fs.chmodSync(join(root, 'read-only'), 0o555);
  if (level !== 'v7') put(root, SPLIT, 'fits the ustar prefix and name fields\n');
  if (level === 'full') addUnicodeAndLongNames(root);
  wholeSecondTimes(root);
}

function addUnicodeAndLongNames(root: string): void {
  put(root, 'données/naïve-ü.txt', 'unicode\n');
  put(root, '日本語.txt', 'nihongo\n');
  put(root, 'order/é', 'e acute\n');
  put(root, LONG_NAME, 'a name longer than 100 bytes\n');
  put(root, DEEP, 'a path longer than 255 bytes\n');
  fs.symlinkSync(DEEP, join(root, 'long-link'));
  fs.symlinkSync('日本語.txt', join(root, 'link-unicode'));
  for (const k of BOUNDARY_LENGTHS) put(root, `pax-boundary/ü${'a'.repeat(k)}`, `${k}\n`);
}

/**
 * Gives every entry a whole-second mtime, deepest first. Tar headers hold whole seconds, and GNU tar
 * --diff compares PAX entries to the nanosecond.
 */
function wholeSecondTimes(path: string): void {
  const info = fs.lstatSync(path);
  if (info.isDirectory()) for (const child of fs.readdirSync(path)) wholeSecondTimes(join(path, child));
  const time = Math.floor(info.mtimeMs / 1000) - 3600;
  fs.lutimesSync(path, time, time);
}

/** One line per entry: type, permission bits, mtime (seconds), content digest or link target. */
function snapshot(root: string, options: { mtimes?: boolean } = {}): string[] {
  const lines: string[] = [];
  const visit = (rel: string): void => {
    const path = rel === '' ? root : join(root, rel);
    const info = fs.lstatSync(path);
    const mode = (info.mode % 0o1000).toString(8);
    const mtime = options.mtimes === false ? '' : ` ${Math.floor(info.mtimeMs / 1000)}`;
    if (info.isSymbolicLink()) {
      lines.push(`${rel} -> ${fs.readlinkSync(path)}`);
    } else if (info.isFile()) {
      lines.push(`${rel} file ${mode}${mtime} ${sha256(fs.readFileSync(path))}`);
    } else if (info.isDirectory()) {
      lines.push(`${rel || '.'}/ dir ${mode}${mtime}`);
      for (const child of fs.readdirSync(path).sort()) visit(rel === '' ? child : `${rel}/${child}`);
    } else {
      lines.push(`${rel} other`);
    }
  };
  visit('');
  return lines;
}

// ---------------------------------------------------------------------------------------------------------------
// Real programs
// ---------------------------------------------------------------------------------------------------------------

function python(script: string, args: string[], input?: string): string {
  const result = run(requirePeer('python3'), ['-c', script, ...args], { input });
  if (result.status !== 0) throw new Error(`python3 failed (${result.status}):\n${result.output}`);
  return result.stdout;
}

function gnuTar(args: string[]): { stdout: string; stderr: string } {
  const result = run(requirePeer('tar'), args);
  if (result.status !== 0) throw new Error(`tar ${args.join(' ')} failed (${result.status}):\n${result.output}`);
  return result;
}

const PY_LIST = `
import json, sys, tarfile
data = open(sys.argv[1], 'rb').read()
members, end = [], 0
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        header = m.offset_data - 512
        members.append({'name': m.name, 'type': m.type.decode('latin1'), 'mode': m.mode, 'uid': m.uid, 'gid': m.gid,
                        'uname': m.uname, 'gname': m.gname, 'size': m.size, 'linkname': m.linkname, 'pax': m.pax_headers,
                        'magic': data[header + 257:header + 265].decode('latin1')})
        end = max(end, m.offset_data + (m.size + 511) // 512 * 512)
print(json.dumps({'members': members, 'end': end, 'length': len(data)}))
`;

const PY_EXTRACT = `
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    t.extractall(sys.argv[2], filter='fully_trusted')
`;

const PY_CREATE = `
import sys, tarfile
with tarfile.open(sys.argv[1], 'w', format=getattr(tarfile, sys.argv[3])) as t:
    t.add(sys.argv[2], arcname='data')
`;

function craft(file: string, entries: CraftEntry[], options: CraftOptions = {}): void {
  fs.writeFileSync(file, craftTar(entries, options));
}

interface Listing {
  members: Array<{
    name: string;
    type: string;
    mode: number;
    uid: number;
    gid: number;
    uname: string;
    gname: string;
    size: number;
    linkname: string;
    pax: Record<string, string>;
    magic: string;
  }>;
  end: number;
  length: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Our writer and reader
// ---------------------------------------------------------------------------------------------------------------

async function packToFile(src: string, file: string): Promise<Buffer> {
  await packDirectory(src, 'data', fs.createWriteStream(file));
  return fs.readFileSync(file);
}

async function extractFile(file: string, dest: string, options: { stripPrefix?: string } = { stripPrefix: 'data' }): Promise<ExtractResult> {
  return extractTar(fs.createReadStream(file), dest, options);
}

/** Feeds `data` in pieces of `size` bytes, to exercise every chunk boundary. */
function inPieces(data: Buffer, size: number): Readable {
  const pieces: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) pieces.push(data.subarray(at, at + size));
  return Readable.from(pieces);
}

function hashing(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection, but the promise resolved');
}

/** A source tree under <dir>/tree/data (GNU tar needs the directory to be called "data"). */
function sourceTree(dir: string, level: TreeLevel = 'full'): string {
  const src = join(dir, 'tree', 'data');
  buildTree(src, level);
  return src;
}

// ---------------------------------------------------------------------------------------------------------------
// Writer -> GNU tar and Python
// ---------------------------------------------------------------------------------------------------------------

describeWithPeers(['tar', 'python3'], 'tarDirectory: GNU tar and Python read what we write', () => {
  let dir: string;
  let src: string;
  let archive: string;
  let bytes: Buffer;
  let listing: Listing;

  beforeAll(async () => {
    dir = scratch('writer');
    src = sourceTree(dir);
    archive = join(dir, 'ours.tar');
    bytes = await packToFile(src, archive);
    listing = JSON.parse(python(PY_LIST, [archive]));
  });

  test('GNU tar lists it without a warning and finds no difference with the source (tar --diff)', () => {
    expect(gnuTar(['-tvf', archive]).stderr).toBe('');
    // --diff also compares owners with the archive's uid/gid 0, which only holds when the tests run as root.
    if (process.getuid?.() === 0) expect(gnuTar(['--diff', '-f', archive, '-C', dirname(src)]).stdout).toBe('');
  });

  test('GNU tar extracts the same tree: content, modes, mtimes, symlink targets', () => {
    const out = scratch('gnu-extract');
    gnuTar(['-xpf', archive, '-C', out]);
    expect(snapshot(join(out, 'data'))).toEqual(snapshot(src));
  });

  test('Python tarfile extracts the same tree', () => {
    const out = scratch('python-extract');
    python(PY_EXTRACT, [archive, out]);
    expect(snapshot(join(out, 'data'))).toEqual(snapshot(src));
  });

  test('ends with exactly two zero blocks after the last entry, and nothing else', () => {
    expect(bytes.length % 512).toBe(0);
    expect(listing.length).toBe(bytes.length);
    expect(listing.end).toBe(bytes.length - 1024);
    expect(bytes.subarray(bytes.length - 1024).every((b) => b === 0)).toBe(true);
  });

  test('USTAR headers with uid/gid 0 and no owner names; PAX only where USTAR cannot hold the value', () => {
    const byName = new Map(listing.members.map((m) => [m.name, m]));
    for (const m of listing.members) {
      expect([m.name, m.magic, m.uid, m.gid, m.uname, m.gname]).toEqual([m.name, 'ustar\u000000', 0, 0, '', '']);
    }
    expect(listing.members[0]).toMatchObject({ name: 'data', type: '5', pax: {} });
    expect(byName.get('data/run.sh')).toMatchObject({ type: '0', mode: 0o755, pax: {} });
    expect(byName.get('data/private.txt')).toMatchObject({ type: '0', mode: 0o600 });
    expect(byName.get('data/read-only')).toMatchObject({ type: '5', mode: 0o555 });
    expect(byName.get('data/hard-link.txt')).toMatchObject({ type: '0', size: 8 });
    expect(byName.get('data/link-to-file')).toMatchObject({ type: '2', linkname: 'run.sh', pax: {} });
    expect(byName.get(`data/${SPLIT}`)).toMatchObject({ type: '0', pax: {} });
    expect(byName.get('data/日本語.txt')?.pax).toEqual({ path: 'data/日本語.txt' });
    expect(byName.get('data/données')?.pax).toEqual({ path: 'data/données/' });
    expect(byName.get(`data/${LONG_NAME}`)?.pax).toEqual({ path: `data/${LONG_NAME}` });
    expect(byName.get(`data/${DEEP}`)?.pax).toEqual({ path: `data/${DEEP}` });
    expect(byName.get('data/long-link')).toMatchObject({ type: '2', linkname: DEEP, pax: { linkpath: DEEP } });
    expect(byName.get('data/link-unicode')?.pax).toEqual({ linkpath: '日本語.txt' });
  });

  test('walks depth first with names sorted byte-wise, like Go filepath.Walk', () => {
    const names = listing.members.map((m) => m.name).filter((n) => n.startsWith('data/order'));
    expect(names).toEqual(['data/order', 'data/order/B', 'data/order/a', 'data/order/a/x', 'data/order/a.txt', 'data/order/z', 'data/order/é']);
  });

  test('PAX records are read back exactly where their length gains a digit', () => {
    const boundary = listing.members.filter((m) => m.name.startsWith('data/pax-boundary/'));
    expect(boundary.map((m) => m.name)).toEqual(BOUNDARY_LENGTHS.map((k) => `data/pax-boundary/ü${'a'.repeat(k)}`));
    const lengths = boundary.map((m) => paxRecord('path', m.name).length);
    expect(Math.min(...lengths)).toBeLessThan(100);
    expect(Math.max(...lengths)).toBeGreaterThan(100);
  });

  test('is deterministic: the same tree gives the same bytes', async () => {
    expect(sha256(await packToFile(src, join(dir, 'again.tar')))).toBe(sha256(bytes));
  });

  test('sizes of 8 GiB and more, and negative mtimes, go into PAX records that Python reads', () => {
    const size = 8 * 1024 ** 3 + 5;
    const header = tarHeader({ name: 'data/huge.bin', type: 'file', mode: 0o644, size, mtime: -1000 });
    const file = join(dir, 'huge-header.tar');
    fs.writeFileSync(file, header);
    const read = python('import sys, tarfile; m = tarfile.open(sys.argv[1], "r|").next(); print(m.name, m.size, int(m.mtime))', [file]);
    expect(read.trim()).toBe(`data/huge.bin ${size} -1000`);
    expect(header.length).toBe(3 * 512);
    // The USTAR header after the PAX header and its records: size and mtime are zero there.
    expect(header.toString('latin1', 1024 + 124, 1024 + 135)).toBe('00000000000');
    expect(header.toString('latin1', 1024 + 136, 1024 + 147)).toBe('00000000000');
  });
});

describe('tarDirectory: what it refuses', () => {
  test('a named pipe: the error names the path and the types that can be pushed', async () => {
    const dir = scratch('fifo');
    put(dir, 'ok.txt', 'ok');
    const fifo = join(dir, 'pipe');
    expect(run('mkfifo', [fifo]).status).toBe(0);
    const error = await rejection(packDirectory(dir, 'data', fs.createWriteStream(join(scratch('sink'), 'x.tar'))));
    expect(error.message).toBe(`cannot push "${fifo}": it is a named pipe (FIFO); only files, directories and symlinks can be pushed`);
  });

  test('a socket', async () => {
    const dir = scratch('socket');
    const path = join(dir, 'sock');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      const error = await rejection(packDirectory(dir, 'data', fs.createWriteStream(join(scratch('sink'), 'x.tar'))));
      expect(error.message).toMatch(/^cannot push ".*\/sock": it is a socket; only files, directories and symlinks can be pushed$/);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('a file name that is not UTF-8', async () => {
    const dir = scratch('latin1');
    fs.writeFileSync(Buffer.concat([Buffer.from(`${dir}/caf`), Buffer.from([0xe9]), Buffer.from('.txt')]), 'x');
    const error = await rejection(packDirectory(dir, 'data', fs.createWriteStream(join(scratch('sink'), 'x.tar'))));
    expect(error.message).toMatch(/its name is not valid UTF-8/);
  });

  test.each(['', '/abs', '../up', 'a/../b', '.'])('the directory name %j', async (prefix) => {
    const error = await rejection(packDirectory(scratch('prefix'), prefix, fs.createWriteStream(join(scratch('sink'), 'x.tar'))));
    expect(error.message).toMatch(/^invalid name ".*" for the archived directory/);
  });

  test('a root that is not a directory', async () => {
    const dir = scratch('not-dir');
    put(dir, 'file', 'x');
    const error = await rejection(packDirectory(join(dir, 'file'), 'data', fs.createWriteStream(join(dir, 'x.tar'))));
    expect(error.message).toMatch(/it is not a directory/);
  });
});

describe('PAX records', () => {
  test.each([0, 1, 85, 88, 89, 90, 91, 92, 93, 990, 991, 992, 993, 994, 995])('a %d-byte value: the length counts the whole record', (n) => {
    const record = paxRecord('path', 'é'.repeat(Math.floor(n / 2)) + 'x'.repeat(n % 2));
    const length = Number(record.toString('latin1').split(' ')[0]);
    expect(length).toBe(record.length);
    expect(record[record.length - 1]).toBe(0x0a);
  });

  test('parse what we write: unicode, "=" and newlines in values', () => {
    const data = Buffer.concat([paxRecord('path', 'données/a=b.txt'), paxRecord('linkpath', 'two\nlines'), paxRecord('size', '9')]);
    expect(parsePaxRecords(data)).toEqual([['path', 'données/a=b.txt'], ['linkpath', 'two\nlines'], ['size', '9']]);
  });

  test.each(['13 path=abc\n', '11 path=abc\n', '9 path=abc\n', 'x path=a\n', '11 pathabc\n', '12 path=abc'])('refuses the malformed record %j', (text) => {
    expect(() => parsePaxRecords(Buffer.from(text))).toThrow(/invalid tar/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// GNU tar and Python -> reader
// ---------------------------------------------------------------------------------------------------------------

function expectDigestCoversTheArchive(result: ExtractResult, bytes: Buffer): void {
  expect(result.size + result.trailingBytes).toBe(bytes.length);
  expect(result.digest).toBe(`sha256:${sha256(bytes.subarray(0, result.size))}`);
  expect(bytes.subarray(result.size - 1024, result.size).every((b) => b === 0)).toBe(true);
}

describeWithPeers(['tar', 'python3'], 'extractTar: we read what GNU tar and Python write', () => {
  test.each([
    ['pax', 'full'],
    ['gnu', 'full'],
    ['ustar', 'ustar'],
    ['v7', 'v7'],
  ] as Array<[string, TreeLevel]>)('GNU tar --format=%s (%s tree)', async (format, level) => {
    const dir = scratch(`gnu-${format}`);
    const src = sourceTree(dir, level);
    const archive = join(dir, 'gnu.tar');
    gnuTar([`--format=${format}`, '--sort=name', '-cf', archive, '-C', dirname(src), 'data']);
    const bytes = fs.readFileSync(archive);
    const out = join(dir, 'out');
    const result = await extractFile(archive, out);
    expect(snapshot(out)).toEqual(snapshot(src));
    // GNU tar pads to 10240-byte records: the padding is read but not part of the digest.
    expect(bytes.length % 10240).toBe(0);
    expectDigestCoversTheArchive(result, bytes);
    // The hard link arrives as a '1' entry and becomes a real hard link.
    expect(fs.statSync(join(out, 'hard-link.txt')).ino).toBe(fs.statSync(join(out, 'nested/a/sibling.txt')).ino);
  });

  test.each([
    ['PAX_FORMAT', 'full'],
    ['GNU_FORMAT', 'full'],
    ['USTAR_FORMAT', 'ustar'],
  ] as Array<[string, TreeLevel]>)('Python tarfile %s (%s tree)', async (format, level) => {
    const dir = scratch(`python-${format}`);
    const src = sourceTree(dir, level);
    const archive = join(dir, 'python.tar');
    python(PY_CREATE, [archive, src, format]);
    const out = join(dir, 'out');
    const result = await extractFile(archive, out);
    expect(snapshot(out)).toEqual(snapshot(src));
    expectDigestCoversTheArchive(result, fs.readFileSync(archive));
  });

  test('without stripPrefix the entries keep their "data/" directory', async () => {
    const dir = scratch('no-strip');
    const src = sourceTree(dir, 'ustar');
    const archive = join(dir, 'gnu.tar');
    gnuTar(['--format=pax', '-cf', archive, '-C', dirname(src), 'data']);
    const out = join(dir, 'out');
    await extractFile(archive, out, {});
    expect(fs.readdirSync(out)).toEqual(['data']);
    expect(snapshot(join(out, 'data'))).toEqual(snapshot(src));
  });

  test('GNU tar volume labels are skipped', async () => {
    const dir = scratch('label');
    const src = sourceTree(dir, 'v7');
    const archive = join(dir, 'label.tar');
    gnuTar(['-cf', archive, '-V', 'my volume', '-C', dirname(src), 'data']);
    const out = join(dir, 'out');
    await extractFile(archive, out);
    expect(snapshot(out)).toEqual(snapshot(src));
  });

  test('global PAX headers apply to every later entry; unknown keys are ignored', async () => {
    const dir = scratch('global');
    const archive = join(dir, 'global.tar');
    craft(archive, [{ name: 'data/a.txt', data: 'a' }, { name: 'data/b.txt', data: 'b' }], { global: { mtime: '1000000000', comment: 'hello' } });
    const out = join(dir, 'out');
    await extractFile(archive, out);
    expect(fs.statSync(join(out, 'a.txt')).mtimeMs).toBe(1e12);
    expect(fs.statSync(join(out, 'b.txt')).mtimeMs).toBe(1e12);
  });

  test('GNU base-256 numbers (a negative mtime); setuid, setgid and sticky bits are dropped', async () => {
    const dir = scratch('base256');
    const archive = join(dir, 'gnu.tar');
    craft(archive, [
      { name: 'data/', type: 'dir', mode: 0o1777 },
      { name: 'data/old.txt', data: 'old', mtime: -1000, mode: 0o4755 },
      { name: 'data/group.txt', data: 'g', mode: 0o2750 },
    ], { format: 'GNU_FORMAT' });
    const out = join(dir, 'out');
    await extractFile(archive, out);
    expect(fs.statSync(join(out, 'old.txt')).mtimeMs).toBe(-1e6);
    expect(fs.statSync(join(out, 'old.txt')).mode % 0o10000).toBe(0o755);
    expect(fs.statSync(join(out, 'group.txt')).mode % 0o10000).toBe(0o750);
    expect(fs.statSync(out).mode % 0o10000).toBe(0o777);
  });

  test('an existing file is replaced, and an existing symlink in its place is not followed', async () => {
    const dir = scratch('replace');
    const out = join(dir, 'out');
    put(dir, 'outside.txt', 'outside\n');
    put(out, 'plain.txt', 'old\n');
    fs.symlinkSync('../outside.txt', join(out, 'link.txt'));
    const archive = join(dir, 'a.tar');
    craft(archive, [{ name: 'plain.txt', data: 'new plain\n' }, { name: 'link.txt', data: 'new link\n' }]);
    await extractFile(archive, out, {});
    expect(fs.readFileSync(join(out, 'plain.txt'), 'utf8')).toBe('new plain\n');
    expect(fs.lstatSync(join(out, 'link.txt')).isFile()).toBe(true);
    expect(fs.readFileSync(join(out, 'link.txt'), 'utf8')).toBe('new link\n');
    expect(fs.readFileSync(join(dir, 'outside.txt'), 'utf8')).toBe('outside\n');
  });

  test('Latin-1 names from old archives are read as Latin-1', async () => {
    const dir = scratch('latin1-names');
    const archive = join(dir, 'a.tar');
    craft(archive, [{ name: 'data/café.txt', data: 'x' }], { format: 'GNU_FORMAT', encoding: 'latin-1' });
    expect(fs.readFileSync(archive).includes(Buffer.from('caf\xe9', 'latin1'))).toBe(true);
    const out = join(dir, 'out');
    await extractFile(archive, out);
    expect(fs.readdirSync(out)).toEqual(['café.txt']);
  });

  test.each([
    ['--format=gnu', 'unsupported tar entry "data/sparse.bin": GNU sparse files cannot be extracted'],
    ['--format=pax', 'unsupported tar entry: GNU sparse files cannot be extracted'],
  ])('GNU tar --sparse %s archives are refused clearly', async (format, message) => {
    const dir = scratch('sparse');
    const src = join(dir, 'tree', 'data');
    fs.mkdirSync(src, { recursive: true });
    const fd = fs.openSync(join(src, 'sparse.bin'), 'w');
    fs.writeSync(fd, 'end', 4 * 1024 * 1024);
    fs.closeSync(fd);
    const archive = join(dir, 'sparse.tar');
    gnuTar([format, '--sparse', '-cf', archive, '-C', dirname(src), 'data']);
    const error = await rejection(extractFile(archive, join(dir, 'out')));
    expect(error.message).toBe(message);
  });

  test.each([
    [{ size: '12x' }, /^invalid tar: the PAX size "12x" for the entry at offset 1024 is not a valid number$/],
    [{ mtime: 'yesterday' }, /^invalid tar: the PAX mtime "yesterday" for the entry at offset 1024 is not a valid number$/],
    [{ comment: 'x'.repeat(1024 * 1024 + 1) }, /^invalid tar: the 'x' header at offset 0 holds 1048\d+ bytes \(at most 1048576 are accepted\)$/],
  ])('bad PAX records are refused: %#', async (pax, message) => {
    const dir = scratch('bad-pax');
    const archive = join(dir, 'a.tar');
    craft(archive, [{ name: 'f.txt', data: 'x', pax }]);
    const error = await rejection(extractFile(archive, join(dir, 'out'), {}));
    expect(error.message).toMatch(message);
  });

  test('an entry under a file is refused', async () => {
    const dir = scratch('under-file');
    const archive = join(dir, 'a.tar');
    craft(archive, [{ name: 'f', data: 'x' }, { name: 'f/g.txt', data: 'y' }]);
    const error = await rejection(extractFile(archive, join(dir, 'out'), {}));
    expect(error.message).toBe('cannot extract tar entry "f/g.txt": its parent "f" is not a directory');
  });

  test.each(['../x', '/abs', '.'])('stripPrefix %j is refused', async (stripPrefix) => {
    const error = await rejection(extractTar(Readable.from([Buffer.alloc(1024)]), scratch('out'), { stripPrefix }));
    expect(error.message).toBe(`invalid stripPrefix "${stripPrefix}": use a relative path without ".." components`);
  });

  test('links that stay inside are kept: "..", ".", a chain of links, a hard link', async () => {
    const dir = scratch('inside-links');
    const archive = join(dir, 'a.tar');
    craft(archive, [
      { name: 'data/', type: 'dir' },
      { name: 'data/top.txt', data: 'top' },
      { name: 'data/sub/', type: 'dir' },
      { name: 'data/sub/up', type: 'symlink', linkname: '../top.txt' },
      { name: 'data/sub/root', type: 'symlink', linkname: '..' },
      { name: 'data/self', type: 'symlink', linkname: '.' },
      { name: 'data/via', type: 'symlink', linkname: 'sub/root/sub/up' },
      { name: 'data/sub/hard', type: 'hardlink', linkname: 'data/top.txt' },
    ]);
    const out = join(dir, 'out');
    await extractFile(archive, out);
    expect(fs.readFileSync(join(out, 'via'), 'utf8')).toBe('top');
    expect(fs.readlinkSync(join(out, 'self'))).toBe('.');
    expect(fs.statSync(join(out, 'sub/hard')).ino).toBe(fs.statSync(join(out, 'top.txt')).ino);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Safety
// ---------------------------------------------------------------------------------------------------------------

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
// Corrupt and truncated archives
// ---------------------------------------------------------------------------------------------------------------

describe('extractTar: corrupt and truncated archives', () => {
  let bytes: Buffer;
  let dataOffset: number;

  beforeAll(async () => {
    const dir = scratch('corrupt');
    const src = join(dir, 'src');
    put(src, 'file.bin', randomBytes(3000));
    bytes = await packToFile(src, join(dir, 'a.tar'));
    // data/ header, file.bin header, then its content
    dataOffset = 1024;
  });

  const extract = (data: Buffer) => extractTar(inPieces(data, 777), scratch('out'), { stripPrefix: 'data' });

  test('our own archive reads back whatever the chunk sizes', async () => {
    for (const size of [1, 511, 512, 513, 4096, bytes.length]) {
      const out = scratch('pieces');
      const result = await extractTar(inPieces(bytes, size), out, { stripPrefix: 'data' });
      expect(result).toEqual({ digest: `sha256:${sha256(bytes)}`, size: bytes.length, trailingBytes: 0, entries: 2 });
      expect(fs.readFileSync(join(out, 'file.bin'))).toEqual(bytes.subarray(dataOffset, dataOffset + 3000));
    }
  });

  test('trailing bytes after the end blocks are drained and left out of the digest', async () => {
    const result = await extract(Buffer.concat([bytes, randomBytes(5000)]));
    expect(result).toEqual({ digest: `sha256:${sha256(bytes)}`, size: bytes.length, trailingBytes: 5000, entries: 2 });
  });

  test.each([
    ['inside a header', 700, 'truncated tar: the stream ended inside the header at offset 512 (324 of 512 bytes missing)'],
    ['inside file data', 1024 + 100, 'truncated tar: the stream ended inside the data of "data/file.bin" (2900 of 3000 bytes missing)'],
    ['at a block boundary', 1024, 'truncated tar: the stream ended inside the data of "data/file.bin" (3000 of 3000 bytes missing)'],
    ['before the end blocks', -1024, 'truncated tar: the stream ended at offset 4096 without the end-of-archive blocks'],
    ['between the end blocks', -512, 'truncated tar: the stream ended after the first end-of-archive block at offset 4096'],
  ])('cut %s', async (_what, cut, message) => {
    const error = await rejection(extract(bytes.subarray(0, cut < 0 ? bytes.length + cut : cut)));
    expect(error.message).toBe(message);
  });

  test('an empty stream', async () => {
    const error = await rejection(extract(Buffer.alloc(0)));
    expect(error.message).toBe('truncated tar: the stream ended at offset 0 without the end-of-archive blocks');
  });

  test('a bad header checksum', async () => {
    const corrupt = Buffer.from(bytes);
    corrupt[512 + 5] += 1; // "data/file.bin" becomes "data/gile.bin"
    const error = await rejection(extract(corrupt));
    expect(error.message).toMatch(/^invalid tar header at offset 512: checksum mismatch \(the header says \d+, its bytes sum to \d+\); the archive is corrupt$/);
  });

  test('something that is not a tar archive', async () => {
    const error = await rejection(extract(Buffer.from('this is not a tar archive\n'.repeat(100))));
    expect(error.message).toMatch(/^invalid tar header at offset 0: the checksum field is not an octal number/);
  });

  test('a zero block followed by a header', async () => {
    const end = bytes.length - 1024;
    const error = await rejection(extract(Buffer.concat([bytes.subarray(0, end), Buffer.alloc(512), bytes.subarray(0, 512), Buffer.alloc(1024)])));
    expect(error.message).toBe(`invalid tar: the zero block at offset ${end} is followed by a non-zero block`);
  });

  test('an extended header with no entry after it', async () => {
    const pax = tarHeader({ name: 'data/日本語.txt', type: 'file', mode: 0o644, size: 0, mtime: 0 }).subarray(0, 1024);
    const error = await rejection(extract(Buffer.concat([bytes.subarray(0, 512), pax, Buffer.alloc(1024)])));
    expect(error.message).toBe('invalid tar: the extended header before offset 1536 is not followed by an entry');
  });

  test('strings instead of bytes', async () => {
    const error = await rejection(extractTar(Readable.from(['not bytes']), scratch('out')));
    expect(error.message).toBe('tar input must be a stream of bytes, not strings or objects');
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

// ---------------------------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------------------------

describe('streaming: memory does not grow with file size', () => {
  const SIZE = 50 * 1024 * 1024;
  let src: string;

  beforeAll(() => {
    src = scratch('big-src');
    const block = randomBytes(1024 * 1024);
    const fd = fs.openSync(join(src, 'big.bin'), 'w');
    for (let i = 0; i < SIZE / block.length; i++) {
      block[0] = i;
      fs.writeSync(fd, block);
    }
    fs.closeSync(fd);
  });

  test('the writer reads the file only as fast as the stream is consumed', async () => {
    const stream = tarDirectory(src, 'data');
    stream.pause();
    stream.read(0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(stream.readableLength).toBeLessThanOrEqual(256 * 1024);
    stream.destroy();
  });

  test('a 50 MB file round-trips through gzip with a bounded rss', async () => {
    const roundTrip = async (out: string) => {
      const tarHash = createHash('sha256');
      const input = tarDirectory(src, 'data').pipe(hashing(tarHash)).pipe(createGzip({ level: 1 })).pipe(createGunzip());
      const result = await extractTar(input, out, { stripPrefix: 'data' });
      return { result, tarDigest: `sha256:${tarHash.digest('hex')}` };
    };
    await roundTrip(scratch('big-warmup')); // JIT and pools warm up outside the measurement

    const out = scratch('big-out');
    const before = process.memoryUsage().rss;
    let peak = before;
    const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 5);
    const { result, tarDigest } = await roundTrip(out);
    clearInterval(timer);
    peak = Math.max(peak, process.memoryUsage().rss);

    expect(result.digest).toBe(tarDigest);
    expect(result.size).toBe(SIZE + 4 * 512);
    expect(fs.statSync(join(out, 'big.bin')).size).toBe(SIZE);
    expect(await fileDigest(join(out, 'big.bin'))).toBe(await fileDigest(join(src, 'big.bin')));
    expect(peak - before).toBeLessThan(40 * 1024 * 1024);
  });
});

async function fileDigest(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------------------------------------------
// The real oras CLI (oras-go's file store), through OCI image layouts
// ---------------------------------------------------------------------------------------------------------------

const EMPTY_CONFIG = { mediaType: 'application/vnd.oci.empty.v1+json', digest: `sha256:${sha256('{}')}`, size: 2 };

describeWithPeers(['oras'], 'interop with the oras CLI (directory layers)', () => {
  const oras = (args: string[], cwd?: string) => {
    const result = run(requirePeer('oras'), [...args, '--no-tty'], { cwd });
    if (result.status !== 0) throw new Error(`oras ${args.join(' ')} failed (${result.status}):\n${result.output}`);
    return result;
  };

  function writeBlob(layout: string, data: Buffer | string): { digest: string; size: number } {
    const digest = sha256(data);
    fs.writeFileSync(join(layout, 'blobs', 'sha256', digest), data);
    return { digest: `sha256:${digest}`, size: Buffer.byteLength(data) };
  }

  test('oras pull unpacks our directory layer and accepts its io.deis.oras.content.digest', async () => {
    const dir = scratch('to-oras');
    const src = sourceTree(dir);
    const layout = join(dir, 'layout');
    fs.mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
    const tarHash = createHash('sha256');
    const layerFile = join(dir, 'layer.tar.gz');
    await pipeline(tarDirectory(src, 'data'), hashing(tarHash), createGzip(), fs.createWriteStream(layerFile));
    const layer = writeBlob(layout, fs.readFileSync(layerFile));
    writeBlob(layout, '{}');
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactType: 'application/vnd.unknown.artifact.v1',
      config: EMPTY_CONFIG,
      layers: [{
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        ...layer,
        annotations: {
          'io.deis.oras.content.digest': `sha256:${tarHash.digest('hex')}`,
          'io.deis.oras.content.unpack': 'true',
          'org.opencontainers.image.title': 'data',
        },
      }],
    });
    const manifestDescriptor = writeBlob(layout, manifest);
    fs.writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    fs.writeFileSync(join(layout, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifestDescriptor, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
    }));

    const out = join(dir, 'out');
    oras(['pull', '--oci-layout', `${layout}:v1`, '-o', out]);
    // oras-go sets times with os.Chtimes, which follows symlinks, so only content, modes and links are compared.
    expect(snapshot(join(out, 'data'), { mtimes: false })).toEqual(snapshot(src, { mtimes: false }));
  });

  test('we unpack a directory oras push packed, and its digest matches io.deis.oras.content.digest', async () => {
    const dir = scratch('from-oras');
    const src = sourceTree(dir);
    const layout = join(dir, 'layout');
    oras(['push', '--oci-layout', `${layout}:v1`, 'data'], dirname(src));
    const blob = (digest: string) => join(layout, 'blobs', ...digest.split(':'));
    const index = JSON.parse(fs.readFileSync(join(layout, 'index.json'), 'utf8'));
    const manifest = JSON.parse(fs.readFileSync(blob(index.manifests[0].digest), 'utf8'));
    const [layer] = manifest.layers;
    expect(layer.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(layer.annotations).toMatchObject({ 'io.deis.oras.content.unpack': 'true', 'org.opencontainers.image.title': 'data' });

    const out = join(dir, 'out');
    const result = await extractTar(fs.createReadStream(blob(layer.digest)).pipe(createGunzip()), out, { stripPrefix: 'data' });
    expect(result.digest).toBe(layer.annotations['io.deis.oras.content.digest']);
    expect(result.trailingBytes).toBe(0);
    expect(snapshot(out)).toEqual(snapshot(src));
  });
});
