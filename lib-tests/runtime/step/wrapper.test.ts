import { spawn } from 'child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { WRAPPER_SCRIPT } from '../../../runtime/step/wrapper';
import { findPeer } from '../../util/peers';

/** The shells an app image may have as /bin/sh. */
const SHELLS: [string, string[]][] = [
  ['dash', ['/bin/dash']],
  ['busybox ash', [findPeer('busybox') ?? '/bin/busybox', 'sh']],
  ['bash', ['/bin/bash']],
];

interface Ran {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly recorded: string;
}

describe.each(SHELLS)('oras-wrap under %s', (_name, shell) => {
  let state: string;
  let script: string;
  beforeEach(() => {
    state = mkdtempSync(join(tmpdir(), 'oras-wrap-'));
    script = join(state, 'oras-wrap');
    writeFileSync(script, WRAPPER_SCRIPT);
  });
  afterEach(() => rmSync(state, { recursive: true, force: true }));

  function wrap(argv: string[], options: { stdout?: string; input?: string; signalAfterMs?: number; signal?: NodeJS.Signals } = {}): Promise<Ran> {
    const args = [...shell.slice(1), script, '--state', state, ...(options.stdout ? ['--stdout', options.stdout] : []), '--', ...argv];
    return new Promise((resolve) => {
      const child = spawn(shell[0], args, { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.stderr.on('data', (d) => { stderr += d; });
      // A command that exits at once closes stdin before we write to it.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input ?? '');
      if (options.signalAfterMs) setTimeout(() => child.kill(options.signal ?? 'SIGTERM'), options.signalAfterMs);
      child.on('close', (code) => {
        let recorded = '';
        try {
          recorded = readFileSync(join(state, 'exit-code'), 'utf8');
        } catch { /* not written */ }
        resolve({ code, stdout, stderr, recorded });
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
    await wrap(['/bin/sh', '-c', `cat "${state}/wrapper.pid" > "${state}/seen"`]);
    expect(readFileSync(join(state, 'seen'), 'utf8')).toMatch(/^\d+\n$/);
  });

  test('usage errors exit 126', async () => {
    const child = await new Promise<number | null>((resolve) => {
      spawn(shell[0], [...shell.slice(1), script, '--bogus'], { stdio: 'ignore' }).on('close', resolve);
    });
    expect(child).toBe(126);
  });
});
