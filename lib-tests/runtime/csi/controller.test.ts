import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import * as grpc from '@grpc/grpc-js';
import { Plugin } from './plugin';
import { EnvironmentCredentials } from '../../../runtime/oci/auth/credentials';
import { push } from '../../../runtime/oci/push';
import { parseReference } from '../../../runtime/oci/reference';
import { RegistryClient } from '../../../runtime/oci/registry-client';
import { Distribution } from '../../util/distribution';
import { KubeApiServer } from '../../util/kube-apiserver';
import { describeWithPeers } from '../../util/peers';

const readOnlyMany = { mount: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } };

/** The Controller service as the provisioner Deployment runs it (`csi --controller`), against a registry that requires a login. */
describeWithPeers(['docker-registry'], 'the CSI Controller service', () => {
  let registry: Distribution;
  let dir: string;
  let plugin: Plugin;
  let reference: string;
  const secrets = () => ({ '.dockerconfigjson': JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from('reader:reader-secret').toString('base64') } } }) });
  const parameters = (extra: Record<string, string> = {}) => ({ 'oras.artifact.reference': reference, 'oras.options.plainhttp': 'true', ...extra });
  const create = (name: string, body: object = {}) => plugin.call('controller', 'CreateVolume', {
    name, volume_capabilities: [readOnlyMany], parameters: parameters(), secrets: secrets(), ...body,
  });

  beforeAll(async () => {
    registry = await Distribution.start({ htpasswd: { users: { reader: 'reader-secret' } } });
    reference = `${registry.host}/models/demo:v1`;
    const client = new RegistryClient(registry.host, { plainHttp: true, credentials: new EnvironmentCredentials({ ORAS_USER: 'reader', ORAS_PASS: 'reader-secret' }) });
    const src = mkdtempSync(join(tmpdir(), 'oras-controller-src-'));
    writeFileSync(join(src, 'weights.bin'), 'weights');
    await push(client, parseReference(reference), [{ path: 'weights.bin' }], { cwd: src });
    client.close();
    rmSync(src, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), 'oras-controller-'));
    plugin = await Plugin.start(dir, [], true);
  });
  afterAll(async () => {
    await plugin?.stop();
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('it advertises the Controller service and CREATE_DELETE_VOLUME, and serves no Node service', async () => {
    expect(await plugin.call('identity', 'GetPluginCapabilities')).toEqual({ capabilities: [{ service: { type: 'CONTROLLER_SERVICE' }, type: 'service' }] });
    expect(await plugin.call('controller', 'ControllerGetCapabilities')).toEqual({ capabilities: [{ rpc: { type: 'CREATE_DELETE_VOLUME' }, type: 'rpc' }] });
    await expect(plugin.call('node', 'NodeGetInfo')).rejects.toMatchObject({ code: grpc.status.UNIMPLEMENTED });
    expect(plugin.events('listening')[0]).toMatchObject({ services: ['identity', 'controller'] });
  });

  test('CreateVolume answers with the attributes as the volume context, the same volume for the same call, and ALREADY_EXISTS for another', async () => {
    const first = await create('pvc-1', { capacity_range: { required_bytes: 1024 ** 3 } });
    expect(first.volume).toEqual({
      volume_id: expect.stringMatching(/^oras-[0-9a-f]{40}$/),
      capacity_bytes: 1024 ** 3,
      volume_context: { 'oras.artifact.reference': reference, 'oras.options.plainhttp': 'true' },
      content_source: null,
    });
    expect((await create('pvc-1', { capacity_range: { required_bytes: 1024 ** 3 } })).volume.volume_id).toBe(first.volume.volume_id);
    await expect(create('pvc-1', { capacity_range: { required_bytes: 2 * 1024 ** 3 } }))
      .rejects.toMatchObject({ code: grpc.status.ALREADY_EXISTS, details: expect.stringContaining('pvc-1') });
    await expect(create('pvc-1', { capacity_range: { required_bytes: 1024 ** 3 }, parameters: parameters({ 'oras.options.pullpolicy': 'Always' }) }))
      .rejects.toMatchObject({ code: grpc.status.ALREADY_EXISTS });
    // Go clients send map entries in random order: the same parameters in another order are the same volume.
    const reversed = Object.fromEntries(Object.entries(parameters({ 'oras.options.pullpolicy': 'Never' })).reverse());
    const inOrder = await create('pvc-order', { parameters: parameters({ 'oras.options.pullpolicy': 'Never' }) });
    expect((await create('pvc-order', { parameters: reversed })).volume.volume_id).toBe(inOrder.volume.volume_id);
    // The CO's own parameters (external-provisioner's) are not the volume's.
    const withMetadata = await create('pvc-2', { parameters: parameters({ 'csi.storage.k8s.io/pv/name': 'pvc-2', 'csi.storage.k8s.io/pvc/name': 'data' }) });
    expect(Object.keys(withMetadata.volume.volume_context)).toEqual(['oras.artifact.reference', 'oras.options.plainhttp']);

    const validate = (capability: object) => plugin.call('controller', 'ValidateVolumeCapabilities', {
      volume_id: first.volume.volume_id, volume_context: first.volume.volume_context, volume_capabilities: [capability],
    });
    expect((await validate(readOnlyMany)).confirmed.volume_capabilities).toHaveLength(1);
    const writer = await validate({ mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } });
    expect(writer).toMatchObject({ confirmed: null, message: expect.stringContaining('ReadOnlyMany') });

    await plugin.call('controller', 'DeleteVolume', { volume_id: first.volume.volume_id });
    await plugin.call('controller', 'DeleteVolume', { volume_id: first.volume.volume_id });
    // The name is free again.
    await create('pvc-1', { capacity_range: { required_bytes: 2 * 1024 ** 3 } });
  });

  test('bad requests are refused with the code and the fix, and nothing is created', async () => {
    const cases: [object, grpc.status, RegExp][] = [
      [{ volume_capabilities: [{ mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }] }, grpc.status.INVALID_ARGUMENT, /SINGLE_NODE_WRITER.*accessModes must be \[ReadOnlyMany\]/],
      [{ volume_capabilities: [{ block: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } }] }, grpc.status.INVALID_ARGUMENT, /block access is not supported/],
      [{ volume_capabilities: [] }, grpc.status.INVALID_ARGUMENT, /volume_capabilities is required/],
      [{ parameters: parameters({ 'oras.options.pullpolcy': 'Always' }) }, grpc.status.INVALID_ARGUMENT, /unknown StorageClass parameter "oras.options.pullpolcy"/],
      [{ parameters: parameters({ 'oras.options.pullpolicy': 'Sometimes' }) }, grpc.status.INVALID_ARGUMENT, /pullpolicy must be Always, IfNotPresent or Never/],
      [{ parameters: { 'oras.options.plainhttp': 'true' } }, grpc.status.INVALID_ARGUMENT, /no artifact: set the StorageClass parameter oras.artifact.reference, or annotate/],
      [{ parameters: parameters({ 'oras.artifact.reference': `${registry.host}/models/missing:v1` }) }, grpc.status.NOT_FOUND, /models\/missing:v1.*does not exist in the registry/],
      [{ secrets: {} }, grpc.status.PERMISSION_DENIED, /refused these credentials: set the provisioner secret \(csi.storage.k8s.io\/provisioner-secret-name\)/],
      [{ capacity_range: { required_bytes: 10, limit_bytes: 5 } }, grpc.status.OUT_OF_RANGE, /at least 10 and at most 5 bytes/],
      [{ volume_content_source: { volume: { volume_id: 'oras-x' } } }, grpc.status.INVALID_ARGUMENT, /content source/],
    ];
    for (const [body, code, details] of cases) {
      await expect(create('bad', body)).rejects.toMatchObject({ code, details: expect.stringMatching(details) });
    }
    // None of them took the name.
    expect((await create('bad')).volume.volume_id).toMatch(/^oras-/);
    await expect(plugin.call('controller', 'ValidateVolumeCapabilities', { volume_id: 'pvc-unknown', volume_capabilities: [readOnlyMany] }))
      .rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });
});

