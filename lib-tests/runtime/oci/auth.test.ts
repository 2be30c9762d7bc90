import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { createServer } from 'http';
import { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { parseChallenge } from '../../../runtime/oci/auth/challenge';
import { ChainedCredentials, CredentialSource, DockerConfigCredentials, EnvironmentCredentials } from '../../../runtime/oci/auth/credentials';
import { AuthError } from '../../../runtime/oci/errors';
import { pull } from '../../../runtime/oci/pull';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { Distribution } from '../../util/distribution';
import { FaultProxy } from '../../util/fault-proxy';
import { describeWithPeers } from '../../util/peers';
import { TokenIssuer } from '../../util/token-issuer';

const USERS = { alice: 'alice-secret', bob: 'bob-secret' };

describe('auth parts', () => {
  test('challenges with quoted commas and escapes', () => {
    expect(parseChallenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:a/b:pull,push' },
    });
    expect(parseChallenge('Basic realm="say \\"hi\\""')).toEqual({ scheme: 'basic', params: { realm: 'say "hi"' } });
    expect(parseChallenge('Negotiate abc')).toBeUndefined();
    expect(parseChallenge(undefined)).toBeUndefined();
  });

  describe('docker config', () => {
    let dir: string;
    beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'oras-auth-')); });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));
    const config = (content: unknown) => {
      writeFileSync(join(dir, 'config.json'), JSON.stringify(content));
      return new DockerConfigCredentials(join(dir, 'config.json'), true);
    };

    test('auth, username/password, identitytoken and registrytoken entries; keys may be URLs', async () => {
      const credentials = config({
        auths: {
          'https://r1.example.com/v1/': { auth: Buffer.from('u1:p:with:colons').toString('base64') },
          'r2.example.com:5000': { username: 'u2', password: 'p2' },
          'r3.example.com': { identitytoken: 'refresh-me' },
          'r4.example.com': { registrytoken: 'bearer-me' },
          'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw').toString('base64') },
        },
      });
      expect(await credentials.get('r1.example.com')).toEqual({ username: 'u1', password: 'p:with:colons' });
      expect(await credentials.get('r2.example.com:5000')).toEqual({ username: 'u2', password: 'p2' });
      expect(await credentials.get('r3.example.com')).toEqual({ refreshToken: 'refresh-me' });
      expect(await credentials.get('r4.example.com')).toEqual({ accessToken: 'bearer-me' });
      expect(await credentials.get('docker.io')).toEqual({ username: 'hub', password: 'pw' });
      expect(await credentials.get('elsewhere.example.com')).toBeUndefined();
    });

    test('errors name the file and the problem', async () => {
      writeFileSync(join(dir, 'config.json'), '{ not json');
      await expect(new DockerConfigCredentials(join(dir, 'config.json')).get('x')).rejects.toThrow(`registry config ${join(dir, 'config.json')} is not valid JSON`);
      await expect(new DockerConfigCredentials(join(dir, 'missing.json'), true).get('x')).rejects.toThrow(/cannot read registry config .*missing\.json/);
      expect(await new DockerConfigCredentials(join(dir, 'missing.json')).get('x')).toBeUndefined();
      await expect(config({ auths: { r: { auth: Buffer.from('nocolon').toString('base64') } } }).get('r')).rejects.toThrow(/is not base64 of "user:password"/);
    });

    test('a malformed config is named, and none of its content (a password) appears in the error', async () => {
      writeFileSync(join(dir, 'config.json'), '{"auths": {"r.example.com": {"username": "u", "password": "hunter2-secret" ');
      const error = await new DockerConfigCredentials(join(dir, 'config.json')).get('r.example.com').then(() => undefined, (err: Error) => err);
      expect(error?.message).toBe(`registry config ${join(dir, 'config.json')} is not valid JSON`);
      writeFileSync(join(dir, 'config.json'), '"hunter2-secret"');
      await expect(new DockerConfigCredentials(join(dir, 'config.json')).get('r')).rejects.toThrow(/^registry config .* is not a JSON object$/);
    });

    test('a credential helper is run as docker-credential-<name> get', async () => {
      const bin = join(dir, 'bin');
      mkdirSync(bin);
      writeFileSync(join(bin, 'docker-credential-test'), '#!/bin/sh\nread host\necho "{\\"Username\\":\\"helper-$host\\",\\"Secret\\":\\"s\\"}"\n', { mode: 0o755 });
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ credHelpers: { 'r.example.com': 'test' } }));
      const credentials = new DockerConfigCredentials(join(dir, 'config.json'), true, { PATH: `${bin}:${process.env.PATH}` });
      expect(await credentials.get('r.example.com')).toEqual({ username: 'helper-r.example.com', password: 's' });
    });

    test('a helper\'s "credentials not found" answer means anonymous access; any other failure is an error', async () => {
      const bin = join(dir, 'bin-missing');
      mkdirSync(bin);
      // As docker-credential-helpers answer: the protocol's line on stdout, exit 1.
      writeFileSync(join(bin, 'docker-credential-none'), '#!/bin/sh\necho "credentials not found in native keychain"\nexit 1\n', { mode: 0o755 });
      writeFileSync(join(bin, 'docker-credential-broken'), '#!/bin/sh\necho "keychain locked: user not found" >&2\nexit 1\n', { mode: 0o755 });
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ credHelpers: { 'a.example.com': 'none', 'b.example.com': 'broken' } }));
      const credentials = new DockerConfigCredentials(join(dir, 'config.json'), true, { PATH: `${bin}:${process.env.PATH}` });
      expect(await credentials.get('a.example.com')).toBeUndefined();
      await expect(credentials.get('b.example.com')).rejects.toThrow('credential helper docker-credential-broken failed (exit 1) for b.example.com');
    });
  });

  test.each([
    ['a realm that is not a URL', 'Bearer realm="not a url",service="s"', 'names the token realm "not a url", which is not an http(s) URL'],
    ['a realm of another scheme', 'Bearer realm="file:///etc/passwd"', 'names the token realm "file:///etc/passwd", which is not an http(s) URL'],
    ['no realm', 'Bearer service="s"', 'has no realm'],
  ])('a Bearer challenge with %s is an AuthError that names the realm and the registry', async (_what, challenge, problem) => {
    const server = createServer((_req, res) => {
      res.writeHead(401, { 'WWW-Authenticate': challenge, 'Content-Type': 'application/json' });
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new RegistryClient(host, { plainHttp: true, credentials: new EnvironmentCredentials({ ORAS_USER: 'u', ORAS_PASS: 'p' }) });
    try {
      const error = await client.resolve('repo', 'v1').then(() => undefined, (err: Error) => err);
      expect(error).toBeInstanceOf(AuthError);
      expect(error?.message).toBe(`${host} asked for a Bearer token, but its challenge ${problem}; the registry's auth configuration is broken`);
    } finally {
      client.close();
      server.close();
    }
  });

  test('ORAS_USER with ORAS_PASS, or a pass per direction', async () => {
    const env = new EnvironmentCredentials({ ORAS_USER: 'u', ORAS_PASS: 'both', ORAS_PUSH_PASS: 'write' });
    expect(await env.get('r', 'pull')).toEqual({ username: 'u', password: 'both' });
    expect(await env.get('r', 'push')).toEqual({ username: 'u', password: 'write' });
    expect(await new EnvironmentCredentials({ ORAS_PASS: 'x' }).get('r', 'pull')).toBeUndefined();
  });
});

