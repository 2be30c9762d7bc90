/** What the tar tests share: scratch directories, the test tree, snapshots, and the real programs they compare with. */
import { createHash, Hash, randomBytes } from 'crypto';
import * as fs from 'fs';
import { tmpdir } from 'os';
import { dirname, join } from 'path';
import { Readable, Transform } from 'stream';
import { ExtractResult, extractTar } from '../../../../runtime/oci/tar/extract';
import { packDirectory } from '../../../../runtime/oci/tar/write';
import { CraftEntry, CraftOptions, craftTar } from '../../../util/crafted-tar';
import { requirePeer, run } from '../../../util/peers';

// Each test file that imports this module gets its own BASE, removed after its tests.
const BASE = fs.mkdtempSync(join(tmpdir(), 'cdk8s-oras-tar-'));
afterAll(() => {
  makeWritable(BASE);
  fs.rmSync(BASE, { recursive: true, force: true });
});

/** Read-only directories in the trees would stop a non-root rmSync. */
export function makeWritable(dir: string): void {
  fs.chmodSync(dir, 0o755);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) makeWritable(join(dir, entry.name));
  }
}

/** Whether anything, even a dangling symlink, is at `path`. */
export const present = (path: string) => fs.lstatSync(path, { throwIfNoEntry: false }) !== undefined;

let scratchCount = 0;
/** A fresh, empty directory for one test. */
export function scratch(label: string): string {
  scratchCount += 1;
  const dir = join(BASE, `${scratchCount}-${label}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

// ---------------------------------------------------------------------------------------------------------------
// The test tree and how trees are compared
// ---------------------------------------------------------------------------------------------------------------

/** How much of the tree a format can hold: v7 has 99-byte names, ustar 255-byte split names, no unicode. */
export type TreeLevel = 'full' | 'ustar' | 'v7';

export const DEEP = ['deep', ...Array.from({ length: 5 }, (_, i) => `segment-${i}-${'x'.repeat(50)}`), 'file.txt'].join('/');
export const SPLIT = `split/${'p'.repeat(90)}/${'q'.repeat(40)}.txt`;
export const LONG_NAME = `${'l'.repeat(120)}.txt`;
export const BOUNDARY_LENGTHS = Array.from({ length: 11 }, (_, i) => 66 + i);

export function put(root: string, rel: string, content: string | Buffer, mode = 0o644): void {
  const path = join(root, rel);
  fs.mkdirSync(dirname(path), { recursive: true });
  fs.writeFileSync(path, content);
  fs.chmodSync(path, mode);
}

/** Files, an empty file and directory, modes, relative symlinks to a file and a directory, a hard link, and (full) unicode and long names. */
export function buildTree(root: string, level: TreeLevel = 'full'): void {
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

export function addUnicodeAndLongNames(root: string): void {
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
export function wholeSecondTimes(path: string): void {
  const info = fs.lstatSync(path);
  if (info.isDirectory()) for (const child of fs.readdirSync(path)) wholeSecondTimes(join(path, child));
  const time = Math.floor(info.mtimeMs / 1000) - 3600;
  fs.lutimesSync(path, time, time);
}

/** One line per entry: type, permission bits, mtime (seconds), content digest or link target. */
export function snapshot(root: string, options: { mtimes?: boolean } = {}): string[] {
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

export function python(script: string, args: string[], input?: string): string {
  const result = run(requirePeer('python3'), ['-c', script, ...args], { input });
  if (result.status !== 0) throw new Error(`python3 failed (${result.status}):\n${result.output}`);
  return result.stdout;
}

export function gnuTar(args: string[]): { stdout: string; stderr: string } {
  const result = run(requirePeer('tar'), args);
  if (result.status !== 0) throw new Error(`tar ${args.join(' ')} failed (${result.status}):\n${result.output}`);
  return result;
}

export const PY_LIST = `
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

export const PY_EXTRACT = `
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    t.extractall(sys.argv[2], filter='fully_trusted')
`;

export const PY_CREATE = `
import sys, tarfile
with tarfile.open(sys.argv[1], 'w', format=getattr(tarfile, sys.argv[3])) as t:
    t.add(sys.argv[2], arcname='data')
`;

export function craft(file: string, entries: CraftEntry[], options: CraftOptions = {}): void {
  fs.writeFileSync(file, craftTar(entries, options));
}

export interface Listing {
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

export async function packToFile(src: string, file: string): Promise<Buffer> {
  await packDirectory(src, 'data', fs.createWriteStream(file));
  return fs.readFileSync(file);
}

export async function extractFile(file: string, dest: string, options: { stripPrefix?: string } = { stripPrefix: 'data' }): Promise<ExtractResult> {
  return extractTar(fs.createReadStream(file), dest, options);
}

/** Feeds `data` in pieces of `size` bytes, to exercise every chunk boundary. */
export function inPieces(data: Buffer, size: number): Readable {
  const pieces: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) pieces.push(data.subarray(at, at + size));
  return Readable.from(pieces);
}

export function hashing(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

export async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection, but the promise resolved');
}

/** A source tree under <dir>/tree/data (GNU tar needs the directory to be called "data"). */
export function sourceTree(dir: string, level: TreeLevel = 'full'): string {
  const src = join(dir, 'tree', 'data');
  buildTree(src, level);
  return src;
}


export const EMPTY_CONFIG = { mediaType: 'application/vnd.oci.empty.v1+json', digest: `sha256:${sha256('{}')}`, size: 2 };

export function oras(args: string[], cwd?: string): { stdout: string; stderr: string } {
  const result = run(requirePeer('oras'), [...args, '--no-tty'], { cwd });
  if (result.status !== 0) throw new Error(`oras ${args.join(' ')} failed (${result.status}):\n${result.output}`);
  return result;
}

export function writeBlob(layout: string, data: Buffer | string): { digest: string; size: number } {
  const digest = sha256(data);
  fs.writeFileSync(join(layout, 'blobs', 'sha256', digest), data);
  return { digest: `sha256:${digest}`, size: Buffer.byteLength(data) };
}

/** A file of `size` bytes (a multiple of 1 MiB) whose 1 MiB blocks all differ. */
export function bigFile(path: string, size: number): void {
  const block = randomBytes(1024 * 1024);
  const fd = fs.openSync(path, 'w');
  for (let i = 0; i < size / block.length; i++) {
    block[0] = i;
    fs.writeSync(fd, block);
  }
  fs.closeSync(fd);
}

export async function fileDigest(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}
