import { existsSync, readFileSync } from 'fs';
import { parse } from 'yaml';
import { KUBE_ADMIN_USER, KubeApiServer } from './kube-apiserver';
import { describeWithPeers } from './peers';

jest.setTimeout(120_000);

describeWithPeers(['kube-apiserver', 'etcd'], 'KubeApiServer (real kube-apiserver and etcd)', () => {
  let server: KubeApiServer;
  const namespace = 'cdk8s-oras-test';

  beforeAll(async () => {
    server = await KubeApiServer.start();
  });

  afterAll(async () => {
    if (!server) return;
    await server.stop();
    await server.stop();
    expect(existsSync(server.dir)).toBe(false);
  });

  test('is ready, serves TLS on loopback and authenticates the token as system:masters', async () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(server.caPem).toContain('-----BEGIN CERTIFICATE-----');
    const readyz = await server.request('GET', '/readyz');
    expect(readyz.status).toBe(200);
    const version = await server.request('GET', '/version');
    expect(version.json).toMatchObject({ major: '1', gitVersion: expect.stringMatching(/^v1\.\d+\.\d+$/) });
    const review = await server.request('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
      apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview',
    });
    expect(review.status).toBe(201);
    expect(review.json.status.userInfo).toMatchObject({ username: KUBE_ADMIN_USER, groups: expect.arrayContaining(['system:masters']) });
  });

  test('refuses requests without the token', async () => {
    const res = await server.request('GET', '/api/v1/namespaces', undefined, { Authorization: 'Bearer wrong' });
    expect(res.status).toBe(401);
  });

  test('writes a kubeconfig for the server and token', () => {
    const config = parse(readFileSync(server.kubeconfig, 'utf8'));
    expect(config['current-context']).toBe('test');
    expect(config.clusters[0].cluster.server).toBe(server.url);
    expect(Buffer.from(config.clusters[0].cluster['certificate-authority-data'], 'base64').toString()).toBe(server.caPem);
    expect(config.users[0].user.token).toBe(server.token);
  });

  test('creates a Namespace and a ConfigMap and reads them back', async () => {
    const ns = await server.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
    expect(ns.status).toBe(201);

    const created = await server.request('POST', `/api/v1/namespaces/${namespace}/configmaps`, {
      apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', labels: { app: 'oras' } }, data: { greeting: 'hello' },
    });
    expect(created.status).toBe(201);
    expect(created.json.metadata.uid).toEqual(expect.any(String));

    const readNs = await server.request('GET', `/api/v1/namespaces/${namespace}`);
    expect(readNs.status).toBe(200);
    expect(readNs.json.status.phase).toBe('Active');

    const read = await server.request('GET', `/api/v1/namespaces/${namespace}/configmaps/settings`);
    expect(read.status).toBe(200);
    expect(read.json).toMatchObject({ kind: 'ConfigMap', metadata: { name: 'settings', namespace, labels: { app: 'oras' } }, data: { greeting: 'hello' } });
    expect(read.json.metadata.uid).toBe(created.json.metadata.uid);
  });

  describe('server-side dry run with strict field validation', () => {
    const pod = (container: Record<string, unknown>) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'dry', namespace },
      spec: { containers: [{ name: 'main', image: 'busybox:1.36', ...container }] },
    });
    const dryRun = (body: unknown) => server.request('POST', `/api/v1/namespaces/${namespace}/pods?dryRun=All&fieldValidation=Strict`, body);

    beforeAll(async () => {
      // The namespace may not exist yet when this block runs alone (jest -t).
      await server.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
    });

    test('accepts a valid Pod without storing it', async () => {
      const res = await dryRun(pod({ imagePullPolicy: 'IfNotPresent' }));
      expect(res.status).toBe(201);
      expect(res.json.spec.containers[0].imagePullPolicy).toBe('IfNotPresent');
      const stored = await server.request('GET', `/api/v1/namespaces/${namespace}/pods/dry`);
      expect(stored.status).toBe(404);
    });

    test('refuses a misspelt field and names it', async () => {
      const res = await dryRun(pod({ imagePullPolcy: 'IfNotPresent' }));
      expect(res.status).toBe(400);
      expect(res.json).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'BadRequest' });
      expect(res.json.message).toContain('unknown field "spec.containers[0].imagePullPolcy"');
    });

    test('refuses an invalid value through validation, not only schema', async () => {
      const res = await dryRun(pod({ imagePullPolicy: 'Sometimes' }));
      expect(res.status).toBe(422);
      expect(res.json.reason).toBe('Invalid');
      expect(res.json.message).toContain('spec.containers[0].imagePullPolicy');
    });
  });

  test('lists what it stored', async () => {
    const res = await server.request('GET', `/api/v1/namespaces/${namespace}/configmaps`);
    expect(res.status).toBe(200);
    expect(res.json.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toContain('settings');
  });
});
