import { execFileSync } from 'child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import * as mounter from '../../../runtime/csi/mounter';
import { describeWithPeers, run } from '../../util/peers';

const asRoot = process.getuid?.() === 0;
/** Mounts need root: under CI a non-root run fails, elsewhere it is skipped. */
function describeAsRoot(title: string, body: () => void): void {
  if (asRoot || process.env.CI === 'true') {
    describeWithPeers(['mount'], title, asRoot ? body : () => test('runs as root', () => { throw new Error('the mounter tests mount: run them as root'); }));
  } else {
    describe.skip(title, body);
  }
}

/** The mounts at `path`, in mount order: their per-mount options. */
function mountsAt(path: string): string[][] {
  const decode = (value: string) => value.replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => line.split(' '))
    .filter((fields) => decode(fields[4]) === path).map((fields) => fields[5].split(','));
}

/** Unmounts everything under `dir`, the last mounted first, and removes it. */
function removeWithMounts(dir: string): void {
  const decode = (value: string) => value.replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)));
  const points = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => decode(line.split(' ')[4]));
  for (const point of points.filter((p) => p.startsWith(`${dir}/`)).reverse()) run('umount', ['-l', '--', point]);
  rmSync(dir, { recursive: true, force: true });
}

const writable = (dir: string) => {
  try {
    writeFileSync(join(dir, 'probe'), 'x');
    rmSync(join(dir, 'probe'));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EROFS') throw err;
    return false;
  }
};

const mount = (...args: string[]) => expect(run('mount', args).output).toBe('');

describeAsRoot('the mounter on real mounts', () => {
  const { bindReadOnly, isBindMountOf, isMountPoint, unmount } = mounter;
  let dir: string;
  let src: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'oras-mounter-'));
    src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'f.txt'), 'content');
  });
  afterEach(() => removeWithMounts(dir));

  test('isMountPoint: only the path where a mount sits, however it is named', async () => {
    const odd = join(dir, 'a b\\040\tc\nd');
    for (const path of [join(dir, 'bind'), join(dir, 'tmpfs'), odd]) mkdirSync(path);
    expect(await isMountPoint(join(dir, 'bind'))).toBe(false);
    // A bind mount from the same filesystem has the same device: only the mount id tells.
    mount('--bind', src, join(dir, 'bind'));
    mount('-t', 'tmpfs', 'tmpfs', join(dir, 'tmpfs'));
    mount('--bind', src, odd);
    for (const path of [join(dir, 'bind'), join(dir, 'tmpfs'), odd, '/']) expect(await isMountPoint(path)).toBe(true);
    symlinkSync(join(dir, 'tmpfs'), join(dir, 'link'));
    mkdirSync(join(dir, 'tmpfs', 'inside'));
    for (const path of [dir, src, join(dir, 'link'), join(dir, 'tmpfs', 'inside'), join(dir, 'missing'), join(dir, 'missing\nx')]) {
      expect(await isMountPoint(path)).toBe(false);
    }
    // Stacked: still a mount point after the top one goes.
    mount('-t', 'tmpfs', 'tmpfs', join(dir, 'bind'));
    expect(run('umount', [join(dir, 'bind')]).status).toBe(0);
    expect(await isMountPoint(join(dir, 'bind'))).toBe(true);
    expect(run('umount', [join(dir, 'bind')]).status).toBe(0);
    expect(await isMountPoint(join(dir, 'bind'))).toBe(false);
  });

  test('isMountPoint: a mount hidden under a later mount of its parent is still listed', async () => {
    const child = join(dir, 'parent', 'ch ild\\');
    mkdirSync(child, { recursive: true });
    mount('-t', 'tmpfs', 'tmpfs', child);
    mount('-t', 'tmpfs', 'tmpfs', join(dir, 'parent'));
    expect(existsSync(child)).toBe(false);
    expect(await isMountPoint(child)).toBe(true);
  });

  test('isBindMountOf: the topmost mount, octal escapes, a source deleted while mounted, a source inside another mount', async () => {
    const odd = join(dir, 's p\\a\tce');
    mkdirSync(odd);
    const target = join(dir, 't a\\r\tg\ne t');
    mkdirSync(target);
    expect(await isBindMountOf(target, odd)).toBe(false);
    await bindReadOnly(odd, target);
    expect(await isBindMountOf(target, odd)).toBe(true);
    expect(await isBindMountOf(target, src)).toBe(false);
    mount('-t', 'tmpfs', 'tmpfs', target);
    expect(await isBindMountOf(target, odd)).toBe(false);
    await unmount(target);
    expect(await isBindMountOf(target, odd)).toBe(true);
    rmSync(odd, { recursive: true });
    expect(await isBindMountOf(target, odd)).toBe(true);

    mkdirSync(join(dir, 'fs'));
    mount('-t', 'tmpfs', 'tmpfs', join(dir, 'fs'));
    mkdirSync(join(dir, 'fs', 'entry'));
    mkdirSync(join(dir, 'other'));
    await bindReadOnly(join(dir, 'fs', 'entry'), join(dir, 'other'));
    expect(await isBindMountOf(join(dir, 'other'), join(dir, 'fs', 'entry'))).toBe(true);
    expect(await isBindMountOf(join(dir, 'other'), join(dir, 'fs'))).toBe(false);
  });

  test('bindReadOnly: a read-only bind mount; the source stays writable; unmount removes it', async () => {
    const target = join(dir, 'target');
    mkdirSync(target);
    await bindReadOnly(src, target);
    expect(readFileSync(join(target, 'f.txt'), 'utf8')).toBe('content');
    expect(mountsAt(target)).toEqual([expect.arrayContaining(['ro'])]);
    expect(writable(target)).toBe(false);
    expect(writable(src)).toBe(true);
    await unmount(target);
    expect(mountsAt(target)).toEqual([]);
  });

  test('bindReadOnly: many at once, and paths that do not fit on a line', async () => {
    const targets = [...Array.from({ length: 6 }, (_, i) => join(dir, `t-${i}`)), join(dir, 'new\nline')];
    for (const target of targets) mkdirSync(target);
    await Promise.all(targets.map((target) => bindReadOnly(src, target)));
    for (const target of targets) {
      expect(mountsAt(target)).toEqual([expect.arrayContaining(['ro'])]);
      expect(await isBindMountOf(target, src)).toBe(true);
    }
    await Promise.all(targets.map((target) => unmount(target)));
    for (const target of targets) expect(await isMountPoint(target)).toBe(false);
  });

  test('a failed mount rejects with what the program said, and leaves nothing mounted', async () => {
    const target = join(dir, 'target');
    mkdirSync(target);
    await expect(bindReadOnly(join(dir, 'missing'), target)).rejects.toThrow(/mount -o bind,ro -- .*missing.*: mount: .*does not exist/);
    await expect(unmount(target)).rejects.toThrow(/umount -- .*target: umount: .*not mounted/);
    expect(mountsAt(target)).toEqual([]);
  });

  test('the shell that runs mount programs: killed, it is started again', async () => {
    const target = join(dir, 'target');
    mkdirSync(target);
    await bindReadOnly(src, target);
    await unmount(target);
    const shells = () => run('pgrep', ['-P', String(process.pid), '-f', 'IFS= read -r n']).stdout.split('\n').filter(Boolean);
    expect(shells().length).toBeGreaterThan(0);
    for (const pid of shells()) process.kill(Number(pid), 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 100));
    await bindReadOnly(src, target);
    expect(mountsAt(target)).toEqual([expect.arrayContaining(['ro'])]);
  });
});

