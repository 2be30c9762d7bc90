import { ChildProcessByStdio, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, openSync, readFileSync, statSync } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { posix } from 'node:path';

/** Linux's O_PATH, which node:fs does not export: a descriptor that names a file without opening it. */
const O_PATH = 0o10000000;

/** One line of /proc/self/mountinfo. */
interface MountInfo {
  /** major:minor of the filesystem. */
  readonly device: string;
  /** The path within that filesystem that the mount shows (a bind mount's source). */
  readonly root: string;
  readonly point: string;
  readonly options: string[];
}

/** The mounts at a mount point, in mount order. */
type MountsAt = (point: string) => MountInfo[];

/** A mountinfo path with its octal escapes decoded. */
function decode(value: string): string {
  return value.replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)));
}

/** A path as mountinfo writes it: the kernel escapes space, tab, newline and backslash. */
function encode(path: string): string {
  return path.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

function parseLine(line: string): MountInfo {
  const fields = line.split(' ');
  return { device: fields[2], root: decode(fields[3]), point: decode(fields[4]), options: fields[5].split(',') };
}

/** The lines of `text` that contain `needle`, each once. */
function linesWith(text: string, needle: string): string[] {
  const lines: string[] = [];
  let from = 0;
  for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, from)) {
    const end = text.indexOf('\n', at);
    from = end === -1 ? text.length : end;
    lines.push(text.slice(text.lastIndexOf('\n', at) + 1, from));
  }
  return lines;
}

/**
 * Reads the mounts of this namespace. A lookup splits only the lines that
 * hold the point's escaped path: a node with many mounts costs one read, not a parse of each line.
 */
async function mountTable(): Promise<MountsAt> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return (point) => linesWith(text, ` ${encode(point)} `).map(parseLine).filter((m) => m.point === point);
}

/** The topmost mount at `point`: the last one mounted there. */
function topAt(mountsAt: MountsAt, point: string): MountInfo | undefined {
  return mountsAt(point).pop();
}

/** The id of the mount that holds `path` itself (a symbolic link is not followed), or undefined when it cannot be opened. */
function mountIdOf(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, O_PATH | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    // Synchronous: an O_PATH open and a few lines the kernel writes at once cost less than trips through the thread pool.
    return /^mnt_id:\s*(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether a mount sits at `path`: path lookup enters another mount there (the
 * topmost) when the mount id of `path` differs from its parent's. Without ids
 * (`/`, a path that cannot be opened), mountinfo decides.
 */
export async function isMountPoint(path: string): Promise<boolean> {
  const [own, parent] = path === '/' ? [] : [mountIdOf(path), mountIdOf(posix.dirname(path))];
  if (own && parent) return own !== parent;
  return topAt(await mountTable(), path) !== undefined;
}

/** `path` and the directories above it, deepest first. */
function selfAndAncestors(path: string): string[] {
  const paths = [path];
  while (paths[paths.length - 1] !== '/') paths.push(posix.dirname(paths[paths.length - 1]));
  return paths;
}

/**
 * Whether the topmost mount at `target` is a bind mount of the directory
 * `source`: the same filesystem, showing the same path within it.
 */
export async function isBindMountOf(target: string, source: string): Promise<boolean> {
  const mountsAt = await mountTable();
  const top = topAt(mountsAt, target);
  if (!top) return false;
  // A source removed while mounted shows as "<path>//deleted".
  const real = await realpath(source).catch(() => source);
  // The mount that holds `source`: the deepest mount point above it, the last mounted there.
  const holder = selfAndAncestors(real).map((point) => topAt(mountsAt, point)).find(Boolean);
  const root = holder && posix.join(holder.root, posix.relative(holder.point, real));
  return top.device === holder?.device && (top.root === root || top.root === `${root}//deleted`);
}

/** How `access(W_OK)` finds `path`: writable, refused with EROFS (a read-only mount or filesystem), or neither. */
function writeAccess(path: string): 'writable' | 'read-only' | 'unknown' {
  try {
    accessSync(path, constants.W_OK);
    return 'writable';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EROFS' ? 'read-only' : 'unknown';
  }
}

function sameFilesystem(a: string, b: string): boolean {
  try {
    return statSync(a).dev === statSync(b).dev;
  } catch {
    return false;
  }
}

/**
 * Whether the topmost mount at `target`, bound from `source`, is itself
 * read-only. EROFS at the target comes from the mount or from its filesystem;
 * when the source, on the same filesystem, takes writes, it is the mount's.
 * Other answers are read from mountinfo.
 */
async function mountedReadOnly(target: string, source: string): Promise<boolean> {
  // Synchronous: three metadata calls cost less than trips through the thread pool.
  const [atTarget, atSource, same] = [writeAccess(target), writeAccess(source), sameFilesystem(target, source)];
  if (atTarget === 'writable') return false;
  if (atTarget === 'read-only' && atSource === 'writable' && same) return true;
  return topAt(await mountTable(), target)?.options.includes('ro') ?? false;
}

/** The environment of mount programs: in the C locale, they load no locale files. */
function programEnvironment(): NodeJS.ProcessEnv {
  return { ...process.env, LC_ALL: 'C' };
}

function programFailed(file: string, args: string[], output: string, status: number | string | null): Error {
  return new Error(`${file} ${args.join(' ')}: ${output.trim() || `exit ${status}`}`);
}

/** Runs a mount program as a child of this process; rejects with what it wrote to stderr when it fails. */
function spawnProgram(file: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'], env: programEnvironment() });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code, signal) => (code === 0 ? resolve() : reject(programFailed(file, args, stderr, code ?? signal))));
  });
}