describeWithPeers(['docker-registry', 'htpasswd', 'openssl'], 'auth against the real registry', () => {
  let scratch: string;
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'oras-auth-'));
    writeFileSync(join(scratch, 'data.txt'), 'payload');
  });
  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  async function roundTrip(registry: Distribution, credentials?: CredentialSource, options: { insecure?: boolean; repository?: string } = {}) {
    const client = new RegistryClient(registry.host, { plainHttp: registry.scheme === 'http', insecure: options.insecure, credentials, retryBaseMs: 5 });
    try {
      const ref = parseReference(`${registry.host}/${options.repository ?? 'auth/test'}:v1`);
      await push(client, ref, [{ path: 'data.txt' }], { cwd: scratch });
      const out = join(scratch, 'out');
      await pull(client, ref, out);
      return readFileSync(join(out, 'data.txt'), 'utf8');
    } finally {
      client.close();
    }
  }

  describe('htpasswd (basic)', () => {
    let registry: Distribution;
    beforeAll(async () => { registry = await Distribution.start({ htpasswd: { users: USERS } }); });
    afterAll(async () => registry.stop());

    test('ORAS_USER/ORAS_PASS credentials push and pull', async () => {
      expect(await roundTrip(registry, new EnvironmentCredentials({ ORAS_USER: 'alice', ORAS_PASS: USERS.alice }))).toBe('payload');
    });

    test('docker config credentials push and pull', async () => {
      writeFileSync(join(scratch, 'config.json'), JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`bob:${USERS.bob}`).toString('base64') } } }));
      expect(await roundTrip(registry, new ChainedCredentials([new EnvironmentCredentials({}), new DockerConfigCredentials(join(scratch, 'config.json'))]))).toBe('payload');
    });

    test('no credentials: 401 with a hint, and the password never appears in the error', async () => {
      await expect(roundTrip(registry, undefined)).rejects.toThrow(/401 UNAUTHORIZED: (authentication required\. )?Credentials for 127\.0\.0\.1:\d+ are missing or not allowed this: set ORAS_USER and ORAS_PASS/);
    });

    test('a wrong password is refused, without echoing it', async () => {
      const attempt = roundTrip(registry, new EnvironmentCredentials({ ORAS_USER: 'alice', ORAS_PASS: 'wrong-password-123' }));
      await expect(attempt).rejects.toThrow(/401/);
      await expect(attempt).rejects.not.toThrow(/wrong-password-123/);
    });
  });

  describe('token (bearer) with our JWT issuer', () => {
    let issuer: TokenIssuer;
    let registry: Distribution;
    beforeAll(async () => {
      issuer = await TokenIssuer.start({
        users: USERS,
        grants: (user, repository) => (user === 'alice' ? ['pull', 'push'] : repository.startsWith('public/') ? ['pull'] : []),
      });
      registry = await Distribution.start({ token: issuer });
    });
    afterAll(async () => {
      await registry.stop();
      await issuer.stop();
    });
    beforeEach(() => { issuer.requests.length = 0; });

    test('basic credentials get a token; it is cached per scope', async () => {
      expect(await roundTrip(registry, new EnvironmentCredentials({ ORAS_USER: 'alice', ORAS_PASS: USERS.alice }))).toBe('payload');
      const issued = issuer.requests.filter((r) => r.status === 200);
      expect(issued.every((r) => r.user === 'alice' && r.method === 'GET')).toBe(true);
      // One token for push (pull,push) and one for pull, however many blobs and manifests moved.
      expect(issued.map((r) => r.scopes.join(' ')).sort()).toEqual(['repository:auth/test:pull', 'repository:auth/test:pull,push']);
    });

    test('an identitytoken uses the OAuth2 refresh flow', async () => {
      writeFileSync(join(scratch, 'config.json'), JSON.stringify({ auths: { [registry.host]: { identitytoken: issuer.issueRefreshToken('alice') } } }));
      expect(await roundTrip(registry, new DockerConfigCredentials(join(scratch, 'config.json'), true))).toBe('payload');
      expect(issuer.requests.filter((r) => r.status === 200).every((r) => r.method === 'POST' && r.grantType === 'refresh_token')).toBe(true);
    });

    test('a user without push rights gets an error that names the token service and the scope', async () => {
      await expect(roundTrip(registry, new EnvironmentCredentials({ ORAS_USER: 'bob', ORAS_PASS: USERS.bob })))
        .rejects.toThrow(/401 UNAUTHORIZED.*Credentials for 127\.0\.0\.1:\d+ are missing or not allowed this/);
    });

    test('a wrong password is refused by the token service', async () => {
      await expect(roundTrip(registry, new EnvironmentCredentials({ ORAS_USER: 'alice', ORAS_PASS: 'nope' })))
        .rejects.toThrow(/token service http:\/\/127\.0\.0\.1:\d+\/token refused user "alice" for repository:auth\/test:pull,push \(HTTP 401\)\. Check the credentials/);
    });

    test('anonymous pulls work where the issuer grants them', async () => {
      await roundTrip(registry, new EnvironmentCredentials({ ORAS_USER: 'alice', ORAS_PASS: USERS.alice }), { repository: 'public/data' });
      const client = new RegistryClient(registry.host, { plainHttp: true });
      try {
        await pull(client, parseReference(`${registry.host}/public/data:v1`), join(scratch, 'anon'));
        expect(readFileSync(join(scratch, 'anon', 'data.txt'), 'utf8')).toBe('payload');
      } finally {
        client.close();
      }
    });
  });

  test('a blob redirected to another host is fetched without the Authorization header', async () => {
    const registry = await Distribution.start({ htpasswd: { users: USERS } });
    const seen: (string | undefined)[] = [];
    const blobServer = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.end('payload');
    });
    await new Promise<void>((resolve) => blobServer.listen(0, '127.0.0.1', resolve));
    const storageUrl = `http://localhost:${(blobServer.address() as AddressInfo).port}/storage/blob`;
    const proxy = await FaultProxy.start(registry.host, (method, path) => (method === 'GET' && path.includes('/blobs/') ? { kind: 'redirect', location: storageUrl } : undefined));
    const credentials = new EnvironmentCredentials({ ORAS_USER: 'alice', ORAS_PASS: USERS.alice });
    const client = new RegistryClient(proxy.host, { plainHttp: true, credentials });
    try {
      const ref = parseReference(`${proxy.host}/auth/redirect:v1`);
      await push(client, ref, [{ path: 'data.txt' }], { cwd: scratch });
      await pull(client, ref, join(scratch, 'out'));
      expect(readFileSync(join(scratch, 'out', 'data.txt'), 'utf8')).toBe('payload');
      expect(seen).toEqual([undefined]);
      expect(proxy.requests.some((r) => r.fault === 'redirect')).toBe(true);
    } finally {
      client.close();
      await proxy.stop();
      blobServer.close();
      await registry.stop();
    }
  });

  test('an upload Location on another origin gets no credentials', async () => {
    const registry = await Distribution.start();
    const front = await FaultProxy.start(registry.host);
    const storage = await FaultProxy.start(registry.host);
    front.locationHost = storage.host;
    writeFileSync(join(scratch, 'config.json'), JSON.stringify({ auths: { [front.host]: { registrytoken: 'registry-only-token' } } }));
    const client = new RegistryClient(front.host, { plainHttp: true, credentials: new DockerConfigCredentials(join(scratch, 'config.json'), true) });
    try {
      await push(client, parseReference(`${front.host}/auth/location:v1`), [{ path: 'data.txt' }], { cwd: scratch });
      expect(front.requests.some((r) => r.method === 'POST' && r.authorization === 'Bearer registry-only-token')).toBe(true);
      const puts = storage.requests.filter((r) => r.method === 'PUT');
      expect(puts.length).toBeGreaterThan(0);
      expect(puts.every((r) => r.authorization === undefined)).toBe(true);
    } finally {
      client.close();
      await front.stop();
      await storage.stop();
      await registry.stop();
    }
  });

  describe('TLS', () => {
    let registry: Distribution;
    beforeAll(async () => { registry = await Distribution.start({ tls: true }); });
    afterAll(async () => registry.stop());

    test('--insecure talks to a self-signed registry', async () => {
      expect(await roundTrip(registry, undefined, { insecure: true })).toBe('payload');
    });

    test('without --insecure the certificate is verified and the error says so', async () => {
      await expect(roundTrip(registry, undefined)).rejects.toThrow(/self-signed certificate|unable to verify/);
    });
  });
});
