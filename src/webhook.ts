import { ApiObject, Chart, Duration, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { clusterScoped } from './cluster-scoped';
import { hardenedSecurityContext } from './hardening';
import { RUNTIME_UID } from './injection';
import { kubeResources } from './resources';
import { OrasRuntimeImage } from './runtime-image';
import { patchable } from './typed';

const PORT = 8443;
/** The webhook container's resources. */
const WEBHOOK_RESOURCES = {
  cpu: { request: kplus.Cpu.millis(50), limit: kplus.Cpu.units(1) },
  memory: { request: Size.mebibytes(64), limit: Size.mebibytes(256) },
};

/**
 * Options of `WebhookTls.certManager`.
 */
export interface CertManagerTlsOptions {
  /** Name of the cert-manager Issuer or ClusterIssuer that signs the serving certificate. */
  readonly issuerName: string;

  /**
   * Kind of the issuer.
   *
   * @default 'Issuer' - in the webhook's namespace
   */
  readonly issuerKind?: string;
}

/**
 * Where the webhook's serving certificate comes from.
 */
export abstract class WebhookTls {
  /**
   * The webhook manages its own TLS: it keeps a CA and a serving certificate in
   * a Secret, writes the CA into the caBundle of its MutatingWebhookConfiguration
   * and renews 30 days before expiry. Needs RBAC on that Secret and that
   * configuration only.
   */
  public static selfManaged(): WebhookTls {
    return new SelfManaged();
  }

  /**
   * cert-manager issues the certificate (a Certificate object) and injects its
   * CA into the configuration (the `cert-manager.io/inject-ca-from` annotation).
   * cert-manager must be installed.
   */
  public static certManager(options: CertManagerTlsOptions): WebhookTls {
    return new CertManager(options);
  }

  /** @internal */
  public abstract readonly _selfManaged: boolean;
  /** @internal */
  public abstract _certManagerIssuer(): CertManagerTlsOptions | undefined;
}

class SelfManaged extends WebhookTls {
  public readonly _selfManaged = true;
  public _certManagerIssuer(): undefined {
    return undefined;
  }
}

class CertManager extends WebhookTls {
  public readonly _selfManaged = false;
  constructor(private readonly options: CertManagerTlsOptions) {
    super();
  }
  public _certManagerIssuer(): CertManagerTlsOptions {
    return this.options;
  }
}

/** What the API server does when the webhook cannot be reached. */
export enum WebhookFailurePolicy {
  /** Reject the object: an annotated pod never runs unprepared (without its inputs and outputs). */
  FAIL = 'Fail',
  /** Admit the object unchanged. */
  IGNORE = 'Ignore',
}

/**
 * Properties of an `OrasWebhook`.
 */
export interface OrasWebhookProps {
  /**
   * Name of the Deployment, Service, configuration and their RBAC.
   *
   * @default 'oras-webhook'
   */
  readonly name?: string;

  /**
   * Namespace of the webhook. It is never mutated by the webhook itself.
   *
   * @default - the chart's namespace, else 'oras-system'
   */
  readonly namespace?: string;

  /**
   * The runtime image: the webhook itself and the containers it injects.
   *
   * @default OrasRuntimeImage.default()
   */
  readonly runtimeImage?: OrasRuntimeImage;

  /**
   * Replicas of the webhook; a PodDisruptionBudget keeps one available.
   *
   * @default 2
   */
  readonly replicas?: number;

  /**
   * Where the serving certificate comes from.
   *
   * @default WebhookTls.selfManaged()
   */
  readonly tls?: WebhookTls;

  /**
   * What happens to Pods, Jobs and JobSets of opted-in namespaces when the webhook is down.
   *
   * @default WebhookFailurePolicy.FAIL - an annotated pod never runs without its inputs and outputs
   */
  readonly failurePolicy?: WebhookFailurePolicy;

  /**
   * How long the API server waits for an answer (1 to 30 seconds).
   *
   * @default Duration.seconds(5)
   */
  readonly timeout?: Duration;

  /**
   * Namespaces opt in with this label set to "enabled". kube-system and the
   * webhook's own namespace never match.
   *
   * @default 'oras.converged-computing.github.io/webhook'
   */
  readonly namespaceLabel?: string;

  /**
   * How long injected steps wait for their inputs by default.
   *
   * @default Duration.minutes(30)
   */
  readonly inputTimeout?: Duration;
}

/**
 * The mutating admission webhook that prepares Pods, Jobs and JobSets annotated the
 * way the oras-operator expected (`oras.converged-computing.github.io/*`),
 * with the same injection `OrasWorkflowStep` uses at synth time.
 *
 * It writes a Deployment (2 replicas, a PodDisruptionBudget, non-root,
 * read-only root filesystem), a Service, the MutatingWebhookConfiguration
 * (`admissionReviewVersions: [v1]`, `sideEffects: None`, opt-in namespaces,
 * `reinvocationPolicy: IfNeeded`, which is safe because preparing is
 * idempotent) and least-privilege RBAC: with self-managed TLS, access to its
 * own Secret and its own webhook configuration only.
 */
export class OrasWebhook extends Construct {
  /** Name shared by the Deployment, Service, configuration and RBAC. */
  public readonly name: string;
  public readonly namespace: string;
  /** Label (value "enabled") that opts a namespace in. */
  public readonly namespaceLabel: string;
  /**
   * The webhook Deployment, the construct's default child: `ApiObject.of(webhook)` returns it. Its JSON
   * patches apply to the Kubernetes JSON it renders, as written.
   */
  public readonly deployment: kplus.k8s.KubeDeployment;
  /** The Service the API server calls. */
  public readonly service: kplus.k8s.KubeService;
  /** The MutatingWebhookConfiguration. */
  public readonly configuration: kplus.k8s.KubeMutatingWebhookConfiguration;

  constructor(scope: Construct, id: string, props: OrasWebhookProps = {}) {
    super(scope, id);
    const where = `OrasWebhook "${this.node.path}"`;
    this.name = props.name ?? 'oras-webhook';
    this.namespace = props.namespace ?? Chart.of(this).namespace ?? 'oras-system';
    this.namespaceLabel = props.namespaceLabel ?? 'oras.converged-computing.github.io/webhook';
    if (!/^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$/.test(this.name)) throw new Error(`${where}: name "${this.name}" must be a DNS label of at most 52 characters.`);
    const replicas = props.replicas ?? 2;
    if (!Number.isInteger(replicas) || replicas < 1) throw new Error(`${where}: replicas must be a whole number of at least 1, not ${replicas}.`);
    const timeoutSeconds = (props.timeout ?? Duration.seconds(5)).toSeconds();
    if (timeoutSeconds < 1 || timeoutSeconds > 30) throw new Error(`${where}: timeout must be between 1 and 30 seconds (the API server's limit), not ${timeoutSeconds}.`);
    const tls = props.tls ?? WebhookTls.selfManaged();
    const image = (props.runtimeImage ?? OrasRuntimeImage.default()).image;
    const labels = { 'app.kubernetes.io/name': 'oras-webhook', 'app.kubernetes.io/instance': this.name, 'app.kubernetes.io/part-of': 'cdk8s-oras' };
    const metadata = { name: this.name, namespace: this.namespace, labels };
    const secretName = `${this.name}-tls`;
    const inputTimeout = `${(props.inputTimeout ?? Duration.minutes(30)).toSeconds()}s`;

    patchable(new kplus.k8s.KubeServiceAccount(this, 'ServiceAccount', { metadata, automountServiceAccountToken: tls._selfManaged }));

    const args = ['webhook', '--port', String(PORT), '--runtime-image', image, '--input-timeout', inputTimeout];
    if (tls._selfManaged) {
      args.push('--secret', secretName, '--webhook-config', this.name, '--service', this.name);
      this.selfManagedRbac(metadata, secretName);
    } else {
      args.push('--tls-cert', '/tls/tls.crt', '--tls-key', '/tls/tls.key');
      const issuer = tls._certManagerIssuer()!;
      // A cert-manager CRD: no typed class for it.
      new ApiObject(this, 'Certificate', {
        apiVersion: 'cert-manager.io/v1',
        kind: 'Certificate',
        metadata,
        spec: {
          secretName,
          dnsNames: [`${this.name}.${this.namespace}.svc`, `${this.name}.${this.namespace}.svc.cluster.local`],
          issuerRef: { name: issuer.issuerName, kind: issuer.issuerKind ?? 'Issuer' },
          privateKey: { algorithm: 'ECDSA', size: 256, rotationPolicy: 'Always' },
        },
      });
    }

    const probe = (path: string): kplus.k8s.Probe => ({
      httpGet: { path, port: kplus.k8s.IntOrString.fromNumber(PORT), scheme: 'HTTPS' },
      periodSeconds: 10,
      failureThreshold: 3,
      timeoutSeconds: 2,
    });
    this.deployment = patchable(new kplus.k8s.KubeDeployment(this, 'Resource', {
      metadata,
      spec: {
        replicas,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: this.name,
            automountServiceAccountToken: tls._selfManaged,
            securityContext: { runAsNonRoot: true, runAsUser: RUNTIME_UID, runAsGroup: RUNTIME_UID, seccompProfile: { type: 'RuntimeDefault' } },
            affinity: {
              podAntiAffinity: {
                preferredDuringSchedulingIgnoredDuringExecution: [{
                  weight: 100,
                  podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: labels } },
                }],
              },
            },
            containers: [{
              name: 'webhook',
              image,
              imagePullPolicy: 'IfNotPresent',
              args,
              env: [{ name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } }],
              ports: [{ name: 'https', containerPort: PORT }],
              readinessProbe: probe('/readyz'),
              livenessProbe: probe('/healthz'),
              resources: kubeResources(undefined, WEBHOOK_RESOURCES),
              securityContext: hardenedSecurityContext(),
              volumeMounts: tls._selfManaged ? undefined : [{ name: 'tls', mountPath: '/tls', readOnly: true }],
            }],
            volumes: tls._selfManaged ? undefined : [{ name: 'tls', secret: { secretName } }],
          },
        },
      },
    }));

    patchable(new kplus.k8s.KubePodDisruptionBudget(this, 'Budget', {
      metadata,
      spec: { minAvailable: kplus.k8s.IntOrString.fromNumber(1), unhealthyPodEvictionPolicy: 'AlwaysAllow', selector: { matchLabels: labels } },
    }));

    this.service = patchable(new kplus.k8s.KubeService(this, 'Service', {
      metadata,
      spec: { selector: labels, ports: [{ name: 'https', port: 443, targetPort: kplus.k8s.IntOrString.fromNumber(PORT) }] },
    }));

    this.configuration = clusterScoped(patchable(new kplus.k8s.KubeMutatingWebhookConfiguration(this, 'Configuration', {
      metadata: {
        name: this.name,
        labels,
        annotations: tls._selfManaged ? undefined : { 'cert-manager.io/inject-ca-from': `${this.namespace}/${this.name}` },
      },
      webhooks: [{
        name: `${this.name}.oras.converged-computing.github.io`,
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        timeoutSeconds,
        failurePolicy: props.failurePolicy ?? WebhookFailurePolicy.FAIL,
        reinvocationPolicy: 'IfNeeded',
        matchPolicy: 'Equivalent',
        clientConfig: { service: { name: this.name, namespace: this.namespace, path: '/mutate', port: 443 } },
        rules: [
          { apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], operations: ['CREATE'], scope: 'Namespaced' },
          { apiGroups: ['batch'], apiVersions: ['v1'], resources: ['jobs'], operations: ['CREATE'], scope: 'Namespaced' },
          // Every replicated Job's pod template; with no JobSet CRD installed the rule matches nothing.
          { apiGroups: ['jobset.x-k8s.io'], apiVersions: ['v1alpha2'], resources: ['jobsets'], operations: ['CREATE'], scope: 'Namespaced' },
        ],
        namespaceSelector: {
          matchLabels: { [this.namespaceLabel]: 'enabled' },
          matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', this.namespace] }],
        },
      }],
    })));
  }

  private selfManagedRbac(metadata: { name: string; namespace: string; labels: Record<string, string> }, secretName: string): void {
    const subject: kplus.k8s.Subject[] = [{ kind: 'ServiceAccount', name: this.name, namespace: this.namespace }];
    patchable(new kplus.k8s.KubeRole(this, 'Role', {
      metadata,
      rules: [
        { apiGroups: [''], resources: ['secrets'], resourceNames: [secretName], verbs: ['get', 'update'] },
        // create cannot be limited to one name; the Role's namespace is the webhook's own.
        { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
      ],
    }));
    patchable(new kplus.k8s.KubeRoleBinding(this, 'RoleBinding', {
      metadata,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: this.name },
      subjects: subject,
    }));
    clusterScoped(patchable(new kplus.k8s.KubeClusterRole(this, 'ClusterRole', {
      metadata: { name: this.name, labels: metadata.labels },
      rules: [{ apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: [this.name], verbs: ['get', 'update'] }],
    })));
    clusterScoped(patchable(new kplus.k8s.KubeClusterRoleBinding(this, 'ClusterRoleBinding', {
      metadata: { name: this.name, labels: metadata.labels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: this.name },
      subjects: subject,
    })));
  }
}
