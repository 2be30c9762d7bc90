import { spawn } from 'child_process';
import { createHash } from 'crypto';
import {
  chmodSync, chownSync, closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync,
  writeFileSync, writeSync,
} from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { gzipSync } from 'zlib';
import { CraftEntry, craftTar } from '../../util/crafted-tar';
import { Distribution } from '../../util/distribution';
import { measure } from '../../util/measure';
import { describeWithPeers, findPeer, requirePeer, run } from '../../util/peers';
import { RogueRegistry } from '../../util/rogue-registry';
import { runAsync } from '../../util/run-async';

const root = join(__dirname, '..', '..', '..');
const bundle = join(root, 'runtime', 'build', 'oras-runtime.cjs');

describeWithPeers(['docker-registry', 'oras'], 'oras-runtime push, pull, resolve and wait', () => {
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
    [['wait', '127.0.0.1:1/x:y', '--timeout', 'soon'], '--timeout: "soon" is not a duration'],
    [['pull', '127.0.0.1:1/x:y', '--bogus'], 'unknown option "--bogus"'],
    [['pull', '127.0.0.1:1/x:y', '--plain-htp'], 'unknown option "--plain-htp"; did you mean "--plain-http"?'],
    [['push', '127.0.0.1:1/x:y', '-x'], 'unknown option "-x"'],
    [['pull', '127.0.0.1:1/x:y', '--min-rate', 'fast'], '--min-rate must be <size>/<duration> such as 32KiB/30s, or 0, not "fast"'],
    [['pull', '127.0.0.1:1/x:y', '--min-rate', '1KiB/soon'], '--min-rate: "soon" is not a duration'],
    [['pull', '127.0.0.1:1/x:y', '--max-unpacked-size', 'lots'], '--max-unpacked-size: "lots" is not a size'],
    [['resolve', '127.0.0.1:1/x:y', '--timeout', 'never'], '--timeout: "never" is not a duration'],
  ])('usage error %j exits 2 and says what to fix', (args, message) => {
    const result = cli(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stderr).toContain('--help');
  });

  test('--ca-file trusts a private CA: a registry it signed works without --insecure, and only with it', async () => {
    const tls = await Distribution.start({ tls: true });
    try {
      writeFileSync(join(scratch, 'ca.crt'), tls.caPem!);
      const ref = `${tls.host}/cli/ca:v1`;
      const refused = cli(['push', ref, 'a.txt']);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(/self-signed certificate|unable to verify|certificate/i);
      expect(cli(['push', '--ca-file', 'ca.crt', ref, 'a.txt']).status).toBe(0);
      expect(cli(['pull', '--ca-file', 'ca.crt', ref, '-o', 'out']).status).toBe(0);
      expect(readFileSync(join(scratch, 'out', 'a.txt'), 'utf8')).toBe('alpha');
    } finally {
      await tls.stop();
    }
  });

  test('step pull reaches each registry with its own settings: plain HTTP for one host, HTTPS with a CA and credentials for another', async () => {
    const secure = await Distribution.start({ tls: true, htpasswd: { users: { ci: 'step-pull-secret' } } });
    try {
      writeFileSync(join(scratch, 'ca.crt'), secure.caPem!);
      const login = Buffer.from('ci:step-pull-secret').toString('base64');
      writeFileSync(join(scratch, 'config.json'), JSON.stringify({ auths: { [secure.host]: { auth: login } } }));
      const plainRef = `${registry.host}/step/plain:v1`;
      const secureRef = `${secure.host}/step/private:v1`;
      expect(cli(['push', '--plain-http', plainRef, 'a.txt']).status).toBe(0);
      expect(cli(['push', '--ca-file', 'ca.crt', '--registry-config', 'config.json', secureRef, 'dir']).status).toBe(0);
      mkdirSync(join(scratch, 'state'));
      const pulled = cli(['step', 'pull', '--state', 'state', '--timeout', '20s', '--input', `${plainRef}=in/plain`, '--input', `${secureRef}=in/private`,
        '--plain-http-host', registry.host, '--registry-config', 'config.json', '--ca-file', 'ca.crt']);
      expect(pulled.status).toBe(0);
      expect(readFileSync(join(scratch, 'in', 'plain', 'a.txt'), 'utf8')).toBe('alpha');
      expect(readFileSync(join(scratch, 'in', 'private', 'dir', 'b.txt'), 'utf8')).toBe('beta');
      expect(JSON.parse(readFileSync(join(scratch, 'state', 'inputs.json'), 'utf8')).map((i: any) => i.reference)).toEqual([plainRef, secureRef]);
      // The global flag still means every host: plain HTTP to the TLS registry fails.
      mkdirSync(join(scratch, 'state2'));
      const wrong = cli(['step', 'pull', '--state', 'state2', '--timeout', '5s', '--input', `${secureRef}=in/again`, '--plain-http', '--registry-config', 'config.json']);
      expect(wrong.status).not.toBe(0);
    } finally {
      await secure.stop();
    }
  });

  test.each([
    [['pull', '127.0.0.1:1/x:y', '--ca-file', 'missing.crt'], /--ca-file missing\.crt cannot be read: ENOENT/],
    [['pull', '127.0.0.1:1/x:y', '--ca-file', 'a.txt'], /--ca-file a\.txt holds no PEM certificate/],
    [['pull', '127.0.0.1:1/x:y', '--ca-file', 'a.txt', '--plain-http'], /--ca-file verifies HTTPS certificates: it goes with neither --plain-http nor --insecure/],
  ])('--ca-file usage error %j', (args, message) => {
    const result = cli(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(message);
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

  test('-u with --password-stdin, or -p with a warning, as oras takes them; no secret is printed', () => {
    const ref = `${auth.host}/cli/flags:v1`;
    const fromStdin = run(process.execPath, [bundle, 'push', '--plain-http', ref, 'a.txt', '-u', 'ci', '--password-stdin'],
      { cwd: scratch, env: { PATH: process.env.PATH, HOME: scratch }, input: 'ci-password-value\n' });
    expect(fromStdin.stderr).not.toContain('WARNING');
    expect(fromStdin.status).toBe(0);
    const onCommandLine = cli(['pull', '--plain-http', ref, '-o', 'out', '-u', 'ci', '-p', 'ci-password-value']);
    expect(onCommandLine.status).toBe(0);
    expect(onCommandLine.stderr).toContain('WARNING! Using --password via the CLI is insecure. Use --password-stdin.');
    expect(readFileSync(join(scratch, 'out', 'a.txt'), 'utf8')).toBe('alpha');
    const wrong = cli(['pull', '--plain-http', ref, '-o', 'out2', '--username', 'ci', '--password', 'not-the-password']);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/401 UNAUTHORIZED/);
    for (const output of [fromStdin.output, onCommandLine.output, wrong.output]) {
      expect(output.replace('-p ci-password-value', '')).not.toContain('ci-password-value');
      expect(output).not.toContain('not-the-password');
    }
    expect(cli(['pull', '--plain-http', ref, '-p', 'x']).stderr).toContain('--password and --password-stdin need --username (-u)');
    expect(cli(['pull', '--plain-http', ref, '-u', 'ci']).stderr).toContain('--username needs --password-stdin (or --password)');
  });

  test('several tags in one push, --export-manifest, and --format json shaped as the oras CLI\'s', () => {
    const repository = `${registry.host}/cli/tags`;
    const pushed = cli(['push', '--plain-http', `${repository}:v1,v2,latest`, 'a.txt', 'dir', '--export-manifest', 'manifest.json', '--format', 'json']);
    expect(pushed.status).toBe(0);
    const ours = JSON.parse(pushed.stdout);
    const exported = readFileSync(join(scratch, 'manifest.json'));
    expect(ours.digest).toBe(`sha256:${createHash('sha256').update(exported).digest('hex')}`);
    expect(ours.referenceAsTags).toEqual([`${repository}:v1`, `${repository}:v2`, `${repository}:latest`]);
    for (const tag of ['v1', 'v2', 'latest']) expect(cli(['resolve', '--plain-http', `${repository}:${tag}`]).stdout.trim()).toBe(ours.digest);
    // The same push and pull by the oras CLI: the same fields.
    const oras = (args: string[]) => run(requirePeer('oras'), args, { cwd: scratch });
    const theirs = JSON.parse(oras(['push', '--plain-http', `${registry.host}/cli/oras-tags:v1,v2`, 'a.txt', 'dir', '--format', 'json']).stdout);
    expect(Object.keys(ours).sort()).toEqual(Object.keys(theirs).sort());
    const ourPull = JSON.parse(cli(['pull', '--plain-http', `${repository}:v2`, '-o', 'out', '--format', 'json']).stdout);
    mkdirSync(join(scratch, 'oras-out'));
    const theirPull = JSON.parse(oras(['pull', '--plain-http', `${repository}:v2`, '-o', 'oras-out', '--format', 'json']).stdout);
    expect(Object.keys(ourPull).sort()).toEqual(Object.keys(theirPull).sort());
    const shape = (files: Array<Record<string, unknown>>) => files.map((f) => ({ ...f, path: String(f.path).replace(/.*\/(out|oras-out)\//, '') }))
      .sort((a, b) => String(a.path).localeCompare(String(b.path)));
    expect(shape(ourPull.files)).toEqual(shape(theirPull.files));
    expect(cli(['push', '--plain-http', `${repository}:v3`, 'a.txt', '--format', '{{.digest}}']).stderr).toContain('--format {{.digest}} is not supported: use --format json');
  });

  test('localhost is plain HTTP without a flag, as in oras; --plain-http with --insecure speaks plain HTTP', () => {
    const port = registry.host.split(':')[1];
    const local = cli(['push', `localhost:${port}/cli/local:v1`, 'a.txt']);
    expect(local.stderr).not.toContain('oras-runtime:');
    expect(local.status).toBe(0);
    const both = cli(['resolve', '--plain-http', '--insecure', `${registry.host}/cli/local:v1`]);
    expect(both.status).toBe(0);
    expect(both.stdout.trim()).toBe(local.stdout.trim());
  });

  test('--debug reports every HTTP response (method, URL, status), never a header or a secret', () => {
    const result = cli(['push', '--plain-http', `${auth.host}/cli/debug:v1`, 'a.txt', '-d', '-u', 'ci', '--password', 'ci-password-value']);
    expect(result.status).toBe(0);
    const events = result.stderr.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line));
    const http = events.filter((e) => e.event === 'http');
    // The first request meets the Basic challenge; the upload and the manifest follow with credentials.
    expect(http[0].status).toBe(401);
    expect(http.map((e) => `${e.method} ${e.status}`)).toEqual(expect.arrayContaining(['POST 202', 'PUT 201']));
    expect(http.every((e) => typeof e.ms === 'number' && e.url.startsWith(`http://${auth.host}/v2/`) && !e.url.includes('?'))).toBe(true);
    expect(result.stderr).not.toMatch(/Authorization|Basic /);
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
    expect(timedOut.stderr).toMatch(/wait .*cli\/never:v1: waiting timed out after 2 s; the last answer was: HEAD .*404/);
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

describeWithPeers(['python3'], 'oras-runtime against a registry that misbehaves', () => {
  let rogue: RogueRegistry;
  let scratch: string;
  const cli = (args: string[], user?: number) =>
    runAsync(process.execPath, [bundle, ...args], { cwd: scratch, env: { PATH: process.env.PATH, HOME: scratch }, user });
  const dirLayer = (entries: CraftEntry[], annotations: Record<string, string> = {}) => ({
    content: gzipSync(craftTar(entries)),
    title: 'tree',
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    annotations: { 'io.deis.oras.content.unpack': 'true', ...annotations },
  });

  beforeAll(async () => { rogue = await RogueRegistry.start(); });
  afterAll(async () => rogue.stop());
  beforeEach(() => { scratch = mkdtempSync(join(tmpdir(), 'oras-cli-rogue-')); });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  test('wait --timeout 2s returns after about 2 s although the registry never answers', async () => {
    rogue.manifest('cli/hang', { schemaVersion: 2 }, 'v1', { kind: 'hang' });
    const started = Date.now();
    const result = await cli(['wait', '--plain-http', `${rogue.host}/cli/hang:v1`, '--timeout', '2s']);
    expect(Date.now() - started).toBeLessThan(4500);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/wait .*cli\/hang:v1: waiting timed out after 2 s; the last answer was: no answer yet/);
  });

  test('SIGTERM during a pull removes what it staged, then exits 143', async () => {
    const content = Buffer.alloc(200_000, 3);
    const ref = rogue.artifact('cli/term', 'v1', [{ content, title: 'big.bin', misbehaviour: { kind: 'stall', afterBytes: 100_000 } }]);
    const out = join(scratch, 'out');
    mkdirSync(out);
    writeFileSync(join(out, 'mine.txt'), 'mine');
    const child = spawn(process.execPath, [bundle, 'pull', '--plain-http', ref, '-o', out, '--min-rate', '0'], { cwd: scratch, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const partial = () => (existsSync(out) ? readdirSync(out).filter((n) => n.startsWith('.oras-pull-')).flatMap((n) => readdirSync(join(out, n)).map((f) => join(out, n, f))) : []);
    for (let i = 0; i < 500 && !partial().some((f) => statSync(f).size > 0); i++) await new Promise((r) => setTimeout(r, 20));
    expect(partial()).toHaveLength(1);
    child.kill('SIGTERM');
    expect(await exited).toBe(143);
    expect(stderr).toContain(`pull ${ref}: cancelled: SIGTERM received`);
    expect(readdirSync(out)).toEqual(['mine.txt']);
  });

  test('as a user other than root, read-only directories in a layer are pulled, and removed after a failure', async () => {
    const entries: CraftEntry[] = [{ name: 'tree/', type: 'dir' }, { name: 'tree/ro/', type: 'dir', mode: 0o555 }, { name: 'tree/ro/f.txt', data: 'f', mode: 0o444 }];
    const good = rogue.artifact('cli/readonly', 'good', [dirLayer(entries)]);
    const bad = rogue.artifact('cli/readonly', 'bad', [dirLayer(entries, { 'io.deis.oras.content.digest': `sha256:${'0'.repeat(64)}` })]);
    chownSync(scratch, 65534, 65534);
    const failed = await cli(['pull', '--plain-http', bad, '-o', 'out'], 65534);
    expect(failed.stderr).toMatch(/directory "tree" \(uncompressed tar\): content does not match/);
    expect(failed.status).toBe(1);
    // The output directory did not exist before: the failed pull removed it too.
    expect(readdirSync(scratch)).toEqual([]);
    const pulled = await cli(['pull', '--plain-http', good, '-o', 'out'], 65534);
    expect(pulled.stderr).not.toContain('oras-runtime:');
    expect(pulled.status).toBe(0);
    expect(statSync(join(scratch, 'out', 'tree', 'ro')).mode % 0o1000).toBe(0o555);
    expect(readFileSync(join(scratch, 'out', 'tree', 'ro', 'f.txt'), 'utf8')).toBe('f');
    chmodSync(join(scratch, 'out', 'tree', 'ro'), 0o755);
  });

  describeWithPeers(['unshare'], 'on a full file system (a 1 MiB tmpfs in a mount namespace of its own)', () => {
    /** Runs the CLI with `out` a fresh 1 MiB tmpfs; prints what is left in it afterwards. */
    const onTmpfs = (args: string[]) => runAsync('unshare', ['-rm', 'sh', '-c',
      'mount -t tmpfs -o size=1m tmpfs "$0" && "$@"; code=$?; echo "left:$(ls -A "$0")"; exit $code', join(scratch, 'out'), process.execPath, bundle, ...args], { cwd: scratch });
    beforeEach(() => mkdirSync(join(scratch, 'out')));

    test('a layer larger than the free space is refused before the download', async () => {
      const ref = rogue.artifact('cli/full', 'file', [{ content: Buffer.alloc(2 * 1024 * 1024, 1), title: 'big.bin' }]);
      const result = await onTmpfs(['pull', '--plain-http', ref, '-o', join(scratch, 'out')]);
      expect(result.stderr).toMatch(/no space left for .*\/out: the layers need at least 2\.0 MiB, and (1\.0 MiB|10\d\d\.\d KiB) are free/);
      expect(result.status).toBe(1);
      expect(result.stdout).toBe('left:\n');
    });

    test('a directory layer that unpacks past the free space fails with a disk-full error, and nothing stays', async () => {
      const ref = rogue.artifact('cli/full', 'dir', [dirLayer([{ name: 'tree/zeros', data: '\0'.repeat(4 * 1024 * 1024) }])]);
      const result = await onTmpfs(['pull', '--plain-http', ref, '-o', join(scratch, 'out')]);
      expect(result.stderr).toMatch(/no space left for .*\/out\/tree: ENOSPC/);
      expect(result.status).toBe(1);
      expect(result.stdout).toBe('left:\n');
    });
  });
});
