import { ChildProcess, spawn } from 'child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { NOT_RUN_EXIT_CODE, StateFile, WRAPPER_SCRIPT, WRAPPER_SCRIPT_IN_SPEC, wrapperFile } from '../src/wrapper';
import { kubeletExpand } from './util/kubelet-expansion';
import { findPeer } from './util/peers';

/** The script as the shell in a pod receives it: the pod spec's text after the kubelet's expansion. */
const DELIVERED = kubeletExpand(WRAPPER_SCRIPT_IN_SPEC, { HOME: '/home', state: 'x', pid: '1' });

test('the kubelet delivers the script unchanged', () => {
  expect(DELIVERED).toBe(WRAPPER_SCRIPT);
});

/** The shells an app image may have as /bin/sh. */
const SHELLS: [string, string[]][] = [
  ['dash', ['/bin/dash']],
  ['busybox ash', [findPeer('busybox') ?? '/bin/busybox', 'sh']],
  ['bash', ['/bin/bash']],
];

interface Ran {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly recorded: string;
}

interface WrapOptions {
  readonly stdout?: string;
  readonly input?: string;
  readonly signalAfterMs?: number;
  readonly signal?: NodeJS.Signals;
  /** Seconds passed as --await-pull. */
  readonly awaitPull?: number;
  readonly env?: NodeJS.ProcessEnv;
  readonly started?: (child: ChildProcess) => void;
  /** More options before `--`. */
  readonly flags?: string[];
  /** The working directory the shell starts in (the container's). */
  readonly cwd?: string;
}

