import { createHash } from 'crypto';
import { existsSync } from 'fs';
import { Distribution } from './distribution';
import {
  fixtureLayout, fixtureStorageRoot, FixtureStorage, listStorageRepositories, listStorageTags, readSummary, removeFixtureStorageRoot,
  seedFromOciLayout, SummaryManifest,
} from './fixtures';
import { basicAuth, request, TestResponse } from './http';
import { describeWithPeers } from './peers';
import { decodeJwt, parseBearerChallenge, parseScope, TokenIssuer, TokenIssuerOptions } from './token-issuer';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function json(response: TestResponse): any {
  return JSON.parse(response.body.toString('utf8'));
}

function form(fields: Record<string, string>): { method: string; headers: Record<string, string>; body: string } {
  return { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() };
}

/** Pushes an empty-config OCI manifest with one tag through the registry API. */
async function pushManifest(base: string, repository: string, tag: string, headers: Record<string, string>): Promise<string> {
  const config = Buffer.from('{}');
  const session = await request(`${base}/v2/${repository}/blobs/uploads/`, { method: 'POST', headers });
  expect(session.status).toBe(202);
  const location = new URL(session.headers.location as string, base);
  location.searchParams.set('digest', sha256(config));
  const put = await request(location.toString(), { method: 'PUT', headers: { ...headers, 'Content-Type': 'application/octet-stream' }, body: config });
  expect(put.status).toBe(201);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: 'application/vnd.cdk8s-oras.test',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(config), size: config.length },
    layers: [],
  });
  const response = await request(`${base}/v2/${repository}/manifests/${tag}`, { method: 'PUT', headers: { ...headers, 'Content-Type': OCI_MANIFEST }, body: manifest });
  expect(response.status).toBe(201);
  return sha256(manifest);
}

describe('token-issuer helpers', () => {
  test('parseScope splits type, name (which may hold a port) and actions', () => {
    expect(parseScope('repository:runs/input:pull,push')).toEqual({ type: 'repository', name: 'runs/input', actions: ['pull', 'push'] });
    expect(parseScope('repository(plugin):a/b:pull')).toEqual({ type: 'repository', name: 'a/b', actions: ['pull'] });
    expect(parseScope('repository:127.0.0.1:5000/x:pull')).toEqual({ type: 'repository', name: '127.0.0.1:5000/x', actions: ['pull'] });
    expect(parseScope('registry:catalog:*')).toEqual({ type: 'registry', name: 'catalog', actions: ['*'] });
    expect(parseScope('nonsense')).toBeUndefined();
  });

  test('parseBearerChallenge reads quoted parameters with commas inside', () => {
    expect(parseBearerChallenge('Bearer realm="http://127.0.0.1:1/token",service="s",scope="repository:a:pull,push",error="insufficient_scope"'))
      .toEqual({ realm: 'http://127.0.0.1:1/token', service: 's', scope: 'repository:a:pull,push', error: 'insufficient_scope' });
    expect(parseBearerChallenge('Basic realm="x"')).toBeUndefined();
  });
});

describeWithPeers(['docker-registry', 'htpasswd'], 'Distribution with htpasswd auth', () => {
  test('/v2/ answers 401 anonymously and for a wrong password, 200 with basic auth', async () => {
    const registry = await Distribution.start({ htpasswd: { users: { alice: 'a-secret', bob: 'pass with spaces:and colon' } } });
    try {
      const anonymous = await request(`${registry.url}/v2/`);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers['www-authenticate']).toBe('Basic realm="oras-test-registry"');
      expect((await request(`${registry.url}/v2/`, { headers: { Authorization: basicAuth('alice', 'wrong') } })).status).toBe(401);
      expect((await request(`${registry.url}/v2/`, { headers: { Authorization: basicAuth('alice', 'a-secret') } })).status).toBe(200);
      expect((await request(`${registry.url}/v2/`, { headers: { Authorization: basicAuth('bob', 'pass with spaces:and colon') } })).status).toBe(200);
    } finally {
      await registry.stop();
    }
    expect(existsSync(registry.dir)).toBe(false);
  });
});

