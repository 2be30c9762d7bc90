import { ApiObject, Chart, Duration, JsonPatch, Names, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { OrasArtifact, validateHost } from './artifact';
import { CaBundle } from './ca-bundle';
import { dropAllCapabilities, hardenedContainerProps } from './hardening';
import { addRetention, RegistryRetention } from './registry-retention';
import { RegistryStorage } from './registry-storage';
import { OrasRuntimeImage } from './runtime-image';

/** The port every cdk8s-oras registry Service listens on (the `oras-cache` annotation assumes it). */
export const REGISTRY_PORT = 5000;

/**
 * The registry image. CNCF distribution is the reference implementation of the
 * OCI distribution spec, has no database, stores blobs on a plain filesystem
 * (emptyDir or PVC), supports htpasswd auth, TLS and deletes, and is what the
 * tests run against. 2.8.3 is its last 2.x release, the line Debian ships.
 */
export const DEFAULT_REGISTRY_IMAGE = 'docker.io/library/registry:2.8.3';

/** Non-root uid/gid the registry runs as; the storage volume is group-owned by it. */
const REGISTRY_UID = 65532;
const STORAGE_PATH = '/var/lib/registry';
const AUTH_PATH = '/etc/oras-registry/auth';
const TLS_PATH = '/etc/oras-registry/tls';

/**
 * A registry that workflow steps, the webhook and the CSI driver talk to.
 */
export interface IOrasRegistry {
  /** `host[:port]` as clients in the cluster reach it. */
  readonly host: string;
  /** Whether clients speak plain HTTP to it (no TLS). */
  readonly plainHttp: boolean;
  /** Whether clients skip TLS certificate verification. */
  readonly insecure: boolean;
  /**
   * Secret of type `kubernetes.io/dockerconfigjson` with the credentials
   * clients use, or undefined for anonymous access.
   */
  readonly credentials?: kplus.ISecret;
  /** CA certificates clients trust besides the system's, for a registry whose certificate a private CA signed. */
  readonly caBundle?: CaBundle;
  /** An artifact in this registry. */
  artifact(repository: string, tag: string): OrasArtifact;
}

/**
 * Options for `OrasRegistry.fromHost`.
 */
export interface ExternalRegistryOptions {
  /**
   * Speak plain HTTP instead of HTTPS.
   *
   * @default false - HTTPS with certificate verification
   */
  readonly plainHttp?: boolean;

  /**
   * Use HTTPS but skip certificate verification (self-signed registries).
   *
   * @default false
   */
  readonly insecure?: boolean;

  /**
   * Secret of type `kubernetes.io/dockerconfigjson` holding the registry credentials.
   *
   * @default - anonymous access
   */
  readonly credentials?: kplus.ISecret;

  /**
   * CA certificates that clients trust besides the system's, for a registry
   * whose certificate a private CA signed. The bundle must exist in each
   * namespace whose pods use the registry.
   *
   * @default - the system's CAs only
   */
  readonly caBundle?: CaBundle;
}

/**
 * htpasswd authentication for an `OrasRegistry`.
 */
export interface RegistryHtpasswdAuth {
  /** Existing Secret holding a bcrypt htpasswd file (`htpasswd -B`). */
  readonly secret: kplus.ISecret;

  /**
   * Key of the htpasswd file inside the Secret.
   *
   * @default 'htpasswd'
   */
  readonly key?: string;

  /**
   * Realm the registry names in its `WWW-Authenticate` challenge.
   *
   * @default 'oras-registry'
   */
  readonly realm?: string;

  /**
   * Secret of type `kubernetes.io/dockerconfigjson` that steps use to log in.
   * The htpasswd file only holds hashes, so clients need their own copy.
   *
   * @default - clients of this registry send no credentials and get 401 until one is set
   */
  readonly clientCredentials?: kplus.ISecret;
}

/**
 * Properties of an `OrasRegistry`.
 */
export interface OrasRegistryProps {
  /**
   * Name of the Service and the workload. Pods find the registry at
   * `<name>:5000` in its namespace, which is what the operator's
   * `oras-cache: <name>` annotation expects.
   *
   * @default - a DNS label derived from the construct path
   */
  readonly name?: string;

  /**
   * Namespace of every object.
   *
   * @default - the chart's namespace; without one, objects go to the namespace `kubectl` uses
   */
  readonly namespace?: string;

  /**
   * Registry image. Must be pinned by tag or digest.
   *
   * @default DEFAULT_REGISTRY_IMAGE (docker.io/library/registry:2.8.3)
   */
  readonly image?: string;

  /**
   * Where blobs are stored.
   *
   * @default - an emptyDir of at most 10 GiB: the cache is lost when the pod moves
   */
  readonly storage?: RegistryStorage;

  /**
   * CPU and memory of the registry container.
   *
   * @default - cpu 100m request / 1 limit, memory 128Mi request / 1Gi limit
   */
  readonly resources?: kplus.ContainerResources;

  /**
   * Require htpasswd authentication.
   *
   * @default - anonymous read and write
   */
  readonly htpasswd?: RegistryHtpasswdAuth;

  /**
   * Serve HTTPS with the certificate in this Secret (type `kubernetes.io/tls`,
   * keys `tls.crt` and `tls.key`). Clients verify it unless `insecure` is set.
   *
   * @default - plain HTTP inside the cluster
   */
  readonly tlsSecret?: kplus.ISecret;

  /**
   * With `tlsSecret`, tell clients to skip certificate verification (for
   * self-signed certificates that pods do not trust).
   *
   * @default false
   */
  readonly insecure?: boolean;

  /**
   * With `tlsSecret`, the CA certificates clients trust to verify it, when a
   * private CA signed it (for a cert-manager Certificate:
   * `CaBundle.fromSecret(tlsSecret)`, its `ca.crt`). The bundle must exist in
   * each namespace whose pods use the registry.
   *
   * @default - the system's CAs only
   */
  readonly caBundle?: CaBundle;

  /**
   * When set, a NetworkPolicy admits traffic to the registry only from these
   * peers (for example `kplus.Pods.select(...)`), on port 5000.
   *
   * @default - no NetworkPolicy: every pod that can reach the Service may use it
   */
  readonly allowFrom?: kplus.INetworkPolicyPeer[];

  /**
   * Delete old workflow runs: a CronJob prunes expired runs' manifests
   * through the API and, with persistent storage, restarts the registry so
   * that an init container collects the freed blobs before it serves again.
   * See `RegistryRetention`.
   *
   * @default - nothing is ever deleted
   */
  readonly retention?: RegistryRetention;
}

/**
 * An OCI registry in the cluster, used as the artifact cache: a one-replica
 * Deployment of CNCF distribution, its Service on port 5000 and its storage.
 *
 * It runs as a non-root user with a read-only root filesystem, all
 * capabilities dropped and the RuntimeDefault seccomp profile. Deletes are
 * enabled so that old runs can be cleaned up.
 */
export class OrasRegistry extends Construct implements IOrasRegistry {
  /**
   * A registry that already exists outside this chart, such as ghcr.io or a
   * registry on 127.0.0.1 in tests.
   *
   * @param host `host[:port]`, for example `ghcr.io` or `127.0.0.1:5000`
   */
  public static fromHost(host: string, options: ExternalRegistryOptions = {}): IOrasRegistry {
    return new ExternalRegistry(host, options);
  }

  /** Name of the Service and Deployment. */
  public readonly name: string;
  /** Namespace the objects are written to, if one was set. */
  public readonly namespace?: string;
  public readonly host: string;
  public readonly plainHttp: boolean;
  public readonly insecure: boolean;
  public readonly credentials?: kplus.ISecret;
  public readonly caBundle?: CaBundle;
  /** The registry Deployment, the construct's default child: `ApiObject.of(registry)` returns its object. */
  public readonly deployment: kplus.Deployment;
  /** The registry Service. */
  public readonly service: kplus.Service;
  /** The CronJob that prunes expired runs, when `retention` is set. */
  public readonly pruneJob?: kplus.CronJob;
  /** The NetworkPolicy, when `allowFrom` was given. */
  public readonly networkPolicy?: kplus.NetworkPolicy;

  constructor(scope: Construct, id: string, props: OrasRegistryProps = {}) {
    super(scope, id);
    this.name = props.name ?? Names.toDnsLabel(this);
    if (!/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(this.name)) {
      throw new Error(`OrasRegistry "${this.node.path}": name "${this.name}" must be a DNS-1035 label `
        + '(lowercase letters, digits and "-", starting with a letter, at most 63 characters), because it names the Service.');
    }
    this.namespace = props.namespace ?? Chart.of(this).namespace;
    const image = props.image ?? DEFAULT_REGISTRY_IMAGE;
    assertPinnedImage(image, `OrasRegistry "${this.node.path}"`);
    if (props.caBundle && (!props.tlsSecret || props.insecure)) {
      throw new Error(`OrasRegistry "${this.node.path}": "caBundle" verifies the registry's certificate, `
        + `but ${props.tlsSecret ? '"insecure" skips verification. Remove "insecure"' : 'no "tlsSecret" is set, so the registry speaks plain HTTP. Add "tlsSecret"'} or remove "caBundle".`);
    }
    if (props.insecure && !props.tlsSecret) {
      throw new Error(`OrasRegistry "${this.node.path}": "insecure" skips TLS verification, but no "tlsSecret" is set, so the registry speaks plain HTTP. Remove "insecure" or add "tlsSecret".`);
    }

    this.plainHttp = props.tlsSecret === undefined;
    this.insecure = props.insecure ?? false;
    this.credentials = props.htpasswd?.clientCredentials;
    this.caBundle = props.caBundle;
    this.host = this.namespace ? `${this.name}.${this.namespace}.svc:${REGISTRY_PORT}` : `${this.name}:${REGISTRY_PORT}`;

    const labels = {
      'app.kubernetes.io/name': 'oras-registry',
      'app.kubernetes.io/instance': this.name,
      'app.kubernetes.io/part-of': 'cdk8s-oras',
    };
    const metadata = { name: this.name, namespace: this.namespace, labels };

    const env: Record<string, kplus.EnvValue> = {
      REGISTRY_HTTP_ADDR: kplus.EnvValue.fromValue(`:${REGISTRY_PORT}`),
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: kplus.EnvValue.fromValue(STORAGE_PATH),
      REGISTRY_STORAGE_DELETE_ENABLED: kplus.EnvValue.fromValue('true'),
    };
    const storage = props.storage ?? RegistryStorage.emptyDir();
    const volumeMounts: kplus.VolumeMount[] = [
      { path: STORAGE_PATH, volume: storage._bind(this, metadata) },
    ];

    if (props.htpasswd) {
      const key = props.htpasswd.key ?? 'htpasswd';
      env.REGISTRY_AUTH = kplus.EnvValue.fromValue('htpasswd');
      env.REGISTRY_AUTH_HTPASSWD_REALM = kplus.EnvValue.fromValue(props.htpasswd.realm ?? 'oras-registry');
      env.REGISTRY_AUTH_HTPASSWD_PATH = kplus.EnvValue.fromValue(`${AUTH_PATH}/${key}`);
      volumeMounts.push({
        path: AUTH_PATH,
        readOnly: true,
        volume: kplus.Volume.fromSecret(this, 'HtpasswdVolume', props.htpasswd.secret, { name: 'htpasswd', items: { [key]: { path: key } } }),
      });
    }
    if (props.tlsSecret) {
      env.REGISTRY_HTTP_TLS_CERTIFICATE = kplus.EnvValue.fromValue(`${TLS_PATH}/tls.crt`);
      env.REGISTRY_HTTP_TLS_KEY = kplus.EnvValue.fromValue(`${TLS_PATH}/tls.key`);
      volumeMounts.push({ path: TLS_PATH, readOnly: true, volume: kplus.Volume.fromSecret(this, 'TlsVolume', props.tlsSecret, { name: 'tls' }) });
    }

    // With htpasswd, /v2/ answers 401, which a probe counts as failure; the TCP port is the honest check then.
    const probeOptions = { port: REGISTRY_PORT, periodSeconds: Duration.seconds(10), failureThreshold: 3 };
    const probe = (initialDelay: number) => props.htpasswd
      ? kplus.Probe.fromTcpSocket({ ...probeOptions, initialDelaySeconds: Duration.seconds(initialDelay) })
      : kplus.Probe.fromHttpGet('/v2/', {
        ...probeOptions,
        initialDelaySeconds: Duration.seconds(initialDelay),
        scheme: props.tlsSecret ? kplus.ConnectionScheme.HTTPS : kplus.ConnectionScheme.HTTP,
      });

    this.deployment = new kplus.Deployment(this, 'Deployment', {
      metadata,
      podMetadata: { labels },
      replicas: 1,
      // Filesystem storage is single-writer: never run two registry pods on one volume.
      strategy: kplus.DeploymentStrategy.recreate(),
      automountServiceAccountToken: false,
      securityContext: { user: REGISTRY_UID, group: REGISTRY_UID, fsGroup: REGISTRY_UID, ensureNonRoot: true },
      containers: [{
        name: 'registry',
        image,
        imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
        ports: [{ number: REGISTRY_PORT, name: 'registry' }],
        envVariables: env,
        volumeMounts,
        readiness: probe(1),
        liveness: probe(10),
        resources: props.resources ?? {
          cpu: { request: kplus.Cpu.millis(100), limit: kplus.Cpu.units(1) },
          memory: { request: Size.mebibytes(128), limit: Size.gibibytes(1) },
        },
        securityContext: hardenedContainerProps(REGISTRY_UID),
      }],
    });
    // cdk8s-plus-27 has no "ALL" capability nor seccompProfile; both are plain Kubernetes fields.
    ApiObject.of(this.deployment).addJsonPatch(
      JsonPatch.add('/spec/template/spec/securityContext/seccompProfile', { type: 'RuntimeDefault' }),
      ...dropAllCapabilities('/spec/template/spec/containers/0'),
    );

    if (props.retention) {
      if (storage._persistent) {
        // garbage-collect fails on a storage without these two (a new volume); the runtime image's busybox makes them.
        this.deployment.addInitContainer({
          name: 'prepare-storage',
          image: (props.retention.runtimeImage ?? OrasRuntimeImage.default()).image,
          imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
          command: ['/app/busybox', 'mkdir', '-p', `${STORAGE_PATH}/docker/registry/v2/repositories`, `${STORAGE_PATH}/docker/registry/v2/blobs`],
          volumeMounts,
          resources: {
            cpu: { request: kplus.Cpu.millis(10), limit: kplus.Cpu.millis(100) },
            memory: { request: Size.mebibytes(16), limit: Size.mebibytes(32) },
          },
          securityContext: hardenedContainerProps(REGISTRY_UID),
        });
        // The registry's own garbage collection, before it serves: no push can run meanwhile (see RegistryRetention).
        this.deployment.addInitContainer({
          name: 'collect-garbage',
          image,
          imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
          command: ['/bin/registry', 'garbage-collect', '/etc/docker/registry/config.yml'],
          envVariables: env,
          volumeMounts,
          resources: props.resources ?? {
            cpu: { request: kplus.Cpu.millis(100), limit: kplus.Cpu.units(1) },
            memory: { request: Size.mebibytes(128), limit: Size.gibibytes(1) },
          },
          securityContext: hardenedContainerProps(REGISTRY_UID),
        });
        ApiObject.of(this.deployment).addJsonPatch(...dropAllCapabilities('/spec/template/spec/initContainers/0', '/spec/template/spec/initContainers/1'));
      }
      this.pruneJob = addRetention(this, {
        name: this.name,
        namespace: this.namespace,
        host: this.host,
        plainHttp: this.plainHttp,
        insecure: this.insecure,
        credentials: this.credentials,
        caBundle: this.caBundle,
        deployment: this.deployment,
        labels,
        persistent: storage._persistent,
      }, props.retention, `OrasRegistry "${this.node.path}"`);
    }

    // Its id stays "Deployment": the selector label cdk8s-plus derives from it must not change under existing registries.
    this.node.defaultChild = this.deployment;

    this.service = new kplus.Service(this, 'Service', {
      metadata,
      selector: this.deployment,
      ports: [{ port: REGISTRY_PORT, targetPort: REGISTRY_PORT, name: 'registry' }],
    });

    if (props.allowFrom) {
      if (props.allowFrom.length === 0) {
        throw new Error(`OrasRegistry "${this.node.path}": "allowFrom" is empty, which would deny every client. List at least one peer, or omit "allowFrom" for no NetworkPolicy.`);
      }
      this.networkPolicy = new kplus.NetworkPolicy(this, 'NetworkPolicy', {
        metadata,
        selector: this.deployment,
        ingress: {
          default: kplus.NetworkPolicyTrafficDefault.DENY,
          rules: props.allowFrom.map((peer) => ({ peer, ports: [kplus.NetworkPolicyPort.tcp(REGISTRY_PORT)] })),
        },
      });
    }
  }

  public artifact(repository: string, tag: string): OrasArtifact {
    return OrasArtifact.fromRegistry(this, repository, { tag });
  }
}

class ExternalRegistry implements IOrasRegistry {
  public readonly plainHttp: boolean;
  public readonly insecure: boolean;
  public readonly credentials?: kplus.ISecret;
  public readonly caBundle?: CaBundle;

  constructor(public readonly host: string, options: ExternalRegistryOptions) {
    validateHost(host, (why) => {
      throw new Error(`OrasRegistry.fromHost("${host}"): ${why}`);
    });
    if (options.plainHttp && options.insecure) {
      throw new Error(`OrasRegistry.fromHost("${host}"): "plainHttp" and "insecure" exclude each other: insecure is for HTTPS with an unverified certificate.`);
    }
    if (options.caBundle && (options.plainHttp || options.insecure)) {
      throw new Error(`OrasRegistry.fromHost("${host}"): "caBundle" verifies the registry's HTTPS certificate; it goes with neither "plainHttp" nor "insecure".`);
    }
    this.plainHttp = options.plainHttp ?? false;
    this.insecure = options.insecure ?? false;
    this.credentials = options.credentials;
    this.caBundle = options.caBundle;
  }

  public artifact(repository: string, tag: string): OrasArtifact {
    return OrasArtifact.fromRegistry(this, repository, { tag });
  }
}

/**
 * Throws unless the image names a tag other than `latest` or a digest.
 * @internal
 */
export function assertPinnedImage(image: string, owner: string): void {
  const lastSlash = image.lastIndexOf('/');
  const tagged = image.lastIndexOf(':') > lastSlash;
  const digested = image.includes('@sha256:');
  if (!digested && (!tagged || image.endsWith(':latest'))) {
    throw new Error(`${owner}: image "${image}" is not pinned. Give an explicit version tag or @sha256 digest (not ":latest").`);
  }
}
