import { Chart, Cron, Duration, Size, Testing } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { CaBundle, OrasRegistry, OrasRuntimeImage, RegistryRetention, RegistryStorage } from '../src';
import { Distribution } from './util/distribution';
import { expectValidKubernetes } from './util/kubernetes-schema';
import { describeWithPeers } from './util/peers';
import { main } from '../runtime/cli/main';

function synth(retention: RegistryRetention, props: Record<string, unknown> = {}) {
  const app = Testing.app();
  const chart = new Chart(app, 'c', { namespace: 'cache' });
  const registry = new OrasRegistry(chart, 'Registry', { name: 'oras', retention, ...props });
  const objects = Testing.synth(chart);
  const cronJob = objects.find((o) => o.kind === 'CronJob');
  const pod = cronJob?.spec.jobTemplate.spec.template.spec;
  return { registry, objects, cronJob, pod, prune: pod?.containers[0], deployment: objects.find((o) => o.kind === 'Deployment') };
}

const persistent = { storage: RegistryStorage.persistentVolumeClaim({ size: Size.gibibytes(5) }) };

describe('RegistryRetention', () => {
  test('persistent storage: a daily prune CronJob that may restart only this registry, whose init container collects garbage', () => {
    const { registry, objects, cronJob, pod, prune, deployment } = synth({ keepLast: 5, keepFor: Duration.days(30) }, persistent);
    expectValidKubernetes(objects);
    expect(registry.pruneJob).toBeDefined();
    expect(cronJob.metadata).toMatchObject({ name: 'oras-prune', namespace: 'cache' });
    expect(cronJob.spec).toMatchObject({ schedule: '0 3 * * *', concurrencyPolicy: 'Forbid' });
    expect(prune.args).toEqual(['prune', 'oras.cache.svc:5000', '--keep-last', '5', '--keep-for', '2592000s', '--plain-http', '--collect-garbage', '$(POD_NAMESPACE)/oras']);
    expect(prune.image).toBe(OrasRuntimeImage.default().image);
    expect(prune.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(pod).toMatchObject({ serviceAccountName: 'oras-prune', automountServiceAccountToken: true, restartPolicy: 'Never' });

    const role = objects.find((o) => o.kind === 'Role');
    expect(role.metadata.namespace).toBe('cache');
    expect(role.rules).toEqual([{ apiGroups: ['apps'], resources: ['deployments'], resourceNames: ['oras'], verbs: ['patch'] }]);
    const binding = objects.find((o) => o.kind === 'RoleBinding');
    expect(binding).toMatchObject({ metadata: { namespace: 'cache' }, roleRef: { kind: 'Role', name: 'oras-prune' }, subjects: [{ kind: 'ServiceAccount', name: 'oras-prune' }] });

    const [prepare, collect] = deployment.spec.template.spec.initContainers;
    expect(prepare).toMatchObject({
      name: 'prepare-storage',
      image: OrasRuntimeImage.default().image,
      command: ['/app/busybox', 'mkdir', '-p', '/var/lib/registry/docker/registry/v2/repositories', '/var/lib/registry/docker/registry/v2/blobs'],
    });
    expect(prepare.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(collect).toMatchObject({ name: 'collect-garbage', command: ['/bin/registry', 'garbage-collect', '/etc/docker/registry/config.yml'] });
    expect(collect.volumeMounts).toEqual(deployment.spec.template.spec.containers[0].volumeMounts);
    expect(collect.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  });

  test('emptyDir storage: manifests are pruned, the registry is never restarted (that would lose everything), and the job gets no token', () => {
    const { objects, pod, prune, deployment } = synth({ keepLast: 3, schedule: Cron.hourly() });
    expectValidKubernetes(objects);
    expect(prune.args).not.toContain('--collect-garbage');
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(objects.filter((o) => ['Role', 'RoleBinding', 'ServiceAccount'].includes(o.kind))).toEqual([]);
    expect(deployment.spec.template.spec.initContainers).toBeUndefined();
  });

  test('credentials, CA bundle and repository prefixes reach the job as files and flags, never as values', () => {
    const chart = Testing.chart();
    const credentials = kplus.Secret.fromSecretName(chart, 'Login', 'oras-login');
    const { objects, prune, pod } = synth({ keepFor: Duration.hours(12), repositoryPrefixes: ['etl/', 'train/'] }, {
      tlsSecret: kplus.Secret.fromSecretName(chart, 'Tls', 'oras-tls'),
      caBundle: CaBundle.fromConfigMap(kplus.ConfigMap.fromConfigMapName(chart, 'Ca', 'oras-ca')),
      htpasswd: { secret: kplus.Secret.fromSecretName(chart, 'Htpasswd', 'oras-htpasswd'), clientCredentials: credentials },
    });
    expectValidKubernetes(objects);
    expect(prune.args).toEqual(expect.arrayContaining(['--repository-prefix', 'etl/', '--repository-prefix', 'train/',
      '--registry-config=/oras-registry-auth/config.json', '--ca-file=/oras-ca/ca.crt']));
    expect(prune.args).not.toContain('--plain-http');
    expect(pod.volumes).toEqual(expect.arrayContaining([
      expect.objectContaining({ secret: expect.objectContaining({ secretName: 'oras-login', items: [{ key: '.dockerconfigjson', path: 'config.json' }] }) }),
      expect.objectContaining({ configMap: expect.objectContaining({ name: 'oras-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }] }) }),
    ]));
  });

  test.each([
    [{}, /retention needs keepLast, keepFor or both; without either every run would be deleted/],
    [{ keepLast: 0 }, /retention\.keepLast must be a whole number of at least 1, not 0/],
    [{ keepLast: 1.5 }, /retention\.keepLast must be a whole number of at least 1, not 1\.5/],
    [{ keepFor: Duration.seconds(10) }, /retention\.keepFor is 10 s; keep runs for at least a minute/],
  ] as [RegistryRetention, RegExp][])('refuses %j at synth time', (retention, message) => {
    expect(() => synth(retention)).toThrow(message);
  });
});

describeWithPeers(['docker-registry'], 'the CronJob\'s arguments, run by oras-runtime against a real registry', () => {
  let registry: Distribution;
  beforeAll(async () => { registry = await Distribution.start({ env: { REGISTRY_STORAGE_DELETE_ENABLED: 'true' } }); });
  afterAll(async () => registry.stop());

  test('the command line the CronJob runs is one oras-runtime accepts', async () => {
    const { prune } = synth({ keepLast: 2, keepFor: Duration.days(1), repositoryPrefixes: ['wf/'] });
    const args = (prune.args as string[]).map((a) => (a === 'oras.cache.svc:5000' ? registry.host : a));
    const written: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => { written.push(String(chunk)); return true; }) as typeof process.stderr.write;
    try {
      expect(await main(args)).toBe(0);
    } finally {
      process.stderr.write = write;
    }
    expect(written.join('')).toMatch(/pruned/);
  });
});