describeAsRoot('the mounter with a mount program that does not apply "ro" to bind mounts', () => {
  let dir: string;
  let fake: string;
  let src: string;
  let isolated: typeof mounter;
  const path = process.env.PATH;
  /** The arguments of each call of the fake mount program. */
  const calls = () => (existsSync(join(fake, 'calls')) ? readFileSync(join(fake, 'calls'), 'utf8').split('\n').filter(Boolean) : []);

  beforeAll(() => {
    fake = mkdtempSync(join(tmpdir(), 'oras-fake-mount-'));
    const real = execFileSync('sh', ['-c', 'command -v mount'], { encoding: 'utf8' }).trim();
    writeFileSync(join(fake, 'mount'), [
      '#!/bin/sh',
      `echo "$*" >> '${fake}/calls'`,
      `if [ "$2" = remount,bind,ro ] && [ -e '${fake}/refuse-remount' ]; then echo 'remount refused' >&2; exit 32; fi`,
      `if [ "$2" = bind,ro ]; then shift 2; exec '${real}' -o bind "$@"; fi`,
      `exec '${real}' "$@"`,
      '',
    ].join('\n'));
    chmodSync(join(fake, 'mount'), 0o755);
    process.env.PATH = `${fake}:${path}`;
    // A module of its own: its shell starts with this PATH.
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      isolated = require('../../../runtime/csi/mounter');
    });
  });
  afterAll(() => {
    process.env.PATH = path;
    rmSync(fake, { recursive: true, force: true });
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'oras-mounter-'));
    src = join(dir, 'src');
    mkdirSync(src);
    rmSync(join(fake, 'calls'), { force: true });
    rmSync(join(fake, 'refuse-remount'), { force: true });
  });
  afterEach(() => removeWithMounts(dir));

  test('bindReadOnly remounts read-only', async () => {
    const target = join(dir, 'target');
    mkdirSync(target);
    await isolated.bindReadOnly(src, target);
    expect(calls()).toEqual([`-o bind,ro -- ${src} ${target}`, `-o remount,bind,ro -- ${target}`]);
    expect(mountsAt(target)).toEqual([expect.arrayContaining(['ro'])]);
    expect(writable(target)).toBe(false);
  });

  test('a source on a read-only filesystem: the mount itself is still made read-only', async () => {
    // A writable bind mount of a read-only tmpfs: writes fail there, yet its mounts are not "ro".
    for (const name of ['fs', 'view', 'target']) mkdirSync(join(dir, name));
    mount('-t', 'tmpfs', 'tmpfs', join(dir, 'fs'));
    mkdirSync(join(dir, 'fs', 'entry'));
    mount('-o', 'remount,ro', join(dir, 'fs'));
    mount('--bind', join(dir, 'fs'), join(dir, 'view'));
    mount('-o', 'remount,bind,rw', join(dir, 'view'));
    expect(mountsAt(join(dir, 'view'))).toEqual([expect.arrayContaining(['rw'])]);
    expect(writable(join(dir, 'view'))).toBe(false);
    rmSync(join(fake, 'calls'));
    await isolated.bindReadOnly(join(dir, 'view', 'entry'), join(dir, 'target'));
    expect(calls()).toContain(`-o remount,bind,ro -- ${join(dir, 'target')}`);
    expect(mountsAt(join(dir, 'target'))).toEqual([expect.arrayContaining(['ro'])]);
  });

  test('a remount that fails: the mount is undone and the error is the program\'s', async () => {
    writeFileSync(join(fake, 'refuse-remount'), '');
    const target = join(dir, 'target');
    mkdirSync(target);
    await expect(isolated.bindReadOnly(src, target)).rejects.toThrow(/remount refused/);
    expect(mountsAt(target)).toEqual([]);
  });
});
