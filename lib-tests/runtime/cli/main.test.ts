import { existsSync, mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { gzipSync } from 'zlib';
import { main } from '../../../runtime/cli/main';
import { craftTar } from '../../util/crafted-tar';
import { describeWithPeers, run } from '../../util/peers';
import { RogueRegistry } from '../../util/rogue-registry';

const root = join(__dirname, '..', '..', '..');
const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const cli = (...args: string[]) => run(process.execPath, [join(root, 'bin', 'oras-runtime.js'), ...args], { cwd: root });

describe('oras-runtime CLI', () => {
  beforeAll(() => {
    if (!existsSync(join(root, 'runtime', 'build', 'oras-runtime.cjs'))) {
      throw new Error('runtime/build/oras-runtime.cjs is missing: run "npx projen compile" before the tests');
    }
  });

  test('npx oras-runtime --version prints the package version', () => {
    const result = run('npx', ['--no-install', 'oras-runtime', '--version'], { cwd: root });
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`${version}\n`);
  });

  test('--help prints the usage', () => {
    const result = cli('--help');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`oras-runtime ${version}`);
    expect(result.stdout).toContain('Usage: oras-runtime <command> [options]');
  });

  test('no command prints the usage and exits 2', () => {
    const result = cli();
    expect(result.status).toBe(2);
    expect(result.stdout).toContain('Usage:');
  });

  test('step push with Jobs to advance needs the step name their label carries', () => {
    const result = cli('step', 'push', '--state', tmpdir(), '--dir', tmpdir(), '--to', 'cache:5000/wf/s:r1-output', '--resume', 'wf-t-r1=cache:5000/wf/s:r1-output');
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('oras-runtime step: --resume and --block need --annotation org.cdk8s-oras.step.name=<step>');
  });

  test('an unknown command names itself and the way out', () => {
    const result = cli('frobnicate');
    expect(result.status).toBe(2);
    expect(result.stderr).toBe('oras-runtime: unknown command "frobnicate". Run "oras-runtime --help" for the list.\n');
  });

  test('a mistyped command gets the command that was meant', () => {
    const result = cli('psuh');
    expect(result.status).toBe(2);
    expect(result.stderr).toBe('oras-runtime: unknown command "psuh"; did you mean "push"? Run "oras-runtime --help" for the list.\n');
  });
});

describeWithPeers(['python3'], 'oras-runtime main, in process', () => {
  test('control characters and NUL bytes from the registry reach stderr escaped', async () => {
    const rogue = await RogueRegistry.start();
    const out = mkdtempSync(join(tmpdir(), 'oras-main-'));
    const written: string[] = [];
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => { written.push(String(chunk)); return true; });
    const stdout = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      const tar = craftTar([{ name: 'data/x', data: 'x', pax: { path: 'data/a\u0000\u001b[2Jb' } }]);
      const ref = rogue.artifact('main/nul', 'v1', [{
        content: gzipSync(tar), title: 'data', mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', annotations: { 'io.deis.oras.content.unpack': 'true' },
      }]);
      expect(await main(['pull', '--plain-http', ref, '-o', out])).toBe(1);
      const text = written.join('');
      expect(text).toContain('the entry "data/a\\x00\\x1b[2Jb" has a NUL byte in its name');
      expect(text).not.toMatch(/[\x00\x1b]/);
    } finally {
      stderr.mockRestore();
      stdout.mockRestore();
      rmSync(out, { recursive: true, force: true });
      await rogue.stop();
    }
  });
});
