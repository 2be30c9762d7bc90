import { createHash } from 'crypto';
import * as fs from 'fs';
import { createServer } from 'net';
import { dirname, join } from 'path';
import { pipeline } from 'stream/promises';
import { createGzip } from 'zlib';
import { bigFile, BOUNDARY_LENGTHS, DEEP, EMPTY_CONFIG, gnuTar, hashing, Listing, LONG_NAME, oras, packToFile, put, PY_EXTRACT, PY_LIST, python, rejection, scratch, sha256, snapshot, sourceTree, SPLIT, writeBlob } from './helpers';
import { STREAM_CHUNK } from '../../../../runtime/oci/chunks';
import { paxRecord, tarHeader } from '../../../../runtime/oci/tar/format';
import { packDirectory, tarDirectory } from '../../../../runtime/oci/tar/write';
import { describeWithPeers, run } from '../../../util/peers';

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

describe('streaming: the writer', () => {
  const SIZE = 50 * 1024 * 1024;
  let src: string;

  beforeAll(() => {
    src = scratch('big-src');
    bigFile(join(src, 'big.bin'), SIZE);
  });

  test('the writer reads the file only as fast as the stream is consumed', async () => {
    const stream = tarDirectory(src, 'data');
    stream.pause();
    stream.read(0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // One chunk read ahead at most: of 50 MB, nothing near the whole file.
    expect(stream.readableLength).toBeLessThanOrEqual(2 * STREAM_CHUNK);
    stream.destroy();
  });
});

describeWithPeers(['oras'], 'interop with the oras CLI: it reads our directory layers', () => {
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
});
