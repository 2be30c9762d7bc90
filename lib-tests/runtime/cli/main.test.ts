import { existsSync, readFileSync } from 'fs';
import { join } from 'path';
import { run } from '../../util/peers';

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

  test('an unknown command names itself and the way out', () => {
    const result = cli('frobnicate');
    expect(result.status).toBe(2);
    expect(result.stderr).toBe('oras-runtime: unknown command "frobnicate". Run "oras-runtime --help" for the list.\n');
  });
});
