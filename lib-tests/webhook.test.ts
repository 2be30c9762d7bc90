import { ApiObject, Chart, Duration, JsonPatch, Testing } from 'cdk8s';
import { OrasRuntimeImage, OrasWebhook, WebhookFailurePolicy, WebhookTls } from '../src';
import { expectValidKubernetes } from './util/kubernetes-schema';

function synth(props: ConstructorParameters<typeof OrasWebhook>[2] = {}) {
  const chart = Testing.chart();
  const webhook = new OrasWebhook(chart, 'Webhook', { namespace: 'oras-system', ...props });
  const manifests = Testing.synth(chart);
  const find = (kind: string) => manifests.find((m) => m.kind === kind);
  return { webhook, manifests, find };
}

describe('OrasWebhook', () => {
  test('in a chart with a namespace, the cluster-scoped objects carry none', () => {
    const chart = new Chart(Testing.app(), 'apps', { namespace: 'ml' });
    new OrasWebhook(chart, 'Webhook');
    const clusterScoped = Testing.synth(chart).filter((m) => ['ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration'].includes(m.kind));
    expect(clusterScoped.map((m) => [m.kind, m.metadata.namespace])).toEqual([
      ['ClusterRole', undefined], ['ClusterRoleBinding', undefined], ['MutatingWebhookConfiguration', undefined],
    ]);
  });

  test('escape hatch: ApiObject.of(webhook) is its Deployment; the Service and configuration are properties', () => {
    const chart = Testing.chart();
    const webhook = new OrasWebhook(chart, 'Webhook');
    expect(ApiObject.of(webhook)).toBe(webhook.deployment);
    expect([webhook.deployment.kind, webhook.service.kind, webhook.configuration.kind]).toEqual(['Deployment', 'Service', 'MutatingWebhookConfiguration']);
    ApiObject.of(webhook).addJsonPatch(JsonPatch.add('/spec/template/spec/priorityClassName', 'system-cluster-critical'));
    expect(Testing.synth(chart).find((o) => o.kind === 'Deployment').spec.template.spec.priorityClassName).toBe('system-cluster-critical');
  });

  test('self-managed TLS by default: Deployment, PDB, Service, configuration and least-privilege RBAC', () => {
    const { manifests, find } = synth();
    expectValidKubernetes(manifests);
    expect(manifests.map((m) => m.kind).sort()).toEqual([
      'ClusterRole', 'ClusterRoleBinding', 'Deployment', 'MutatingWebhookConfiguration', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'ServiceAccount',
    ]);
    const deployment = find('Deployment');
    expect(deployment.spec.replicas).toBe(2);
    const container = deployment.spec.template.spec.containers[0];
    expect(container.image).toBe(OrasRuntimeImage.default().image);
    expect(container.args).toEqual(['webhook', '--port', '8443', '--runtime-image', OrasRuntimeImage.default().image, '--input-timeout', '1800s',
      '--secret', 'oras-webhook-tls', '--webhook-config', 'oras-webhook', '--service', 'oras-webhook']);
    expect(container.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 8443, scheme: 'HTTPS' });
    expect(find('PodDisruptionBudget').spec.minAvailable).toBe(1);

    expect(find('Role').rules).toEqual([
      { apiGroups: [''], resources: ['secrets'], resourceNames: ['oras-webhook-tls'], verbs: ['get', 'update'] },
      { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
    ]);
    expect(find('ClusterRole').rules).toEqual([
      { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: ['oras-webhook'], verbs: ['get', 'update'] },
    ]);
  });

  test('the configuration: v1 reviews, no side effects, short timeout, Fail, IfNeeded, opt-in namespaces only', () => {
    const [webhook] = synth().find('MutatingWebhookConfiguration').webhooks;
    expect(webhook).toMatchObject({
      name: 'oras-webhook.oras.converged-computing.github.io',
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      timeoutSeconds: 5,
      failurePolicy: 'Fail',
      reinvocationPolicy: 'IfNeeded',
      clientConfig: { service: { name: 'oras-webhook', namespace: 'oras-system', path: '/mutate', port: 443 } },
    });
    expect(webhook.rules.map((r: any) => `${r.apiGroups[0]}/${r.resources[0]}:${r.operations}`)).toEqual(['/pods:CREATE', 'batch/jobs:CREATE', 'jobset.x-k8s.io/jobsets:CREATE']);
    expect(webhook.namespaceSelector).toEqual({
      matchLabels: { 'oras.converged-computing.github.io/webhook': 'enabled' },
      matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'oras-system'] }],
    });
  });

  test('cert-manager TLS: a Certificate, the CA injection annotation, the secret mounted, no RBAC', () => {
    const { manifests, find } = synth({ tls: WebhookTls.certManager({ issuerName: 'cluster-ca', issuerKind: 'ClusterIssuer' }), failurePolicy: WebhookFailurePolicy.IGNORE, timeout: Duration.seconds(3) });
    expectValidKubernetes(manifests.filter((m) => m.kind !== 'Certificate'));
    expect(find('Certificate').spec).toMatchObject({ secretName: 'oras-webhook-tls', issuerRef: { name: 'cluster-ca', kind: 'ClusterIssuer' }, dnsNames: ['oras-webhook.oras-system.svc', 'oras-webhook.oras-system.svc.cluster.local'] });
    const config = find('MutatingWebhookConfiguration');
    expect(config.metadata.annotations).toEqual({ 'cert-manager.io/inject-ca-from': 'oras-system/oras-webhook' });
    expect(config.webhooks[0]).toMatchObject({ failurePolicy: 'Ignore', timeoutSeconds: 3 });
    expect(manifests.some((m) => /Role/.test(m.kind))).toBe(false);
    const pod = find('Deployment').spec.template.spec;
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.containers[0].args).toEqual(expect.arrayContaining(['--tls-cert', '/tls/tls.crt', '--tls-key', '/tls/tls.key']));
    expect(pod.volumes).toEqual([{ name: 'tls', secret: { secretName: 'oras-webhook-tls' } }]);
  });

  test.each([
    [{ name: 'Bad' }, /name "Bad" must be a DNS label/],
    [{ replicas: 0 }, /replicas must be a whole number of at least 1/],
    [{ timeout: Duration.seconds(40) }, /timeout must be between 1 and 30 seconds/],
  ])('refuses %j', (props, message) => {
    expect(() => synth(props as any)).toThrow(message);
  });
});
