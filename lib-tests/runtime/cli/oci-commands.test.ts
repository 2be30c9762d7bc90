import { spawn } from 'child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, ftruncateSync, writeSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Distribution } from '../../util/distribution';
import { measure } from '../../util/measure';
import { describeWithPeers, findPeer, run } from '../../util/peers';

const root = join(__dirname, '..', '..', '..');
const bundle = join(root, 'runtime', 'build', 'oras-runtime.cjs');

describeWithPeers(['docker-registry'], 'oras-runtime push, pull, resolve and wait', () => {
  let registry: Distribution;
  let auth: Distribution;
  let scratch: string;
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [bundle, ...args], { cwd: scratch, env: { PATH: process.env.PATH, HOME: scratch, ...env } });

  beforeAll(async () => {
    registry = await Distribution.start();
    auth = await Distribution.start({ htpasswd: { users: { ci: 'ci-password-value' } } });
  });
  afterAll(async () => {
    await registry.stop();
    await auth.stop();
  });
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-cli-'));
    writeFileSync(join(scratch, 'a.txt'), 'alpha');
    mkdirSync(join(scratch, 'dir'));
    writeFileSync(join(scratch, 'dir', 'b.txt'), 'beta');
  });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  test('push prints the digest; resolve and pull agree; progress is JSON lines on stderr', () => {
    const ref = `${registry.host}/cli/basic:v1`;
    const pushed = cli(['push', '--plain-http', ref, 'a.txt', 'dir:application/vnd.example.dir+gzip', '--artifact-type', 'application/vnd.example']);
    expect(pushed.stderr.split('\n').filter(Boolean).every((line) => JSON.parse(line).event)).toBe(true);
    expect(pushed.status).toBe(0);
    const digest = pushed.stdout.trim();
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(cli(['resolve', '--plain-http', ref]).stdout.trim()).toBe(digest);
    const pulled = cli(['pull', '--plain-http', ref, '-o', 'out', '--concurrency', '2']);
    expect(pulled.status).toBe(0);
    expect(pulled.stdout.trim()).toBe(digest);
    expect(readFileSync(join(scratch, 'out', 'a.txt'), 'utf8')).toBe('alpha');
    expect(readFileSync(join(scratch, 'out', 'dir', 'b.txt'), 'utf8')).toBe('beta');
  });

  test.each([
    [['push'], 'push needs an artifact reference'],
    [['push', 'Bad/Ref:1'], 'Invalid artifact reference "Bad/Ref:1"'],
    [['pull', '127.0.0.1:1/x:y', '--concurrency', '0', '-o', 'o'], '--concurrency must be a positive integer, not "0"'],
    [['pull', '127.0.0.1:1/x:y', '--plain-http', '--insecure'], '--plain-http and --insecure exclude each other'],
    [['wait', '127.0.0.1:1/x:y', '--timeout', 'soon'], '--timeout: "soon" is not a duration'],
    [['pull', '127.0.0.1:1/x:y', '--bogus'], "Unknown option '--bogus'"],
  ])('usage error %j exits 2 and says what to fix', (args, message) => {
    const result = cli(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stderr).toContain('--help');
  });

  test('a missing artifact: exit 1, the reference, the status and the registry code', () => {
    const result = cli(['pull', '--plain-http', `${registry.host}/cli/missing:v1`, '-o', 'out']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`oras-runtime: pull ${registry.host}/cli/missing:v1: GET http://${registry.host}/v2/cli/missing/manifests/v1: 404 (MANIFEST|NAME)_UNKNOWN`));
  });

  test('credentials from ORAS_USER/ORAS_PASS never reach stdout or stderr', () => {
    const ref = `${auth.host}/cli/secret:v1`;
    const env = { ORAS_USER: 'ci', ORAS_PASS: 'ci-password-value' };
    const pushed = cli(['push', '--plain-http', ref, 'a.txt'], env);
    expect(pushed.status).toBe(0);
    const pulled = cli(['pull', '--plain-http', ref, '-o', 'out'], env);
    expect(pulled.status).toBe(0);
    const denied = cli(['pull', '--plain-http', ref, '-o', 'out2'], { ORAS_USER: 'ci', ORAS_PASS: 'not-the-password' });
    expect(denied.status).toBe(1);
    for (const output of [pushed.output, pulled.output, denied.output]) {
      expect(output).not.toContain('ci-password-value');
      expect(output).not.toContain('not-the-password');
    }
  });

  test('DOCKER_CONFIG and --registry-config are honoured', () => {
    const ref = `${auth.host}/cli/config:v1`;
    const configDir = join(scratch, 'docker');
    mkdirSync(configDir);
    writeFileSync(join(configDir, 'config.json'), JSON.stringify({ auths: { [auth.host]: { auth: Buffer.from('ci:ci-password-value').toString('base64') } } }));
    expect(cli(['push', '--plain-http', ref, 'a.txt'], { DOCKER_CONFIG: configDir }).status).toBe(0);
    expect(cli(['pull', '--plain-http', ref, '-o', 'out', '--registry-config', join(configDir, 'config.json')]).status).toBe(0);
    const missing = cli(['pull', '--plain-http', ref, '-o', 'out', '--registry-config', join(scratch, 'nope.json')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`cannot read registry config ${join(scratch, 'nope.json')}`);
  });

  test('wait returns once the artifact appears, and times out clearly when it does not', async () => {
    const ref = `${registry.host}/cli/later:v1`;
    const waiting = new Promise<{ status: number | null; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, [bundle, 'wait', '--plain-http', ref, '--timeout', '30s'], { cwd: scratch });
      let stdout = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.on('close', (status) => resolve({ status, stdout }));
    });
    await new Promise((r) => setTimeout(r, 1500));
    const digest = cli(['push', '--plain-http', ref, 'a.txt']).stdout.trim();
    expect(await waiting).toEqual({ status: 0, stdout: `${digest}\n` });

    const started = Date.now();
    const timedOut = cli(['wait', '--plain-http', `${registry.host}/cli/never:v1`, '--timeout', '2s']);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(timedOut.status).toBe(1);
    expect(timedOut.stderr).toMatch(/wait .*cli\/never:v1: timed out after 2 s; the last answer was: HEAD .*404/);
  });

  test('wait stops at once on an authentication error', () => {
    const result = cli(['wait', '--plain-http', `${auth.host}/cli/locked:v1`, '--timeout', '60s']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/401 UNAUTHORIZED/);
  });

  test('on a terminal, progress is a live display with bytes and rate', () => {
    const script = findPeer('script');
    if (!script) throw new Error('util-linux "script" is needed to give the CLI a terminal');
    const ref = `${registry.host}/cli/tty:v1`;
    const command = [process.execPath, bundle, 'push', '--plain-http', ref, 'a.txt'].map((a) => `'${a}'`).join(' ');
    const result = run(script, ['-qec', command, '/dev/null'], { cwd: scratch });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/done\s+a\.txt 5 B in \d+\.\d s \([\d.]+ (B|KiB|MiB)\/s\)/);
    expect(result.stdout).not.toContain('{"time"');
  });

  test('memory does not grow with artifact size (streaming push and pull)', async () => {
    const sizes = [16, 512];
    const peaks: Record<string, number> = {};
    for (const mib of sizes) {
      const file = join(scratch, `blob-${mib}`);
      const fd = openSync(file, 'w');
      // Sparse but with real bytes every MiB, so the digest is not trivial.
      ftruncateSync(fd, mib * 1024 * 1024);
      for (let i = 0; i < mib; i++) writeSync(fd, Buffer.from(`block ${i}`), 0, undefined, i * 1024 * 1024);
      closeSync(fd);
      const ref = `${registry.host}/cli/big:${mib}`;
      const pushed = await measure(process.execPath, [bundle, 'push', '--plain-http', ref, `blob-${mib}`], { cwd: scratch });
      expect(pushed.status).toBe(0);
      const pulled = await measure(process.execPath, [bundle, 'pull', '--plain-http', ref, '-o', `out-${mib}`], { cwd: scratch });
      expect(pulled.status).toBe(0);
      peaks[`push ${mib}`] = pushed.peakMiB;
      peaks[`pull ${mib}`] = pulled.peakMiB;
      rmSync(file);
      rmSync(join(scratch, `out-${mib}`), { recursive: true });
    }
    // 32 times the data may cost at most 48 MiB more resident memory.
    expect(peaks['push 512'] - peaks['push 16']).toBeLessThan(48);
    expect(peaks['pull 512'] - peaks['pull 16']).toBeLessThan(48);
    expect(peaks['pull 512']).toBeLessThan(160);
  });
});