/** A StorageClass without an artifact: each PVC names its own in an annotation, which the controller reads from the API server. */
describeWithPeers(['docker-registry', 'kube-apiserver', 'etcd'], 'the CSI Controller service with artifacts named by PVC annotations', () => {
  let registry: Distribution;
  let api: KubeApiServer;
  let dir: string;
  let plugin: Plugin;

  beforeAll(async () => {
    [registry, api] = await Promise.all([Distribution.start(), KubeApiServer.start()]);
    const client = new RegistryClient(registry.host, { plainHttp: true });
    const src = mkdtempSync(join(tmpdir(), 'oras-controller-src-'));
    writeFileSync(join(src, 'a.txt'), 'a');
    await push(client, parseReference(`${registry.host}/team/a:v1`), [{ path: 'a.txt' }], { cwd: src });
    client.close();
    rmSync(src, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), 'oras-controller-'));
    plugin = await Plugin.start(dir, ['--kubeconfig', api.kubeconfig], true);
  }, 120_000);
  afterAll(async () => {
    await plugin?.stop();
    await Promise.all([registry?.stop(), api?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const claim = async (name: string, annotations: Record<string, string>) => {
    const created = await api.request('POST', '/api/v1/namespaces/default/persistentvolumeclaims', {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name, annotations },
      spec: { accessModes: ['ReadOnlyMany'], resources: { requests: { storage: '1Gi' } }, storageClassName: 'oras' },
    });
    expect(created.status).toBe(201);
  };
  const create = (name: string, claimName: string) => plugin.call('controller', 'CreateVolume', {
    name,
    volume_capabilities: [readOnlyMany],
    parameters: { 'oras.options.plainhttp': 'true', 'csi.storage.k8s.io/pvc/name': claimName, 'csi.storage.k8s.io/pvc/namespace': 'default' },
  });

  test('the annotated artifact becomes the volume\'s, with the StorageClass\'s options', async () => {
    await claim('data-a', { 'oras.artifact.reference': `${registry.host}/team/a:v1`, 'oras.options.pullpolicy': 'Always', 'unrelated': 'x' });
    expect((await create('pvc-a', 'data-a')).volume.volume_context).toEqual({
      'oras.artifact.reference': `${registry.host}/team/a:v1`, 'oras.options.pullpolicy': 'Always', 'oras.options.plainhttp': 'true',
    });
  });

  test('a claim may set what its StorageClass leaves open, and one that contradicts it is refused', async () => {
    const reference = `${registry.host}/team/a:v1`;
    await claim('data-policy', { 'oras.options.pullpolicy': 'Never' });
    const fixed = (name: string, claimName: string) => plugin.call('controller', 'CreateVolume', {
      name,
      volume_capabilities: [readOnlyMany],
      parameters: { 'oras.artifact.reference': reference, 'oras.options.plainhttp': 'true', 'csi.storage.k8s.io/pvc/name': claimName, 'csi.storage.k8s.io/pvc/namespace': 'default' },
    });
    expect((await fixed('pvc-policy', 'data-policy')).volume.volume_context).toMatchObject({ 'oras.artifact.reference': reference, 'oras.options.pullpolicy': 'Never' });
    await claim('data-other', { 'oras.artifact.reference': `${registry.host}/team/b:v1` });
    await expect(fixed('pvc-other', 'data-other')).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('PVC default/data-other annotates oras.artifact.reference'),
    });
  });

  test('a claim without the annotation, or naming a missing artifact, gets an error that says so', async () => {
    await claim('data-none', {});
    await expect(create('pvc-none', 'data-none')).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('PVC default/data-none has no annotation oras.artifact.reference'),
    });
    await claim('data-missing', { 'oras.artifact.reference': `${registry.host}/team/missing:v1` });
    await expect(create('pvc-missing', 'data-missing')).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND, details: expect.stringContaining('team/missing:v1'),
    });
    await expect(create('pvc-gone', 'no-such-claim')).rejects.toMatchObject({
      code: grpc.status.UNAVAILABLE, details: expect.stringMatching(/cannot read PVC default\/no-such-claim.*404/),
    });
  });
});
