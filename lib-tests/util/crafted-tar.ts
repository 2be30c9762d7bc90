import { spawnSync } from 'child_process';
import { requirePeer } from './peers';

/** Writes any archive from a JSON description, including names no sane tool would write. */
const PY_CRAFT = `
import io, json, sys, tarfile
spec = json.load(sys.stdin)
types = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE, 'hardlink': tarfile.LNKTYPE,
         'fifo': tarfile.FIFOTYPE, 'chr': tarfile.CHRTYPE, 'blk': tarfile.BLKTYPE}
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w', format=getattr(tarfile, spec['format']), pax_headers=spec['global'], encoding=spec['encoding']) as t:
    for e in spec['entries']:
        info = tarfile.TarInfo(e['name'])
        info.type = types[e.get('type', 'file')]
        info.linkname = e.get('linkname', '')
        info.mode = e.get('mode', 0o755 if info.type == tarfile.DIRTYPE else 0o644)
        info.mtime = e.get('mtime', 1700000000)
        info.pax_headers = e.get('pax', {})
        data = e.get('data', '').encode()
        info.size = len(data)
        t.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
sys.stdout.buffer.write(buf.getvalue())
`;

export interface CraftEntry {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'fifo' | 'chr' | 'blk';
  linkname?: string;
  data?: string;
  mode?: number;
  mtime?: number;
  /** Per-entry PAX records, written as they are. */
  pax?: Record<string, string>;
}

export interface CraftOptions {
  format?: string;
  global?: Record<string, string>;
  encoding?: string;
}

/** A tar archive written by Python's tarfile exactly as described: entries in order, duplicates and hostile names included. */
export function craftTar(entries: CraftEntry[], options: CraftOptions = {}): Buffer {
  const spec = { format: options.format ?? 'PAX_FORMAT', global: options.global ?? {}, encoding: options.encoding ?? 'utf-8', entries };
  const result = spawnSync(requirePeer('python3'), ['-c', PY_CRAFT], { input: JSON.stringify(spec), maxBuffer: 256 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`python3 could not craft the archive:\n${result.stderr}`);
  return result.stdout;
}

/**
 * The tar of the symlink attack that a check of each link at the moment it is written misses: `p`
 * points deep, `l` climbs out of `p` exactly as deep (inside, for now), then `p` becomes `.`, and `l`
 * leads `depth` levels above the output directory.
 */
export function laterSymlinkEscape(prefix: string, depth = 24): CraftEntry[] {
  const deep = Array.from({ length: depth }, (_, i) => `a${i}`).join('/');
  return [
    { name: `${prefix}/${deep}`, type: 'dir' },
    { name: `${prefix}/p`, type: 'symlink', linkname: deep },
    { name: `${prefix}/l`, type: 'symlink', linkname: `p/${'../'.repeat(depth)}etc/passwd` },
    { name: `${prefix}/p`, type: 'symlink', linkname: '.' },
  ];
}