/**
 * Reads a count and that many lines, a program and its arguments; runs them
 * and writes their output, then the marker ($0) and their status on a line.
 */
const SHELL_SCRIPT = 'while IFS= read -r n; do set --; while [ $# -lt "$n" ] && IFS= read -r a; do set -- "$@" "$a"; done; '
  + '[ $# -eq "$n" ] || exit; "$@" </dev/null 2>&1; s=$?; printf \'\\n%s %d\\n\' "$0" "$s"; done';

interface ShellCall {
  readonly file: string;
  readonly args: string[];
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/**
 * A shell that runs mount programs for this process, one at a time. A fork of
 * this process copies page tables that grow with its heap (milliseconds);
 * a fork of the shell costs little. Between calls, it does not keep this process alive.
 */
class ProgramShell {
  private readonly marker = randomBytes(16).toString('hex');
  /** The line that ends a program's output: the marker and its exit status. */
  private readonly ending = new RegExp(`\\n${this.marker} (\\d+)\\n$`);
  private child?: ChildProcessByStdio<Socket, Socket, null>;
  private output = '';
  private call?: ShellCall;
  /** The shell could not be started: programs run as children of this process. */
  private unavailable = false;

  public get idle(): boolean {
    return !this.unavailable && this.call === undefined;
  }

  public run(file: string, args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.call = { file, args, resolve, reject };
      this.output = '';
      const child = this.started();
      this.hold(child, true);
      child.stdin.write([args.length + 1, file, ...args].map((line) => `${line}\n`).join(''));
    });
  }

  private started(): ChildProcessByStdio<Socket, Socket, null> {
    if (this.child) return this.child;
    const child = spawn('/bin/sh', ['-c', SHELL_SCRIPT, this.marker], { stdio: ['pipe', 'pipe', 'ignore'], env: programEnvironment() }) as
      ChildProcessByStdio<Socket, Socket, null>;
    const current = () => this.child === child;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => this.received(chunk));
    // A write to a shell that died fails with EPIPE; its exit rejects the call.
    child.stdin.on('error', () => undefined);
    child.on('error', () => current() && this.failedToStart());
    child.on('exit', (code, signal) => current() && this.ended(new Error(`the shell that runs mount programs exited (${code ?? signal})`)));
    this.child = child;
    return child;
  }

  /** Keeps this process alive while a call waits for the shell, and only then. */
  private hold(child: ChildProcessByStdio<Socket, Socket, null>, alive: boolean): void {
    for (const handle of [child, child.stdin, child.stdout]) {
      if (alive) handle.ref();
      else handle.unref();
    }
  }

  private received(chunk: string): void {
    this.output += chunk;
    const end = this.ending.exec(this.output);
    if (!end || !this.call) return;
    const { file, args, resolve, reject } = this.call;
    this.call = undefined;
    if (this.child) this.hold(this.child, false);
    if (end[1] === '0') resolve();
    else reject(programFailed(file, args, this.output.slice(0, end.index), Number(end[1])));
  }

  /** No shell ran, so neither did the program: it runs as a child of this process, as do all later ones. */
  private failedToStart(): void {
    this.unavailable = true;
    const call = this.ended();
    if (call) spawnProgram(call.file, call.args).then(call.resolve, call.reject);
  }

  /** Forgets the shell; rejects its call with `err`, if given, or hands the call back. */
  private ended(err?: Error): ShellCall | undefined {
    if (this.child) this.hold(this.child, false);
    this.child = undefined;
    const call = this.call;
    this.call = undefined;
    if (call && err) call.reject(err);
    return call;
  }
}

const shell = new ProgramShell();

/**
 * Runs a mount program through the shell when it is idle and each argument
 * fits on a line; otherwise as a child of this process.
 */
function run(file: string, args: string[]): Promise<void> {
  return shell.idle && !args.some((arg) => /[\n\0]/.test(arg)) ? shell.run(file, args) : spawnProgram(file, args);
}

/**
 * Bind-mounts `source` on `target` read-only. util-linux mount binds and
 * remounts read-only in one call; the result is checked, and remounted when
 * a mount program did not apply "ro". `--` ends the options: no path is read as one.
 */
export async function bindReadOnly(source: string, target: string): Promise<void> {
  await run('mount', ['-o', 'bind,ro', '--', source, target]);
  if (await mountedReadOnly(target, source)) return;
  try {
    await run('mount', ['-o', 'remount,bind,ro', '--', target]);
  } catch (err) {
    await unmount(target).catch(() => undefined);
    throw err;
  }
}

export async function unmount(target: string): Promise<void> {
  await run('umount', ['--', target]);
}