describeWithPeers(['docker-registry', 'openssl'], 'Distribution with TLS', () => {
  test('serves HTTPS that verifies with caPem only', async () => {
    const registry = await Distribution.start({ tls: true });
    try {
      expect(registry.scheme).toBe('https');
      expect(registry.url).toBe(`https://${registry.host}`);
      expect(registry.caPem).toMatch(/^-----BEGIN CERTIFICATE-----/);
      expect((await request(`${registry.url}/v2/`, { ca: registry.caPem })).status).toBe(200);
      await expect(request(`${registry.url}/v2/`)).rejects.toThrow(/self[- ]signed/i);
      expect((await request(`http://${registry.host}/v2/`)).status).toBe(400);
    } finally {
      await registry.stop();
    }
  });
});

describeWithPeers(['docker-registry', 'openssl'], 'TokenIssuer against distribution token auth', () => {
  let issuer: TokenIssuer;
  let registry: Distribution;
  const users = { alice: 'alice-secret', bob: 'bob-secret' };
  beforeAll(async () => {
    issuer = await TokenIssuer.start({
      users,
      grants: (user, repository) => {
        if (repository.startsWith('public/')) return user === undefined ? ['pull'] : ['pull', 'push'];
        if (user === 'alice') return ['*'];
        if (user === 'bob' && repository.startsWith('bob/')) return ['pull', 'push'];
        return [];
      },
    });
    registry = await Distribution.start({ token: issuer });
  });
  afterAll(async () => {
    await registry?.stop();
    await issuer?.stop();
  });
  beforeEach(() => { issuer.requests.length = 0; });

  async function getToken(scope: string, authorization?: string): Promise<string> {
    const url = new URL(issuer.realm);
    url.searchParams.set('service', issuer.service);
    url.searchParams.set('scope', scope);
    const response = await request(url.toString(), { headers: authorization ? { Authorization: authorization } : {} });
    expect(response.status).toBe(200);
    return json(response).token;
  }

  test('a 401 challenge names the realm, service and scope; a token for that scope opens the repository', async () => {
    const base = registry.url;
    const anonymous = await request(`${base}/v2/team/one/tags/list`);
    expect(anonymous.status).toBe(401);
    const challenge = parseBearerChallenge(anonymous.headers['www-authenticate'] as string);
    expect(challenge).toEqual({ realm: issuer.realm, service: issuer.service, scope: 'repository:team/one:pull' });

    const url = new URL(challenge!.realm);
    url.searchParams.set('service', challenge!.service);
    url.searchParams.set('scope', challenge!.scope);
    url.searchParams.set('account', 'alice');
    const tokenResponse = await request(url.toString(), { headers: { Authorization: basicAuth('alice', users.alice) } });
    expect(tokenResponse.status).toBe(200);
    const body = json(tokenResponse);
    expect(body).toEqual({ token: expect.any(String), access_token: body.token, expires_in: 300, issued_at: expect.any(String) });
    const { header, claims } = decodeJwt(body.token);
    expect(header).toMatchObject({ alg: 'ES256', typ: 'JWT', x5c: [expect.any(String)] });
    expect(claims).toMatchObject({ iss: issuer.issuer, sub: 'alice', aud: issuer.service, access: [{ type: 'repository', name: 'team/one', actions: ['pull'] }] });

    const empty = await request(`${base}/v2/team/one/tags/list`, { headers: { Authorization: `Bearer ${body.token}` } });
    expect(empty.status).toBe(404);
    expect(json(empty).errors[0].code).toBe('NAME_UNKNOWN');

    const pushToken = await getToken('repository:team/one:pull,push', basicAuth('alice', users.alice));
    const digest = await pushManifest(base, 'team/one', 'v1', { Authorization: `Bearer ${pushToken}` });
    const listed = await request(`${base}/v2/team/one/tags/list`, { headers: { Authorization: `Bearer ${body.token}` } });
    expect(listed.status).toBe(200);
    expect(json(listed)).toEqual({ name: 'team/one', tags: ['v1'] });
    const manifest = await request(`${base}/v2/team/one/manifests/v1`, { headers: { Authorization: `Bearer ${body.token}`, Accept: OCI_MANIFEST } });
    expect(manifest.status).toBe(200);
    expect(manifest.headers['docker-content-digest']).toBe(digest);

    expect(issuer.requests.map((r) => [r.method, r.scopes, r.user, r.status])).toEqual([
      ['GET', ['repository:team/one:pull'], 'alice', 200],
      ['GET', ['repository:team/one:pull,push'], 'alice', 200],
    ]);
  });

  test('a pull-only token cannot push', async () => {
    const token = await getToken('repository:team/pull-only:pull', basicAuth('alice', users.alice));
    const upload = await request(`${registry.url}/v2/team/pull-only/blobs/uploads/`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    expect(upload.status).toBe(401);
    const challenge = parseBearerChallenge(upload.headers['www-authenticate'] as string);
    expect(challenge).toMatchObject({ error: 'insufficient_scope' });
    // distribution lists the actions in no fixed order.
    const [type, name, actions] = (challenge?.scope ?? '').split(':');
    expect({ type, name, actions: actions.split(',').sort() }).toEqual({ type: 'repository', name: 'team/pull-only', actions: ['pull', 'push'] });
  });

  test('a token for another repository is rejected', async () => {
    const token = await getToken('repository:team/other:pull', basicAuth('alice', users.alice));
    const response = await request(`${registry.url}/v2/team/one/tags/list`, { headers: { Authorization: `Bearer ${token}` } });
    expect([401, 403]).toContain(response.status);
    expect(parseBearerChallenge(response.headers['www-authenticate'] as string)?.error).toBe('insufficient_scope');
  });

  test('grants limit what a user gets; anonymous requests get only what grants allow anonymously', async () => {
    const bobToken = await getToken('repository:team/one:pull', basicAuth('bob', users.bob));
    expect(decodeJwt(bobToken).claims.access).toEqual([]);
    expect((await request(`${registry.url}/v2/team/one/tags/list`, { headers: { Authorization: `Bearer ${bobToken}` } })).status).toBe(401);

    const anonymous = await getToken('repository:public/data:pull,push');
    expect(decodeJwt(anonymous).claims).toMatchObject({ sub: '', access: [{ type: 'repository', name: 'public/data', actions: ['pull'] }] });
    const listed = await request(`${registry.url}/v2/public/data/tags/list`, { headers: { Authorization: `Bearer ${anonymous}` } });
    expect(listed.status).toBe(404);
    expect(json(listed).errors[0].code).toBe('NAME_UNKNOWN');
    const anonymousPrivate = await getToken('repository:team/one:pull');
    expect((await request(`${registry.url}/v2/team/one/tags/list`, { headers: { Authorization: `Bearer ${anonymousPrivate}` } })).status).toBe(401);
    expect(issuer.requests.map((r) => r.user)).toEqual(['bob', undefined, undefined]);
  });

  test('a wrong password gets 401 from the issuer', async () => {
    const url = `${issuer.realm}?service=${issuer.service}&scope=repository:team/one:pull`;
    const response = await request(url, { headers: { Authorization: basicAuth('alice', 'nope') } });
    expect(response.status).toBe(401);
    expect((await request(url, { headers: { Authorization: basicAuth('mallory', 'x') } })).status).toBe(401);
    expect((await request(`${issuer.realm}?service=another&scope=repository:team/one:pull`)).status).toBe(400);
    expect(issuer.requests.map((r) => r.status)).toEqual([401, 401, 400]);
  });

  test('the OAuth2 refresh_token and password grants (docker identitytoken) yield working tokens', async () => {
    const refreshToken = issuer.issueRefreshToken('alice');
    const response = await request(issuer.realm, form({
      grant_type: 'refresh_token', refresh_token: refreshToken, service: issuer.service, scope: 'repository:team/one:pull', client_id: 'cdk8s-oras-test',
    }));
    expect(response.status).toBe(200);
    const body = json(response);
    expect(body).toMatchObject({ access_token: expect.any(String), expires_in: 300 });
    expect(body.refresh_token).toBeUndefined();
    expect((await request(`${registry.url}/v2/team/one/tags/list`, { headers: { Authorization: `Bearer ${body.access_token}` } })).status).not.toBe(401);

    const password = await request(issuer.realm, form({
      grant_type: 'password',
      username: 'bob',
      password: users.bob,
      service: issuer.service,
      scope: 'repository:bob/x:pull',
      client_id: 'c',
      access_type: 'offline',
    }));
    expect(password.status).toBe(200);
    const offline = json(password);
    expect(offline.refresh_token).toEqual(expect.any(String));
    const refreshed = json(await request(issuer.realm, form({
      grant_type: 'refresh_token',
      refresh_token: offline.refresh_token,
      service: issuer.service,
      scope: 'repository:bob/x:push repository:bob/x:pull',
      client_id: 'c',
    })));
    expect(decodeJwt(refreshed.access_token).claims).toMatchObject({ sub: 'bob', access: [{ type: 'repository', name: 'bob/x', actions: ['push', 'pull'] }] });
    const upload = await request(`${registry.url}/v2/bob/x/blobs/uploads/`, { method: 'POST', headers: { Authorization: `Bearer ${refreshed.access_token}` } });
    expect(upload.status).toBe(202);

    expect((await request(issuer.realm, form({ grant_type: 'refresh_token', refresh_token: 'forged', service: issuer.service, client_id: 'c' }))).status)
      .toBe(401);
    issuer.revokeRefreshToken(refreshToken);
    expect((await request(issuer.realm, form({ grant_type: 'refresh_token', refresh_token: refreshToken, service: issuer.service, client_id: 'c' }))).status)
      .toBe(401);
    expect((await request(issuer.realm, form({ grant_type: 'password', username: 'bob', password: 'x', client_id: 'c' }))).status).toBe(401);
    expect((await request(issuer.realm, form({ grant_type: 'client_credentials', client_id: 'c' }))).status).toBe(400);
    expect((await request(issuer.realm, form({ grant_type: 'password', username: 'bob', password: users.bob }))).status).toBe(400);
    expect(issuer.requests.map((r) => [r.method, r.grantType, r.user, r.status])).toEqual([
      ['POST', 'refresh_token', 'alice', 200],
      ['POST', 'password', 'bob', 200],
      ['POST', 'refresh_token', 'bob', 200],
      ['POST', 'refresh_token', undefined, 401],
      ['POST', 'refresh_token', undefined, 401],
      ['POST', 'password', undefined, 401],
      ['POST', 'client_credentials', undefined, 400],
      ['POST', 'password', undefined, 400],
    ]);
  });

  test('GET with offline_token=true returns a refresh token', async () => {
    const url = `${issuer.realm}?service=${issuer.service}&scope=repository:team/one:pull&offline_token=true&client_id=c`;
    const body = json(await request(url, { headers: { Authorization: basicAuth('alice', users.alice) } }));
    expect(body.refresh_token).toEqual(expect.any(String));
    expect(issuer.requests[0]).toMatchObject({ offline: true, clientId: 'c' });
  });

  test('an expired token, a token for another audience and a tampered token are rejected', async () => {
    const access = [{ type: 'repository', name: 'team/one', actions: ['pull'] }];
    const url = `${registry.url}/v2/team/one/tags/list`;
    const fresh = issuer.mintToken({ user: 'alice', access });
    expect((await request(url, { headers: { Authorization: `Bearer ${fresh}` } })).status).not.toBe(401);

    // distribution allows 60 s of clock skew, so "expired" means more than a minute ago
    const expired = issuer.mintToken({ user: 'alice', access, issuedAt: Math.floor(Date.now() / 1000) - 3600, expiresIn: 60 });
    const response = await request(url, { headers: { Authorization: `Bearer ${expired}` } });
    expect(response.status).toBe(401);
    expect(parseBearerChallenge(response.headers['www-authenticate'] as string)?.error).toBe('invalid_token');

    const otherAudience = issuer.mintToken({ user: 'alice', access, audience: 'some-other-registry' });
    expect((await request(url, { headers: { Authorization: `Bearer ${otherAudience}` } })).status).toBe(401);
    const otherIssuer = issuer.mintToken({ user: 'alice', access, issuer: 'someone-else' });
    expect((await request(url, { headers: { Authorization: `Bearer ${otherIssuer}` } })).status).toBe(401);

    const [header, , signature] = fresh.split('.');
    const claims = { ...decodeJwt(fresh).claims, access: [{ type: 'repository', name: 'team/two', actions: ['pull'] }] };
    const tampered = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
    const two = await request(`${registry.url}/v2/team/two/tags/list`, { headers: { Authorization: `Bearer ${tampered}` } });
    expect(two.status).toBe(401);
  });

  test('a token signed by another issuer key is rejected', async () => {
    const stranger = await TokenIssuer.start({ users });
    try {
      const token = stranger.mintToken({ user: 'alice', access: [{ type: 'repository', name: 'team/one', actions: ['pull'] }] });
      expect((await request(`${registry.url}/v2/team/one/tags/list`, { headers: { Authorization: `Bearer ${token}` } })).status).toBe(401);
    } finally {
      await stranger.stop();
    }
  });

  test.each<[string, Pick<TokenIssuerOptions, 'algorithm' | 'keyHeader'>]>([
    ['RS256 with x5c', { algorithm: 'RS256' }],
    ['ES256 with a libtrust kid', { keyHeader: 'kid' }],
    ['RS256 with a libtrust kid', { algorithm: 'RS256', keyHeader: 'kid' }],
  ])('%s verifies too', async (_name, variant) => {
    const other = await TokenIssuer.start({ users, service: 'variant-registry', issuer: 'variant-issuer', ...variant });
    const variantRegistry = await Distribution.start({ token: other });
    try {
      const response = await request(`${other.realm}?service=variant-registry&scope=repository:v/one:pull`, { headers: { Authorization: basicAuth('alice', users.alice) } });
      const token = json(response).token;
      const { header } = decodeJwt(token);
      expect(header.alg).toBe(variant.algorithm ?? 'ES256');
      if (variant.keyHeader === 'kid') expect(header).toEqual({ typ: 'JWT', alg: header.alg, kid: other.keyId });
      const listed = await request(`${variantRegistry.url}/v2/v/one/tags/list`, { headers: { Authorization: `Bearer ${token}` } });
      expect(listed.status).toBe(404);
      expect(json(listed).errors[0].code).toBe('NAME_UNKNOWN');
    } finally {
      await variantRegistry.stop();
      await other.stop();
    }
    expect(existsSync(other.dir)).toBe(false);
  });
});

describeWithPeers(['docker-registry'], 'oras fixture storage roots on distribution', () => {
  let summary: SummaryManifest[];
  beforeAll(() => { summary = readSummary(); });

  test('SUMMARY.txt parses into the oras e2e manifests', () => {
    const foobar = summary.find((m) => m.layout === 'zot/command/artifacts' && m.tag === 'foobar');
    expect(foobar).toMatchObject({ digestPrefix: 'sha256:fd6ed2f36b54', size: 851, configMediaType: 'application/vnd.unknown.config.v1+json' });
    expect(foobar!.entries.map((e) => [e.title, e.content?.toString()])).toEqual([['foo1', 'foo'], ['foo2', 'foo'], ['bar', 'bar']]);
    const amd64 = summary.find((m) => m.digestPrefix === 'sha256:ab01d6e284e8');
    expect(amd64?.entries[0].content?.toString()).toBe('v1.3.8 linux/amd64 image\n');
  });

  test('artifacts.tar.gz holds the tag SUMMARY.txt lists for command/artifacts:foobar', () => {
    const root = fixtureStorageRoot('artifacts');
    try {
      expect(listStorageRepositories(root)).toEqual(['command/artifacts']);
      expect(listStorageTags(root)).toEqual([
        { repository: 'command/artifacts', tag: 'foobar', digest: 'sha256:fd6ed2f36b5465244d5dc86cb4e7df0ab8a9d24adc57825099f522fe009a22bb' },
      ]);
    } finally {
      removeFixtureStorageRoot(root);
    }
    expect(existsSync(root)).toBe(false);
  });

  test.each<[FixtureStorage]>([['artifacts'], ['artifacts_index'], ['images']])('%s: the registry serves every tagged artifact', async (name) => {
    const root = fixtureStorageRoot(name);
    const registry = await Distribution.start({ storageRoot: root });
    try {
      const tags = listStorageTags(root);
      expect(tags.length).toBeGreaterThan(0);
      for (const repository of new Set(tags.map((t) => t.repository))) {
        const listed = await request(`${registry.url}/v2/${repository}/tags/list`);
        expect(listed.status).toBe(200);
        expect(json(listed).tags.sort()).toEqual(tags.filter((t) => t.repository === repository).map((t) => t.tag));
      }
      for (const { repository, tag, digest } of tags) {
        // the same manifest oras wrote into the OCI layout of the same name
        const described = summary.find((m) => m.layout === `zot/command/${repository.split('/')[1]}` && m.tag === tag);
        expect(described && digest.startsWith(described.digestPrefix)).toBe(true);

        // distribution 2.8 answers 404 to an OCI manifest unless Accept names its media type
        expect((await request(`${registry.url}/v2/${repository}/manifests/${tag}`)).status).toBe(404);
        const manifest = await request(`${registry.url}/v2/${repository}/manifests/${tag}`, { headers: { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` } });
        expect(manifest.status).toBe(200);
        expect(manifest.headers['docker-content-digest']).toBe(digest);
        expect(sha256(manifest.body)).toBe(digest);
        const body = json(manifest);
        expect(manifest.headers['content-type']).toBe(body.mediaType);
        const children: Array<{ digest: string; size: number }> = body.mediaType === OCI_INDEX ? body.manifests : body.layers;
        expect(children.length).toBe(described!.entries.length);
        children.forEach((child, i) => expect(child.digest.startsWith(described!.entries[i].digestPrefix)).toBe(true));
        if (body.mediaType === OCI_MANIFEST) {
          for (const [i, layer] of children.entries()) {
            const blob = await request(`${registry.url}/v2/${repository}/blobs/${layer.digest}`);
            expect(blob.status).toBe(200);
            expect(sha256(blob.body)).toBe(layer.digest);
            const expected = described!.entries[i].content;
            if (expected) expect(blob.body.equals(expected)).toBe(true);
          }
        }
      }
    } finally {
      await registry.stop();
      removeFixtureStorageRoot(root);
    }
    expect(existsSync(root)).toBe(false);
  });

  test('an htpasswd registry can serve a fixture storage root', async () => {
    const root = fixtureStorageRoot('artifacts');
    const registry = await Distribution.start({ storageRoot: root, htpasswd: { users: { u: 'p' } } });
    try {
      expect((await request(`${registry.url}/v2/command/artifacts/tags/list`)).status).toBe(401);
      const listed = await request(`${registry.url}/v2/command/artifacts/tags/list`, { headers: { Authorization: basicAuth('u', 'p') } });
      expect(json(listed).tags).toEqual(['foobar']);
    } finally {
      await registry.stop();
      removeFixtureStorageRoot(root);
    }
  });
});

describeWithPeers(['docker-registry', 'skopeo', 'openssl', 'htpasswd'], 'seedFromOciLayout with skopeo', () => {
  const tagged = (layout: string) => readSummary().filter((m) => m.layout === `zot/command/${layout}` && m.tag !== undefined);

  test('copies every tagged oras artifact and image (indexes included) with unchanged digests', async () => {
    const registry = await Distribution.start();
    try {
      for (const layout of ['artifacts', 'images'] as const) {
        for (const manifest of tagged(layout)) {
          await seedFromOciLayout(fixtureLayout(layout), manifest.tag!, registry, `seed/${layout}`);
          const response = await request(`${registry.url}/v2/seed/${layout}/manifests/${manifest.tag}`, { headers: { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` } });
          expect(response.status).toBe(200);
          expect((response.headers['docker-content-digest'] as string).startsWith(manifest.digestPrefix)).toBe(true);
        }
        const listed = json(await request(`${registry.url}/v2/seed/${layout}/tags/list`));
        expect(listed.tags.sort()).toEqual(tagged(layout).map((m) => m.tag).sort());
      }
      await expect(seedFromOciLayout(fixtureLayout('artifacts'), 'no-such-tag', registry, 'seed/x')).rejects.toThrow(/skopeo could not copy .*no-such-tag/s);
    } finally {
      await registry.stop();
    }
  });

  test('copies into a TLS registry with htpasswd auth', async () => {
    const registry = await Distribution.start({ tls: true, htpasswd: { users: { seeder: 's3cret' } } });
    try {
      await expect(seedFromOciLayout(fixtureLayout('artifacts'), 'foobar', registry, 'seed/a')).rejects.toThrow(/skopeo could not copy/);
      await seedFromOciLayout(fixtureLayout('artifacts'), 'foobar', registry, 'seed/a', { username: 'seeder', password: 's3cret' });
      const response = await request(`${registry.url}/v2/seed/a/tags/list`, { ca: registry.caPem, headers: { Authorization: basicAuth('seeder', 's3cret') } });
      expect(json(response).tags).toEqual(['foobar']);
    } finally {
      await registry.stop();
    }
  });

  test('copies into a token-auth registry: skopeo follows the challenge to the issuer', async () => {
    const issuer = await TokenIssuer.start({ users: { seeder: 's3cret' } });
    const registry = await Distribution.start({ token: issuer });
    try {
      await seedFromOciLayout(fixtureLayout('artifacts'), 'foobar', registry, 'seed/t', { username: 'seeder', password: 's3cret' });
      expect(issuer.requests.length).toBeGreaterThan(0);
      expect(issuer.requests.every((r) => r.status === 200 && r.user === 'seeder')).toBe(true);
      expect(issuer.requests.flatMap((r) => r.scopes)).toContain('repository:seed/t:pull,push');
      const token = issuer.mintToken({ access: [{ type: 'repository', name: 'seed/t', actions: ['pull'] }] });
      const listed = await request(`${registry.url}/v2/seed/t/tags/list`, { headers: { Authorization: `Bearer ${token}` } });
      expect(json(listed).tags).toEqual(['foobar']);
    } finally {
      await registry.stop();
      await issuer.stop();
    }
  });
});
