import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import { dirname, join } from 'path';
import { Readable } from 'stream';
import { createGunzip, createGzip } from 'zlib';
import { bigFile, craft, extractFile, fileDigest, gnuTar, hashing, inPieces, oras, packToFile, put, PY_CREATE, python, rejection, scratch, sha256, snapshot, sourceTree, TreeLevel } from './helpers';
import { ExtractResult, extractTar } from '../../../../runtime/oci/tar/extract';
import { tarHeader } from '../../../../runtime/oci/tar/format';
import { tarDirectory } from '../../../../runtime/oci/tar/write';
import { describeWithPeers } from '../../../util/peers';

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

describe('streaming: memory does not grow with file size', () => {
  const SIZE = 50 * 1024 * 1024;
  let src: string;

  beforeAll(() => {
    src = scratch('big-src');
    bigFile(join(src, 'big.bin'), SIZE);
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

describeWithPeers(['oras'], 'interop with the oras CLI: we read its directory layers', () => {
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
