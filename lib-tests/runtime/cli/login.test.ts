import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Distribution } from '../../util/distribution';
import { describeWithPeers, requirePeer, run } from '../../util/peers';
import { runAsync } from '../../util/run-async';
import { TokenIssuer } from '../../util/token-issuer';

const bundle = join(__dirname, '..', '..', '..', 'runtime', 'build', 'oras-runtime.cjs');
const PASSWORD = 'login-test-secret-value';
const basic = (user: string, password: string) => Buffer.from(`${user}:${password}`).toString('base64');

/**
 * A stand-in for a real credential helper (none is installable here): it keeps one credential per
 * server in $HELPER_DIR and logs each call, its arguments and its stdin, to $HELPER_DIR/calls.log.
 */
const FAKE_HELPER = `#!/bin/sh
input=$(cat)
printf '%s|%s\\n' "$*" "$input" >> "$HELPER_DIR/calls.log"
key() { printf '%s' "$1" | sed 's/.*"ServerURL":"\\([^"]*\\)".*/\\1/' | tr ':/' '__'; }
case "$1" in
  store) printf '%s' "$input" > "$HELPER_DIR/$(key "$input")" ;;
  get|erase)
    file="$HELPER_DIR/$(key "$input")"
    if [ ! -f "$file" ]; then echo "credentials not found in native keychain"; exit 1; fi
    if [ "$1" = get ]; then cat "$file"; else rm "$file"; fi ;;
esac
`;

/** Runs a program on a pseudo-terminal, typing each answer once its prompt appears; prints what the terminal showed. */
const ON_A_TERMINAL = `
import os, pty, sys
answers = [(b'Username: ', sys.argv[1].encode() + b'\\r'), (b'Password: ', sys.argv[2].encode() + b'\\r')]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[3], sys.argv[3:])
shown = b''
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    shown += chunk
    if answers and answers[0][0] in shown:
        os.write(fd, answers.pop(0)[1])
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(shown)
sys.exit(os.waitstatus_to_exitcode(status))
`;

