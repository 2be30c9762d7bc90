import { OrasArtifact, OrasRegistry } from '../src';

describe('OrasArtifact.fromReference', () => {
  test.each([
    ['registry.example.com/team/data:v1', 'registry.example.com', 'team/data', 'v1', undefined],
    ['localhost:5000/hello:one', 'localhost:5000', 'hello', 'one', undefined],
    ['127.0.0.1:39999/a/b/c:t_1.x-y', '127.0.0.1:39999', 'a/b/c', 't_1.x-y', undefined],
    ['[::1]:5000/x:y', '[::1]:5000', 'x', 'y', undefined],
    ['ghcr.io/o/r@sha256:' + 'a'.repeat(64), 'ghcr.io', 'o/r', undefined, 'sha256:' + 'a'.repeat(64)],
    ['ghcr.io/o/r:v2@sha512:' + 'b'.repeat(128), 'ghcr.io', 'o/r', 'v2', 'sha512:' + 'b'.repeat(128)],
    ['Registry.Example.com/a__b/c-d/e.f:TAG', 'Registry.Example.com', 'a__b/c-d/e.f', 'TAG', undefined],
    ['docker.io/alpine:3', 'docker.io', 'library/alpine', '3', undefined],
    ['index.docker.io/acme/tool:1', 'docker.io', 'acme/tool', '1', undefined],
  ])('%s', (reference, host, repository, tag, digest) => {
    const artifact = OrasArtifact.fromReference(reference);
    expect(artifact.host).toBe(host);
    expect(artifact.repository).toBe(repository);
    expect(artifact.tag).toBe(tag);
    expect(artifact.digest).toBe(digest);
    expect(artifact.name).toBe(`${host}/${repository}`);
    expect(OrasArtifact.fromReference(artifact.reference).reference).toBe(artifact.reference);
    expect(artifact.toString()).toBe(artifact.reference);
  });

  test('the full reference keeps tag and digest', () => {
    const digest = 'sha256:' + 'c'.repeat(64);
    expect(OrasArtifact.fromReference(`cache:5000/x/y:t@${digest}`).reference).toBe(`cache:5000/x/y:t@${digest}`);
    expect(OrasArtifact.fromReference('docker.io/alpine:3').reference).toBe('docker.io/library/alpine:3');
  });

  test.each([
    ['', /is empty/],
    ['hello:one', /"hello" has no registry host.*<host\[:port\]>\/hello:one.*\{ registry \}/],
    ['team/data:v1', /"team\/data" has no registry host/],
    ['localhost:5000/Hello:one', /repository component "Hello" must be lowercase/],
    ['localhost:5000/a//b:one', /repository component "" must be lowercase/],
    ['localhost:5000/a-:one', /repository component "a-"/],
    ['localhost:5000/hello', /neither tag nor digest.*"latest" is never implied/],
    ['localhost:5000/hello:.bad', /tag "\.bad" must be 1 to 128 characters/],
    [`localhost:5000/hello:${'t'.repeat(129)}`, /tag "t+" must be 1 to 128/],
    ['localhost:5000/hello@sha256:abc', /exactly 64 lowercase hex digits after "sha256:" \(it has 3\)/],
    ['localhost:5000/hello@sha256:' + 'A'.repeat(64), /exactly 64 lowercase hex digits/],
    ['localhost:5000/hello@md5:' + 'a'.repeat(32), /must be "sha256:<64 hex digits>" or "sha512:<128 hex digits>"/],
    ['localhost:99999/hello:one', /port "99999" of host "localhost:99999" must be a number from 1 to 65535/],
    ['bad_host.io/hello:one', /host "bad_host.io" must be a DNS name/],
    ['-bad.io/hello:one', /host "-bad.io"/],
    ['local host:5000/x:y', /white space/],
    [`r.io/${'a'.repeat(251)}:t`, /longer than 255 characters/],
  ])('rejects %j', (reference, message) => {
    expect(() => OrasArtifact.fromReference(reference)).toThrow(message);
  });

  test('errors quote the whole reference', () => {
    expect(() => OrasArtifact.fromReference('localhost:5000/Bad:1')).toThrow('Invalid artifact reference "localhost:5000/Bad:1": ');
  });

  test('a reference without host resolves against the given registry', () => {
    const registry = OrasRegistry.fromHost('cache.ns.svc:5000', { plainHttp: true });
    const artifact = OrasArtifact.fromReference('dinosaur/hello:one', { registry });
    expect(artifact.reference).toBe('cache.ns.svc:5000/dinosaur/hello:one');
    expect(artifact.registry).toBe(registry);
  });

  test('a reference to another host does not take the default registry\'s settings', () => {
    const registry = OrasRegistry.fromHost('cache:5000', { plainHttp: true });
    const artifact = OrasArtifact.fromReference('other.io/x:y', { registry });
    expect(artifact.host).toBe('other.io');
    expect(artifact.registry).toBeUndefined();
    expect(OrasArtifact.fromReference('cache:5000/x:y', { registry }).registry).toBe(registry);
  });
});

describe('OrasArtifact.fromRegistry', () => {
  const registry = OrasRegistry.fromHost('127.0.0.1:5000', { plainHttp: true });

  test('builds from parts', () => {
    const artifact = OrasArtifact.fromRegistry(registry, 'runs/out', { tag: 'r1' });
    expect(artifact.reference).toBe('127.0.0.1:5000/runs/out:r1');
    expect(artifact.registry?.plainHttp).toBe(true);
  });

  test('needs a tag or a digest', () => {
    expect(() => OrasArtifact.fromRegistry(registry, 'runs/out', {})).toThrow(/neither tag nor digest/);
  });

  test('validates the repository', () => {
    expect(() => OrasArtifact.fromRegistry(registry, 'Runs/out', { tag: 'x' })).toThrow(/repository component "Runs"/);
    expect(() => OrasArtifact.fromRegistry(registry, '/runs', { tag: 'x' })).toThrow(/non-empty path components/);
  });

  test('withTag and withDigest derive new references', () => {
    const base = OrasArtifact.fromRegistry(registry, 'runs/out', { tag: 'r1' });
    const digest = 'sha256:' + '0'.repeat(64);
    expect(base.withTag('r2').reference).toBe('127.0.0.1:5000/runs/out:r2');
    expect(base.withDigest(digest).reference).toBe(`127.0.0.1:5000/runs/out:r1@${digest}`);
    expect(base.withDigest(digest).withTag('r3').digest).toBeUndefined();
    expect(() => base.withTag('')).toThrow(/tag "" must be 1 to 128/);
    expect(base.withTag('r2').registry).toBe(registry);
  });
});