describe.each(SHELLS)('oras-wrap under %s', (_name, shell) => {
  let state: string;
  beforeEach(() => {
    state = mkdtempSync(join(tmpdir(), 'oras-wrap-'));
  });
  afterEach(() => rmSync(state, { recursive: true, force: true }));

  /** Runs the wrapper as the pod does: `sh -c "$WRAPPER_SCRIPT" oras-wrap …`. */
  function wrap(argv: string[], options: WrapOptions = {}): Promise<Ran> {
    const args = [...shell.slice(1), '-c', DELIVERED, 'oras-wrap', '--state', state,
      ...(options.stdout ? ['--stdout', options.stdout] : []), ...(options.awaitPull ? ['--await-pull', String(options.awaitPull)] : []), ...(options.flags ?? []), '--', ...argv];
    return new Promise((resolve) => {
      const child = spawn(shell[0], args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env, cwd: options.cwd });
      options.started?.(child);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.stderr.on('data', (d) => { stderr += d; });
      // A command that exits at once closes stdin before we write to it.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input ?? '');
      if (options.signalAfterMs) setTimeout(() => child.kill(options.signal ?? 'SIGTERM'), options.signalAfterMs);
      child.on('close', (code, signal) => {
        const exitCode = join(state, StateFile.EXIT_CODE);
        resolve({ code, signal, stdout, stderr, recorded: existsSync(exitCode) ? readFileSync(exitCode, 'utf8') : '' });
      });
    });
  }

  test('the argv arrives exactly: spaces, quotes, $, globs, empty and multi-line arguments', async () => {
    const args = ['a b', 'it\'s', '"quoted"', '$HOME', '$(id)', '`id`', '*', '', 'line1\nline2', '--', '-n', '\\'];
    const result = await wrap(['/usr/bin/printf', '<%s>\\n', ...args]);
    expect(result.stdout).toBe(args.map((a) => `<${a}>\n`).join(''));
    expect(result.code).toBe(0);
    expect(result.recorded).toBe('0\n');
  });

  test('the exit code is returned and recorded', async () => {
    expect(await wrap(['/bin/sh', '-c', 'exit 3'])).toMatchObject({ code: 3, recorded: '3\n' });
  });

  test('a command killed by a signal gives 128+n', async () => {
    expect(await wrap(['/bin/sh', '-c', 'kill -9 $$'])).toMatchObject({ code: 137, recorded: '137\n' });
  });

  test('a missing command gives 127 and says so', async () => {
    const result = await wrap(['/nonexistent/tool', 'x']);
    expect(result.code).toBe(127);
    expect(result.recorded).toBe('127\n');
  });

  test('TERM reaches the command, which may exit on its own terms', async () => {
    const result = await wrap(['/bin/sh', '-c', 'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.05; done'], { signalAfterMs: 400 });
    expect(result.stdout).toContain('got-term');
    expect(result).toMatchObject({ code: 42, recorded: '42\n' });
  });

  test('TERM to a command that does not catch it ends it with 143', async () => {
    const result = await wrap(['/bin/sleep', '30'], { signalAfterMs: 300 });
    expect(result).toMatchObject({ code: 143, recorded: '143\n' });
  });

  test('stdout goes to the file and to the log', async () => {
    const file = join(state, 'stdout.log');
    const result = await wrap(['/bin/sh', '-c', 'echo one; echo two; echo err >&2; exit 5'], { stdout: file });
    expect(result.stdout).toBe('one\ntwo\n');
    expect(result.stderr).toBe('err\n');
    expect(readFileSync(file, 'utf8')).toBe('one\ntwo\n');
    expect(result).toMatchObject({ code: 5, recorded: '5\n' });
  });

  test('stdin reaches the command', async () => {
    expect((await wrap(['/bin/cat'], { input: 'from stdin\n' })).stdout).toBe('from stdin\n');
  });

  test('its PID is recorded before the command runs', async () => {
    let pid: number | undefined;
    await wrap(['/bin/sh', '-c', `cat "${state}/wrapper.pid" > "${state}/seen"`], { started: (child) => { pid = child.pid; } });
    expect(readFileSync(join(state, 'seen'), 'utf8')).toBe(`${pid}\n`);
  });

  test('usage errors exit 126', async () => {
    const child = await new Promise<number | null>((resolve) => {
      spawn(shell[0], [...shell.slice(1), '-c', DELIVERED, 'oras-wrap', '--bogus'], { stdio: 'ignore' }).on('close', resolve);
    });
    expect(child).toBe(126);
  });

  describe('--copy-in and --copy-out: nothing mounted over the working dir', () => {
    let workdir: string;
    let staged: string;
    let out: string;
    beforeEach(() => {
      workdir = join(state, 'work');
      staged = join(state, 'staged');
      out = join(state, 'out');
      mkdirSync(join(workdir, 'kept'), { recursive: true });
      writeFileSync(join(workdir, 'kept', 'image.txt'), 'from the image\n');
      mkdirSync(join(staged, 'sub'), { recursive: true });
      writeFileSync(join(staged, 'input.txt'), 'input\n');
      writeFileSync(join(staged, 'sub', 'deep.txt'), 'deep\n');
      writeFileSync(join(state, StateFile.INPUTS), '[]');
      writeFileSync(join(state, StateFile.PULL_PID), '999999999\n');
    });
    const files = (dir: string) => (readdirSync(dir, { recursive: true }) as string[]).sort();

    test('inputs land next to what the image keeps, resolved in the working dir; a relative output file is copied by its name', async () => {
      const result = await wrap(['/bin/sh', '-c', 'ls kept inputs inputs/sub > listing.txt; cat kept/image.txt inputs/input.txt >> listing.txt'], {
        cwd: workdir, awaitPull: 5, flags: ['--copy-in', `${staged}=inputs`, '--copy-in', `${staged}=kept`, '--copy-out', `listing.txt=${out}/app`],
      });
      expect(result).toMatchObject({ code: 0, stderr: '', recorded: '0\n' });
      expect(files(join(workdir, 'kept'))).toEqual(['image.txt', 'input.txt', 'sub', 'sub/deep.txt']);
      expect(files(join(out, 'app'))).toEqual(['listing.txt']);
      expect(readFileSync(join(out, 'app', 'listing.txt'), 'utf8')).toBe('inputs:\ninput.txt\nsub\n\ninputs/sub:\ndeep.txt\n\nkept:\nimage.txt\ninput.txt\nsub\nfrom the image\ninput\n');
    });

    test('a directory is copied under its own name, "." as its contents, and the piped stdout file is in it', async () => {
      const flags = (src: string, dir: string) => ['--stdout', 'results/stdout.txt', '--copy-out', `${src}=${out}/${dir}`];
      const command = ['/bin/sh', '-c', 'mkdir -p results && echo hello > results/a.txt && echo piped'];
      expect(await wrap(command, { cwd: workdir, flags: flags('results', 'named') })).toMatchObject({ code: 0, stdout: 'piped\n' });
      expect(files(join(out, 'named'))).toEqual(['results', 'results/a.txt', 'results/stdout.txt']);
      expect(readFileSync(join(out, 'named', 'results', 'stdout.txt'), 'utf8')).toBe('piped\n');
      rmSync(join(state, StateFile.STDOUT_FIFO));
      expect(await wrap(command, { cwd: join(workdir, 'kept'), flags: flags('.', 'contents') })).toMatchObject({ code: 0 });
      expect(files(join(out, 'contents'))).toEqual(['image.txt', 'results', 'results/a.txt', 'results/stdout.txt']);
    });

    test('a missing output fails a successful command with the reason, for oras-push', async () => {
      const result = await wrap(['/bin/true'], { cwd: workdir, flags: ['--copy-out', `pancakes.txt=${out}/app`] });
      expect(result).toMatchObject({ code: 1, recorded: '1\n' });
      expect(result.stderr).toBe(`oras-wrap: the output path "pancakes.txt" does not exist in ${workdir} after the command\n`);
      expect(readFileSync(join(state, StateFile.OUTPUT_FAILED), 'utf8')).toBe(`the output path "pancakes.txt" does not exist in ${workdir} after the command\n`);
    });

    test('the working dir "/" is no output: it names the fix', async () => {
      const result = await wrap(['/bin/true'], { cwd: '/', flags: ['--copy-out', `.=${out}/app`] });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/the output path "\." \(resolved in \/\) is the root or under \/oras; set output-path to the file or directory the command writes/);
    });

    test('an input path it cannot write: the command does not run, and the message names the fix', async () => {
      const marker = join(state, 'ran');
      writeFileSync(join(workdir, 'file'), 'x');
      const result = await wrap(['/bin/sh', '-c', `touch ${marker}`], { cwd: workdir, awaitPull: 5, flags: ['--copy-in', `${staged}=file/inputs`] });
      expect(result).toMatchObject({ code: NOT_RUN_EXIT_CODE, recorded: '' });
      expect(result.stderr).toMatch(/the command did not run: its inputs could not be copied into "file\/inputs" \(resolved in .*\/work\)\. The input path must be a directory outside \/oras that the container's user \(uid \d+\) can write: set input-path to one\./);
      expect(readFileSync(join(state, StateFile.PULL_FAILED), 'utf8')).toMatch(/^its inputs could not be copied into "file\/inputs"/);
      expect(existsSync(marker)).toBe(false);
    });

    test('--id: one of several app containers writes its own files', async () => {
      const result = await wrap(['/bin/sh', '-c', 'exit 4'], { flags: ['--id', 'second'] });
      expect(result).toMatchObject({ code: 4, recorded: '' });
      expect(readFileSync(join(state, wrapperFile(StateFile.EXIT_CODE, 'second')), 'utf8')).toBe('4\n');
      expect(existsSync(join(state, wrapperFile(StateFile.WRAPPER_PID, 'second')))).toBe(true);
    });
  });

  describe('--await-pull: oras-pull runs beside it', () => {
    /** A process that stands for oras-pull: its PID goes into pull.pid. */
    let pull: ChildProcess | undefined;
    const startPull = () => {
      pull = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
      writeFileSync(join(state, StateFile.PULL_PID), `${pull.pid}\n`);
    };
    afterEach(() => { pull?.kill('SIGKILL'); });
    const later = (ms: number, what: () => void) => setTimeout(what, ms);
    const ready = () => writeFileSync(join(state, StateFile.INPUTS), '[]');

    test('inputs already there: the command runs at once, with stdin', async () => {
      startPull();
      ready();
      const started = Date.now();
      expect(await wrap(['/bin/cat'], { awaitPull: 5, input: 'in\n' })).toMatchObject({ code: 0, stdout: 'in\n', recorded: '0\n' });
      expect(Date.now() - started).toBeLessThan(1000);
    });

    test('the command starts within a tick of the ready marker, not before', async () => {
      let readyAt = 0;
      const result = await wrap(['/bin/sh', '-c', `[ -e "${state}/${StateFile.INPUTS}" ] && echo ran`], {
        awaitPull: 5,
        started: () => {
          later(100, startPull);
          later(400, () => { ready(); readyAt = Date.now(); });
        },
      });
      expect(result).toMatchObject({ code: 0, stdout: 'ran\n' });
      expect(Date.now() - readyAt).toBeLessThan(500);
    });

    test('pull.failed: the command does not run; the wrapper says why, points at the log and exits 125', async () => {
      startPull();
      const marker = join(state, 'ran');
      const result = await wrap(['/bin/sh', '-c', `touch ${marker}`], {
        awaitPull: 5,
        env: { ...process.env, HOSTNAME: 'step-abc' },
        started: () => later(200, () => writeFileSync(join(state, StateFile.PULL_FAILED), 'input r/a:1 is not there: waiting timed out after 10 s. Look at its Job.\n')),
      });
      expect(result).toMatchObject({ code: NOT_RUN_EXIT_CODE, recorded: '' });
      expect(result.stderr).toBe('oras-wrap: the command did not run: its inputs could not be pulled: input r/a:1 is not there: waiting timed out after 10 s. Look at its Job. '
        + 'The log of container oras-pull says more: kubectl logs step-abc -c oras-pull\n');
      expect(existsSync(marker)).toBe(false);
    });

    test('memoized: the command does not run, the wrapper names the output it reuses and exits 0, and records no exit code for oras-push', async () => {
      startPull();
      const marker = join(state, 'ran');
      const result = await wrap(['/bin/sh', '-c', `touch ${marker}`], {
        awaitPull: 5,
        started: () => later(200, () => writeFileSync(join(state, StateFile.MEMOIZED), 'oras:5000/wf/s@sha256:abc\n')),
      });
      expect(result).toMatchObject({ code: 0, recorded: '' });
      expect(result.stderr).toBe('oras-wrap: memoized: the output for these inputs exists (oras:5000/wf/s@sha256:abc); the command did not run\n');
      expect(existsSync(marker)).toBe(false);
    });

    test('oras-pull killed without a marker: exits 125 at once and leaves pull.failed for oras-push', async () => {
      startPull();
      const started = Date.now();
      const result = await wrap(['/bin/true'], { awaitPull: 5, started: () => later(300, () => pull!.kill('SIGKILL')) });
      expect(result).toMatchObject({ code: NOT_RUN_EXIT_CODE, recorded: '' });
      expect(result.stderr).toMatch(/the command did not run: oras-pull ended without pulling its inputs \(killed by SIGKILL, the OOM killer or the node\)/);
      expect(readFileSync(join(state, StateFile.PULL_FAILED), 'utf8')).toMatch(/^oras-pull ended without pulling its inputs/);
      expect(Date.now() - started).toBeLessThan(1500);
    });

    test('oras-pull that ends right after its marker is no failure', async () => {
      writeFileSync(join(state, StateFile.PULL_PID), '999999999\n');
      ready();
      expect(await wrap(['/bin/true'], { awaitPull: 5 })).toMatchObject({ code: 0, recorded: '0\n' });
    });

    test('oras-pull that never starts: gives up after --await-pull seconds', async () => {
      const result = await wrap(['/bin/true'], { awaitPull: 1 });
      expect(result).toMatchObject({ code: NOT_RUN_EXIT_CODE, recorded: '' });
      expect(result.stderr).toMatch(/the command did not run: oras-pull did not start within 1 s/);
      expect(readFileSync(join(state, StateFile.PULL_FAILED), 'utf8')).toBe('oras-pull did not start within 1 s\n');
    });

    test('TERM while waiting ends the wrapper; the command never runs', async () => {
      startPull();
      const result = await wrap(['/bin/true'], { awaitPull: 5, signalAfterMs: 300 });
      expect(result).toMatchObject({ code: null, signal: 'SIGTERM', recorded: '' });
    });

    test.each([
      ['a sleep without fractions: whole seconds', '#!/bin/sh\ncase "$1" in *.*) echo "sleep: invalid number \'$1\'" >&2; exit 1;; esac\nexec /bin/sleep "$@"\n'],
      ['no sleep at all: a busy wait', undefined],
    ])('%s', async (_case, sleep) => {
      const bin = join(state, 'bin');
      mkdirSync(bin);
      if (sleep) {
        writeFileSync(join(bin, 'sleep'), sleep);
        chmodSync(join(bin, 'sleep'), 0o755);
      }
      startPull();
      const result = await wrap(['/bin/echo', 'ran'], { awaitPull: 5, env: { ...process.env, PATH: bin }, started: () => later(300, ready) });
      expect(result).toMatchObject({ code: 0, stdout: 'ran\n', stderr: '' });
    });
  });
});