describeWithPeers(['docker-registry', 'htpasswd', 'oras', 'python3'], 'oras-runtime login and logout', () => {
  let registry: Distribution;
  let host: string;
  let scratch: string;
  const env = (extra: NodeJS.ProcessEnv = {}) => ({ PATH: process.env.PATH, HOME: scratch, ...extra });
  const cli = (args: string[], input?: string, extra?: NodeJS.ProcessEnv) =>
    run(process.execPath, [bundle, ...args], { cwd: scratch, input, env: env(extra) });
  const oras = (args: string[], input?: string, extra?: NodeJS.ProcessEnv) => run(requirePeer('oras'), args, { cwd: scratch, input, env: env(extra) });
  const login = (config: string, password = PASSWORD, extra?: NodeJS.ProcessEnv) =>
    cli(['login', '--plain-http', '-u', 'ci', '--password-stdin', '--registry-config', config, host], `${password}\n`, extra);
  const readConfig = (config: string) => JSON.parse(readFileSync(join(scratch, config), 'utf8'));
  const expectNoSecret = (...results: Array<{ output: string }>) => {
    for (const result of results) expect(result.output).not.toContain(PASSWORD);
  };

  beforeAll(async () => {
    registry = await Distribution.start({ htpasswd: { users: { ci: PASSWORD } } });
    host = registry.host;
  });
  afterAll(() => registry.stop());
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-login-'));
    writeFileSync(join(scratch, 'a.txt'), 'alpha');
  });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  test('login --password-stdin checks the credentials and writes a config that the real oras and oras-runtime push with', () => {
    const loggedIn = login('conf/config.json');
    expect(loggedIn.stderr).toBe('');
    expect(loggedIn.stdout).toBe('Login Succeeded\n');
    expect(loggedIn.status).toBe(0);
    expect(readConfig('conf/config.json')).toEqual({ auths: { [host]: { auth: basic('ci', PASSWORD) } } });
    expect(statSync(join(scratch, 'conf', 'config.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(scratch, 'conf')).mode & 0o777).toBe(0o700);
    // Written atomically: no temporary file is left beside it.
    expect(readdirSync(join(scratch, 'conf'))).toEqual(['config.json']);

    const orasPush = oras(['push', '--plain-http', '--registry-config', 'conf/config.json', `${host}/login/oras:v1`, 'a.txt']);
    expect(orasPush.status).toBe(0);
    const ourPush = cli(['push', '--plain-http', '--registry-config', 'conf/config.json', `${host}/login/runtime:v1`, 'a.txt']);
    expect(ourPush.status).toBe(0);
    const tags = oras(['repo', 'tags', '--plain-http', '--registry-config', 'conf/config.json', `${host}/login/runtime`]);
    expect(tags.stdout).toBe('v1\n');
    expect(oras(['pull', '--plain-http', '--registry-config', 'conf/config.json', `${host}/login/runtime:v1`, '-o', 'out']).status).toBe(0);
    expect(readFileSync(join(scratch, 'out', 'a.txt'), 'utf8')).toBe('alpha');
    expectNoSecret(loggedIn, orasPush, ourPush);
  });

  test('the config oras login writes is the one we write, and oras-runtime reads it', () => {
    const theirs = oras(['login', '--plain-http', '-u', 'ci', '--password-stdin', '--registry-config', 'oras.json', host], `${PASSWORD}\n`);
    expect(theirs.status).toBe(0);
    expect(login('ours.json').status).toBe(0);
    expect(readConfig('ours.json')).toEqual(readConfig('oras.json'));
    const pushed = cli(['push', '--plain-http', '--registry-config', 'oras.json', `${host}/login/interop:v1`, 'a.txt']);
    expect(pushed.status).toBe(0);
    expect(cli(['resolve', '--plain-http', '--registry-config', 'oras.json', `${host}/login/interop:v1`]).stdout.trim()).toBe(pushed.stdout.trim());
    // And logout leaves what oras logout leaves.
    expect(oras(['logout', '--registry-config', 'oras.json', host]).status).toBe(0);
    expect(cli(['logout', '--registry-config', 'ours.json', host]).status).toBe(0);
    expect(readConfig('ours.json')).toEqual(readConfig('oras.json'));
  });

  test('a wrong password: exit 1, a message that says so, and nothing written', () => {
    const refused = login('new/config.json', 'not-the-password');
    expect(refused.status).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toBe(`oras-runtime: login failed: the registry refused these credentials: GET http://${host}/v2/ answered 401 for user "ci"; `
      + 'check the user name and password\n');
    expect(existsSync(join(scratch, 'new'))).toBe(false);
    const before = JSON.stringify({ auths: { [host]: { auth: basic('ci', PASSWORD) } }, psFormat: 'x' });
    writeFileSync(join(scratch, 'config.json'), before);
    expect(login('config.json', 'not-the-password').status).toBe(1);
    expect(readFileSync(join(scratch, 'config.json'), 'utf8')).toBe(before);
    expect(refused.output).not.toContain('not-the-password');
  });

  test('login and logout keep every other key of the config, and its mode; an entry under a URL key is replaced', () => {
    const others = {
      psFormat: 'table {{.ID}}',
      proxies: { default: { httpProxy: 'http://proxy.example.com:3128' } },
      credHelpers: { 'gcr.example.com': 'gcloud' },
      currentContext: 'default',
    };
    const other = { auth: basic('someone', 'elsewhere') };
    writeFileSync(join(scratch, 'config.json'), JSON.stringify({ ...others, auths: { 'other.example.com': other, [`https://${host}/`]: { auth: basic('ci', 'old') } } }),
      { mode: 0o640 });
    const loggedIn = login('config.json');
    expect(loggedIn.status).toBe(0);
    expect(readConfig('config.json')).toEqual({ ...others, auths: { 'other.example.com': other, [host]: { auth: basic('ci', PASSWORD) } } });
    expect(statSync(join(scratch, 'config.json')).mode & 0o777).toBe(0o640);
    const loggedOut = cli(['logout', '--registry-config', 'config.json', host]);
    expect(loggedOut.status).toBe(0);
    expect(readConfig('config.json')).toEqual({ ...others, auths: { 'other.example.com': other } });
    expectNoSecret(loggedIn, loggedOut);
  });

  test('logout removes the entry and a later pull fails with an auth error; logging out again is no error, as in oras', () => {
    expect(login('config.json').status).toBe(0);
    const ref = `${host}/login/logout:v1`;
    expect(cli(['push', '--plain-http', '--registry-config', 'config.json', ref, 'a.txt']).status).toBe(0);
    const loggedOut = cli(['logout', '--registry-config', 'config.json', host]);
    expect(loggedOut).toMatchObject({ status: 0, stdout: '', stderr: '' });
    const pulled = cli(['pull', '--plain-http', '--registry-config', 'config.json', ref, '-o', 'out']);
    expect(pulled.status).toBe(1);
    expect(pulled.stderr).toMatch(/401 UNAUTHORIZED.*Credentials for .* are missing or not allowed this/);
    expect(oras(['pull', '--plain-http', '--registry-config', 'config.json', ref, '-o', 'out']).status).not.toBe(0);
    expect(cli(['logout', '--registry-config', 'config.json', host])).toMatchObject({ status: 0, stdout: '', stderr: '' });
    // A config that does not exist stays so, as with oras logout.
    expect(cli(['logout', '--registry-config', 'missing/config.json', host]).status).toBe(0);
    expect(existsSync(join(scratch, 'missing'))).toBe(false);
  });

  test('without --registry-config, $DOCKER_CONFIG/config.json, else ~/.docker/config.json, as oras', () => {
    expect(cli(['login', '--plain-http', '-u', 'ci', '--password-stdin', host], `${PASSWORD}\n`, { DOCKER_CONFIG: join(scratch, 'dc') }).status).toBe(0);
    expect(readConfig('dc/config.json').auths[host]).toEqual({ auth: basic('ci', PASSWORD) });
    expect(cli(['login', '--plain-http', '-u', 'ci', '--password-stdin', host], `${PASSWORD}\n`).status).toBe(0);
    expect(readConfig('.docker/config.json').auths[host]).toEqual({ auth: basic('ci', PASSWORD) });
    expect(cli(['push', '--plain-http', `${host}/login/default:v1`, 'a.txt']).status).toBe(0);
    expect(cli(['logout', host]).status).toBe(0);
    expect(readConfig('.docker/config.json').auths).toEqual({});
    expect(readConfig('dc/config.json').auths[host]).toBeDefined();
  });

  test('-p works with oras\'s warning; the password is never printed', () => {
    const result = cli(['login', '--plain-http', '-u', 'ci', '-p', PASSWORD, '--registry-config', 'config.json', host]);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe('Login Succeeded\n');
    expect(result.stderr).toBe('oras-runtime: WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  });

  test('without a password: a clear error when stdin is no terminal; on a terminal, prompts that do not echo the password', () => {
    const piped = cli(['login', '--plain-http', '--registry-config', 'config.json', host], '');
    expect(piped.status).toBe(2);
    expect(piped.stderr).toContain('no password given, and stdin is not a terminal to ask for one: pass it with -u <user> --password-stdin');
    expect(existsSync(join(scratch, 'config.json'))).toBe(false);
    const onTerminal = run(requirePeer('python3'), ['-c', ON_A_TERMINAL, 'ci', PASSWORD, process.execPath, bundle,
      'login', '--plain-http', '--registry-config', 'config.json', host], { cwd: scratch, env: env() });
    expect(onTerminal.stdout).toBe('Username: ci\r\nPassword: \r\nLogin Succeeded\r\n');
    expect(onTerminal.status).toBe(0);
    expect(readConfig('config.json').auths[host]).toEqual({ auth: basic('ci', PASSWORD) });
  });

  test.each([
    [['login'], 'login takes exactly one registry, such as localhost:5000 or registry.example.com'],
    [['logout', 'a.example.com', 'b.example.com'], 'logout takes exactly one registry'],
    [['login', 'https://registry.example.com'], '"https://registry.example.com" is not a registry: write its host[:port] alone'],
    [['login', 'registry.example.com/team'], '"registry.example.com/team" is not a registry'],
    [['login', 'registry.example.com:99999'], 'port "99999" of host "registry.example.com:99999" must be a number from 1 to 65535'],
    [['login', '--pasword-stdin', 'registry.example.com'], 'unknown option "--pasword-stdin"; did you mean "--password-stdin"?'],
    [['logout', '--registry-cofnig', 'c.json', 'registry.example.com'], 'unknown option "--registry-cofnig"; did you mean "--registry-config"?'],
    [['logout', '--plain-http', 'registry.example.com'], 'unknown option "--plain-http"'],
    [['login', '-u', 'ci', '-p', 'x', '--password-stdin', 'registry.example.com'], '--password and --password-stdin exclude each other'],
    [['login', '--password-stdin', 'registry.example.com'], '--password and --password-stdin need --username (-u)'],
    [['login', '-u', 'a:b', '--password-stdin', 'registry.example.com'], 'a user name cannot contain ":"'],
    [['login', '-u', 'ci', '--password-stdin', 'registry.example.com', '--ca-file', 'x.pem', '--plain-http'], '--ca-file verifies HTTPS certificates'],
  ])('usage error %j: exit 2, what to fix, and the way to --help', (args, message) => {
    const result = cli(args, 'secret\n');
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stderr).toContain(`Run "oras-runtime ${args[0]} --help" for usage.`);
  });

  test('an empty password from stdin is refused; a mistyped command gets the one meant', () => {
    expect(cli(['login', '-u', 'ci', '--password-stdin', host], '\n').stderr).toContain('the password is empty');
    expect(cli(['logut', host]).stderr).toBe('oras-runtime: unknown command "logut"; did you mean "logout"? Run "oras-runtime --help" for the list.\n');
  });

  test('a registry that cannot be reached: exit 1, the request and the reason, nothing written', () => {
    const result = cli(['login', '-u', 'ci', '--password-stdin', '--registry-config', 'config.json', '127.0.0.1:1'], `${PASSWORD}\n`);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe('oras-runtime: login failed: could not check the credentials with 127.0.0.1:1: GET https://127.0.0.1:1/v2/: connect ECONNREFUSED 127.0.0.1:1\n');
    expect(existsSync(join(scratch, 'config.json'))).toBe(false);
  });

  test('a registry with a private CA: login with --ca-file, and only with it', async () => {
    const tls = await Distribution.start({ tls: true, htpasswd: { users: { ci: PASSWORD } } });
    try {
      writeFileSync(join(scratch, 'ca.crt'), tls.caPem!);
      const args = ['login', '-u', 'ci', '--password-stdin', '--registry-config', 'config.json', tls.host];
      const unverified = cli(args, `${PASSWORD}\n`);
      expect(unverified.status).toBe(1);
      expect(unverified.stderr).toMatch(/login failed: could not check the credentials with .*: GET https:\/\/.*\/v2\/: self-signed certificate/);
      expect(existsSync(join(scratch, 'config.json'))).toBe(false);
      expect(cli([...args, '--ca-file', 'ca.crt'], `${PASSWORD}\n`).status).toBe(0);
      expect(cli(['push', '--ca-file', 'ca.crt', '--registry-config', 'config.json', `${tls.host}/login/tls:v1`, 'a.txt']).status).toBe(0);
    } finally {
      await tls.stop();
    }
  });

  test('a Bearer-token registry: the token service checks the credentials, for no scope, as oras login does', async () => {
    const issuer = await TokenIssuer.start({ users: { ci: PASSWORD } });
    const tokenRegistry = await Distribution.start({ token: issuer });
    // Not spawnSync: the token issuer answers from this process.
    const withStdin = (file: string, program: string, args: string[]) =>
      runAsync('/bin/sh', ['-c', `exec "$0" "$@" < ${file}`, program, ...args], { cwd: scratch, env: env() });
    try {
      writeFileSync(join(scratch, 'wrong'), 'not-the-password\n');
      writeFileSync(join(scratch, 'right'), `${PASSWORD}\n`);
      const args = [bundle, 'login', '--plain-http', '-u', 'ci', '--password-stdin', '--registry-config', 'config.json', tokenRegistry.host];
      const refused = await withStdin('wrong', process.execPath, args);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(/^oras-runtime: login failed: the registry refused these credentials: the token service http:\/\/\S+ answered 401 for user "ci"/);
      expect(existsSync(join(scratch, 'config.json'))).toBe(false);
      issuer.requests.length = 0;
      expect((await withStdin('right', process.execPath, args)).status).toBe(0);
      expect(issuer.requests.map((r) => ({ status: r.status, scopes: r.scopes }))).toEqual([{ status: 200, scopes: [] }]);
      const ref = `${tokenRegistry.host}/login/token:v1`;
      expect((await runAsync(requirePeer('oras'), ['push', '--plain-http', '--registry-config', 'config.json', ref, 'a.txt'], { cwd: scratch, env: env() })).status).toBe(0);
      expect((await runAsync(process.execPath, [bundle, 'resolve', '--plain-http', '--registry-config', 'config.json', ref], { cwd: scratch, env: env() })).status).toBe(0);
    } finally {
      await tokenRegistry.stop();
      await issuer.stop();
    }
  });

  describe('with a credential helper, as oras: docker-credential-<name> store and erase, the secret on stdin', () => {
    let helperEnv: NodeJS.ProcessEnv;
    const calls = () => readFileSync(join(scratch, 'helper', 'calls.log'), 'utf8').split('\n').filter(Boolean).map((line) => {
      const [argv, input] = line.split('|');
      return { argv, input };
    });
    beforeEach(() => {
      mkdirSync(join(scratch, 'bin'));
      mkdirSync(join(scratch, 'helper'));
      writeFileSync(join(scratch, 'bin', 'docker-credential-test'), FAKE_HELPER, { mode: 0o755 });
      writeFileSync(join(scratch, 'bin', 'docker-credential-broken'), '#!/bin/sh\ncat >/dev/null\necho "the keychain is locked" >&2\nexit 1\n', { mode: 0o755 });
      helperEnv = { PATH: `${join(scratch, 'bin')}:${process.env.PATH}`, HELPER_DIR: join(scratch, 'helper') };
    });

    test.each([
      ['credsStore', () => ({ credsStore: 'test' })],
      ['credHelpers', () => ({ credHelpers: { [host]: 'test' } })],
    ])('%s: login stores through the helper, pulls read it, logout erases it', (_field, helperConfig) => {
      const config = { ...helperConfig(), psFormat: 'x', auths: { [`http://${host}`]: { auth: basic('ci', 'stale') } } };
      writeFileSync(join(scratch, 'config.json'), JSON.stringify(config));
      const loggedIn = login('config.json', PASSWORD, helperEnv);
      expect(loggedIn.stdout).toBe('Login Succeeded\n');
      expect(loggedIn.status).toBe(0);
      expect(calls()).toEqual([{ argv: 'store', input: JSON.stringify({ ServerURL: host, Username: 'ci', Secret: PASSWORD }) }]);
      // The stale entry would be read before the helper: it is gone; the rest stays.
      expect(readConfig('config.json')).toEqual({ ...helperConfig(), psFormat: 'x', auths: {} });

      const ref = `${host}/login/helper:v1`;
      const pushed = cli(['push', '--plain-http', '--registry-config', 'config.json', ref, 'a.txt'], undefined, helperEnv);
      expect(pushed.status).toBe(0);
      expect(oras(['pull', '--plain-http', '--registry-config', 'config.json', ref, '-o', 'out'], undefined, helperEnv).status).toBe(0);

      const loggedOut = cli(['logout', '--registry-config', 'config.json', host], undefined, helperEnv);
      expect(loggedOut).toMatchObject({ status: 0, stdout: '', stderr: '' });
      expect(calls().filter((call) => call.argv === 'erase')).toEqual([{ argv: 'erase', input: host }]);
      expect(cli(['pull', '--plain-http', '--registry-config', 'config.json', ref, '-o', 'out2'], undefined, helperEnv).stderr).toMatch(/401 UNAUTHORIZED/);
      // The helper's "credentials not found": nothing to log out of, no error.
      expect(cli(['logout', '--registry-config', 'config.json', host], undefined, helperEnv).status).toBe(0);
      for (const call of calls()) expect(call.argv).not.toContain(PASSWORD);
      expectNoSecret(loggedIn, pushed, loggedOut);
    });

    test('a helper that fails to store: exit 1, the helper named, the config unchanged', () => {
      const before = JSON.stringify({ credsStore: 'broken' });
      writeFileSync(join(scratch, 'config.json'), before);
      const result = login('config.json', PASSWORD, helperEnv);
      expect(result.status).toBe(1);
      expect(result.stderr).toBe(`oras-runtime: credential helper docker-credential-broken store failed (exit 1) for ${host}\n`);
      expect(readFileSync(join(scratch, 'config.json'), 'utf8')).toBe(before);
    });
  });
});
