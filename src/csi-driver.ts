import { Chart, Size, SizeRoundingBehavior } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { OrasArtifact } from './artifact';
import { CaBundle } from './ca-bundle';
import { clusterScoped } from './cluster-scoped';
import { CSI_ATTRIBUTE } from './csi-attributes';
import { hardenedSecurityContext } from './hardening';
import { caVolumeSource } from './injection';
import { OrasPersistentVolume, OrasPersistentVolumeOptions } from './persistent-volume';
import { IOrasRegistry } from './registry';
import { kubeResources } from './resources';
import { OrasRuntimeImage } from './runtime-image';
import { OrasStorageClass, OrasStorageClassOptions } from './storage-class';
import { patchable } from './typed';

/** The plugin's resources when the user gives none. */
const PLUGIN_RESOURCES = {
  cpu: { request: kplus.Cpu.millis(50), limit: kplus.Cpu.units(1) },
  memory: { request: Size.mebibytes(64), limit: Size.mebibytes(512) },
};
/** The provisioner pod's containers: external-provisioner, and the plugin in controller mode (Node.js). */
const PROVISIONER_RESOURCES = {
  cpu: { request: kplus.Cpu.millis(10), limit: kplus.Cpu.millis(200) },
  memory: { request: Size.mebibytes(32), limit: Size.mebibytes(128) },
};
const CONTROLLER_RESOURCES = {
  cpu: { request: kplus.Cpu.millis(10), limit: kplus.Cpu.millis(500) },
  memory: { request: Size.mebibytes(48), limit: Size.mebibytes(256) },
};
/** The upstream sidecars of the node DaemonSet (`upstreamSidecars`). */
const SIDECAR_RESOURCES = {
  cpu: { request: kplus.Cpu.millis(10), limit: kplus.Cpu.millis(100) },
  memory: { request: Size.mebibytes(16), limit: Size.mebibytes(64) },
};

/** Pinned CSI sidecars (kubernetes-csi, registry.k8s.io), for `upstreamSidecars`. */
const NODE_DRIVER_REGISTRAR_IMAGE = 'registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.17.0';
const LIVENESS_PROBE_IMAGE = 'registry.k8s.io/sig-storage/livenessprobe:v2.19.0';
/** The pinned external-provisioner sidecar of the provisioner Deployment. */
export const CSI_PROVISIONER_IMAGE = 'registry.k8s.io/sig-storage/csi-provisioner:v5.3.0';
/** The uid of the provisioner pod's containers: the socket they share is the plugin's, made as this user. */
const PROVISIONER_UID = 65532;

/** Port of /healthz (a CSI Probe over the socket): the plugin's own, or the livenessprobe sidecar's. */
const HEALTH_PORT = 9808;
/** The kubelet's plugins_registry directory inside the plugin (or registrar) container. */
const REGISTRATION_DIR = '/registration';
/** The plugin directory inside every container of the pod. */
const SOCKET_DIR = '/csi';
/** Where the plugin sees its CA bundle (`caBundle`). */
const CA_DIR = '/etc/oras-ca';
const SOCKET = `${SOCKET_DIR}/csi.sock`;
/** A unix socket path has room for 107 bytes (sun_path is 108 with the terminating NUL). */
const MAX_SOCKET_PATH = 107;
/** CSIDriver names are DNS subdomains of at most 63 characters (the API server's limit for this kind). */
const DRIVER_NAME = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A media type as RFC 6838 names it: `type/subtype`, optionally with a `+suffix`; no parameters, no commas. */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

/**
 * Whether the node plugin asks the registry what a tag points at when it mounts a volume. A digest the
 * node's cache already holds is never downloaded again, whatever the policy.
 */
export enum OrasPullPolicy {
  /** Resolve the tag on every mount and pull a digest the cache lacks; the mount fails while the registry is out of reach. */
  ALWAYS = 'Always',
  /**
   * Resolve the tag on every mount as ALWAYS does; while the registry is out of reach, mount what the tag
   * resolved to last on this node (public artifacts only: a private one needs the registry to check the pod's credentials).
   */
  IF_NOT_PRESENT = 'IfNotPresent',
  /** Never ask the registry: mount what the tag resolved to last on this node, or fail (FAILED_PRECONDITION) if it never did. */
  NEVER = 'Never',
}

/**
 * Properties of an `OrasCsiDriver`.
 */
export interface OrasCsiDriverProps {
  /**
   * Name of the CSI driver: the CSIDriver object, the `driver` of every
   * volume, and the plugin directory under the kubelet's. A DNS subdomain of at
   * most 63 characters. The node DaemonSet and its ServiceAccount are named
   * after it (dots become dashes, plus `-node`).
   *
   * @default 'csi.oras.land' - the name the prototype driver used
   */
  readonly name?: string;

  /**
   * Namespace of the node DaemonSet and its ServiceAccount. Pods in any
   * namespace can use the driver. The plugin is privileged, so the namespace
   * must allow privileged pods (Pod Security `privileged`): keep it apart from
   * namespaces that enforce `restricted`, such as the webhook's `oras-system`.
   *
   * @default - the chart's namespace, else 'oras-csi'
   */
  readonly namespace?: string;

  /**
   * The runtime image; the node plugin runs `oras-runtime csi`.
   *
   * @default OrasRuntimeImage.default()
   */
  readonly runtimeImage?: OrasRuntimeImage;

  /**
   * Absolute host path of the node-local artifact cache. It is created if
   * missing, survives plugin restarts, and must lie outside `kubeletDir`.
   *
   * @default '/var/lib/oras-csi'
   */
  readonly cacheDir?: string;

  /**
   * Serve one cached copy of an artifact to the pods of every namespace (the
   * plugin's `--share-cache-across-namespaces`). By default each namespace has
   * its own cache entries, so a pod never reads a copy that another
   * namespace's credentials pulled; share only where every namespace may read
   * every artifact the driver mounts, to save pulls and disk.
   *
   * @default false - one cache entry per namespace
   */
  readonly shareCacheAcrossNamespaces?: boolean;

  /**
   * Largest size of the node-local cache (the plugin's `--cache-max-size`),
   * counted as the disk space of the unpacked trees (their blocks); the plugin evicts
   * unused artifacts, least recently used first, beyond it.
   *
   * @default Size.gibibytes(20)
   */
  readonly cacheMaxSize?: Size;

  /**
   * CA certificates the plugin trusts besides the system's, for registries
   * whose certificates a private CA signed (the plugin's `--ca-file`). The
   * ConfigMap or Secret must be in the plugin's namespace.
   *
   * @default - the system's CAs only
   */
  readonly caBundle?: CaBundle;

  /**
   * Absolute host path of the kubelet's root directory (`--root-dir`). Some
   * distributions move it, for example k0s to `/var/lib/k0s/kubelet`.
   *
   * @default '/var/lib/kubelet'
   */
  readonly kubeletDir?: string;

  /**
   * CPU, memory and ephemeral storage of the node plugin container. The
   * upstream sidecars (`upstreamSidecars`) have fixed small resources (10m /
   * 16Mi requests, 100m / 64Mi limits).
   *
   * @default - cpu 50m request / 1 limit, memory 64Mi request / 512Mi limit; cpu or memory left out entirely keeps this default
   */
  readonly resources?: kplus.ContainerResources;

  /**
   * Port of the plugin's Prometheus metrics (`/metrics`), on the pod IP. Port
   * 9808 belongs to the liveness endpoint (`/healthz`).
   *
   * @default 9809
   */
  readonly metricsPort?: number;

  /**
   * Run the pinned upstream sidecars `csi-node-driver-registrar` (v2.17.0)
   * and `livenessprobe` (v2.19.0) next to the plugin, for clusters whose
   * policy asks for them. They then register the driver with the kubelet and
   * serve `/healthz`, and the plugin does neither.
   *
   * @default false - the plugin registers itself with the kubelet and serves its own `/healthz`: one container per node
   */
  readonly upstreamSidecars?: boolean;

  /**
   * Write the provisioner Deployment: the pinned external-provisioner
   * (v5.3.0) next to the plugin in controller mode (`oras-runtime csi
   * --controller`), with its ServiceAccount and least-privilege RBAC. It
   * creates a PersistentVolume for each PersistentVolumeClaim of the driver's
   * StorageClasses. Static PersistentVolumes (`persistentVolume()`) need no
   * provisioner.
   *
   * @default - written once the driver has a StorageClass (`addStorageClass()`)
   */
  readonly provisioner?: boolean;
}

/**
 * How the node plugin pulls an artifact: options every kind of volume of the
 * driver shares (inline volumes, StorageClasses, static PersistentVolumes).
 */
export interface OrasCsiAttributeOptions {
  /**
   * When the node pulls the artifact rather than use its cache. Written as
   * `oras.options.pullpolicy`.
   *
   * @default OrasPullPolicy.IF_NOT_PRESENT
   */
  readonly pullPolicy?: OrasPullPolicy;

  /**
   * Keep only the layers of these media types (for example
   * `application/vnd.oci.image.layer.v1.tar`). Written comma-separated as
   * `oras.artifact.layers.mediatype`.
   *
   * @default - every layer of the artifact
   */
  readonly mediaTypes?: string[];

  /**
   * How many layers the node pulls at once (a positive whole number). Written
   * as `oras.options.concurrency`.
   *
   * @default - the plugin's default
   */
  readonly concurrency?: number;
}

/**
 * Options of `OrasCsiDriver.volume`.
 */
export interface OrasCsiVolumeOptions extends OrasCsiAttributeOptions {
  /**
   * Name of the volume in the pod.
   *
   * @default - a DNS label derived from the scope's path and the id
   */
  readonly name?: string;

  /**
   * Secret of type `kubernetes.io/dockerconfigjson` with the registry
   * credentials, in the namespace of the pod that uses the volume. The kubelet
   * reads it and hands it to the plugin with each mount (the volume's
   * `nodePublishSecretRef`); the plugin itself has no API access.
   *
   * @default - the credentials of the artifact's registry, if it has any; else anonymous
   */
  readonly credentials?: kplus.ISecret;
}

/**
 * A CSI inline volume of the driver as plain options: what the
 * `Volume.fromCsi(scope, id, driver, options)` of any cdk8s-plus version
 * (27 to 33) accepts, so apps on another cdk8s-plus than this library's can
 * mount artifacts too.
 */
export interface OrasCsiVolumeConfig {
  /** The CSI driver's name: `fromCsi`'s `driver` argument. */
  readonly driver: string;
  /** Always true: the volume is read-only. */
  readonly readOnly: boolean;
  /** The volume attributes (`oras.artifact.reference`, `oras.options.*`). */
  readonly attributes: { [key: string]: string };
  /**
   * The volume's name in the pod, when one was asked for.
   *
   * @default - the name cdk8s-plus derives
   */
  readonly name?: string;
  /**
   * Name of the Secret with the registry credentials, for the volume's
   * `csi.nodePublishSecretRef`. `fromCsi` has no option for it in any
   * cdk8s-plus version: add it to the pod with `addJsonPatch`.
   *
   * @default - no credentials
   */
  readonly nodePublishSecretName?: string;
}

/**
 * A CSI driver that mounts ORAS artifacts read-only into pods, from a
 * node-local cache, compatible with the volume attributes of the oras CSI
 * driver prototype (`oras.artifact.reference`,
 * `oras.artifact.layers.mediatype`, `oras.options.*`). Three kinds of volumes:
 * - CSI inline (ephemeral) volumes in a pod: `volume()`;
 * - PersistentVolumeClaims of a StorageClass (`addStorageClass()`), which the
 *   provisioner Deployment provisions: one claim that many pods mount
 *   read-only (ReadOnlyMany);
 * - static PersistentVolumes with a claim bound to each: `persistentVolume()`.
 *
 * It writes:
 * - a `storage.k8s.io/v1` CSIDriver: no attach, pod info on mount, lifecycle
 *   modes `Persistent` and `Ephemeral`, `fsGroupPolicy: None` (the content is
 *   read-only, so the kubelet must not chown it);
 * - a DaemonSet on every node (all taints tolerated, `system-node-critical`)
 *   with the node plugin (`oras-runtime csi`), resources on every container;
 * - its ServiceAccount, without a token;
 * - with a StorageClass (or `provisioner: true`), the provisioner Deployment:
 *   external-provisioner and the plugin in controller mode, its
 *   ServiceAccount, a ClusterRole with what external-provisioner needs for
 *   PersistentVolumes and claims, and a Role for its leader-election Lease.
 *
 * Registration with the kubelet and liveness come in two modes:
 * - by default the plugin does both itself. It serves the kubelet's plugin
 *   registration (`pluginregistration.v1`, as `csi-node-driver-registrar`
 *   does) on `<kubeletDir>/plugins_registry/<name>-reg.sock`, removes that
 *   socket on SIGTERM so that the kubelet deregisters the driver, and exits
 *   (the container restarts) when the kubelet reports a failed registration.
 *   Its liveness probe asks its own `/healthz` on port 9808, which makes a
 *   CSI Probe call over the plugin's socket (as `livenessprobe` does);
 * - with `upstreamSidecars`, the pinned `csi-node-driver-registrar` and
 *   `livenessprobe` containers do this next to the plugin, as in most CSI
 *   drivers.
 *
 * The node plugin has no RBAC: the kubelet passes everything a mount needs
 * (the pod's identity and the `nodePublishSecretRef` Secret's content) in
 * NodePublishVolume, so it never calls the Kubernetes API. Only the
 * provisioner does.
 *
 * The plugin container is privileged and runs as root: it bind-mounts into
 * the kubelet's pod directories with Bidirectional mount propagation, which
 * Kubernetes allows for privileged containers only. The upstream sidecars are
 * not privileged and drop every capability.
 *
 * @example
 * const driver = new OrasCsiDriver(chart, 'Csi', { namespace: 'oras-csi' });
 * const registry = OrasRegistry.fromHost('oras.default.svc:5000', { plainHttp: true });
 * // An inline volume in a pod.
 * const pod = new kplus.Pod(chart, 'Reader', {
 *   containers: [{ image: 'docker.io/library/busybox:1.36.1', command: ['ls', '-R', '/models'] }],
 * });
 * pod.containers[0].mount('/models', driver.volume(chart, 'Models', registry.artifact('models/demo', 'v1')), { readOnly: true });
 * // A StorageClass whose claims name their artifacts, and one claim of it.
 * const artifacts = driver.addStorageClass('Artifacts', { name: 'oras-artifacts', registry });
 * artifacts.claim(chart, 'ModelsClaim', { name: 'models', namespace: 'default', artifact: registry.artifact('models/demo', 'v1') });
 */
export class OrasCsiDriver extends Construct {
  /** Name of the CSI driver (the `driver` of its volumes). */
  public readonly name: string;
  /** Namespace of the DaemonSet and its ServiceAccount. */
  public readonly namespace: string;
  /** Name of the node DaemonSet and its ServiceAccount. */
  public readonly workloadName: string;
  /**
   * The node DaemonSet, for changes through `addJsonPatch` (for example a nodeSelector), which apply to
   * the Kubernetes JSON it renders, as written.
   */
  public readonly daemonSet: kplus.k8s.KubeDaemonSet;
  private readonly props: OrasCsiDriverProps;
  private provisionerDeployment?: kplus.k8s.KubeDeployment;
  /** The ClusterRole's rules: StorageClasses with credentials add `get` on their Secret. */
  private provisionerRules: kplus.k8s.PolicyRule[] = [];

  constructor(scope: Construct, id: string, props: OrasCsiDriverProps = {}) {
    super(scope, id);
    this.props = props;
    const where = `OrasCsiDriver "${this.node.path}"`;
    this.name = props.name ?? 'csi.oras.land';
    if (!DRIVER_NAME.test(this.name)) {
      throw new Error(`${where}: name "${this.name}" must be a DNS subdomain of at most 63 characters `
        + '(lowercase letters, digits, "-" and ".", starting and ending with a letter or digit), such as "csi.oras.land".');
    }
    this.namespace = props.namespace ?? Chart.of(this).namespace ?? 'oras-csi';
    this.workloadName = `${this.name.replace(/\./g, '-').slice(0, 57).replace(/-+$/, '')}-node`;

    const kubeletDir = absolutePath(props.kubeletDir ?? '/var/lib/kubelet', 'kubeletDir', where);
    const cacheDir = absolutePath(props.cacheDir ?? '/var/lib/oras-csi', 'cacheDir', where);
    if (within(cacheDir, kubeletDir) || within(kubeletDir, cacheDir)) {
      throw new Error(`${where}: cacheDir "${cacheDir}" and kubeletDir "${kubeletDir}" overlap. The kubelet owns its directory and cleans it up; `
        + 'choose a cache directory outside it, such as "/var/lib/oras-csi".');
    }
    const pluginDir = `${kubeletDir}/plugins/${this.name}`;
    const kubeletRegistrationPath = `${pluginDir}/csi.sock`;
    if (kubeletRegistrationPath.length > MAX_SOCKET_PATH) {
      throw new Error(`${where}: the kubelet would reach the plugin at "${kubeletRegistrationPath}" (${kubeletRegistrationPath.length} characters), `
        + `but a unix socket path has at most ${MAX_SOCKET_PATH}. Choose a shorter name or kubeletDir.`);
    }

    const metricsPort = props.metricsPort ?? 9809;
    if (!Number.isInteger(metricsPort) || metricsPort < 1 || metricsPort > 65535) {
      throw new Error(`${where}: metricsPort must be a whole number from 1 to 65535, not ${metricsPort}.`);
    }
    const upstreamSidecars = props.upstreamSidecars ?? false;
    if (metricsPort === HEALTH_PORT) {
      throw new Error(`${where}: metricsPort ${metricsPort} is the port of /healthz (served by ${upstreamSidecars ? 'the livenessprobe sidecar' : 'the plugin'}); `
        + 'choose another, such as 9809.');
    }
    const cacheMaxBytes = (props.cacheMaxSize ?? Size.gibibytes(20)).toKibibytes({ rounding: SizeRoundingBehavior.FLOOR }) * 1024;
    if (!(cacheMaxBytes > 0) || !Number.isSafeInteger(cacheMaxBytes)) {
      throw new Error(`${where}: cacheMaxSize must be at least 1 KiB and less than 8 PiB, not ${cacheMaxBytes} bytes.`);
    }
    const image = (props.runtimeImage ?? OrasRuntimeImage.default()).image;

    const labels = { 'app.kubernetes.io/name': 'oras-csi-driver', 'app.kubernetes.io/instance': this.name, 'app.kubernetes.io/part-of': 'cdk8s-oras' };
    const metadata = { name: this.workloadName, namespace: this.namespace, labels };

    clusterScoped(patchable(new kplus.k8s.KubeCsiDriver(this, 'CSIDriver', {
      metadata: { name: this.name, labels },
      spec: {
        attachRequired: false,
        podInfoOnMount: true,
        volumeLifecycleModes: ['Persistent', 'Ephemeral'],
        fsGroupPolicy: 'None',
        requiresRepublish: false,
      },
    })));

    // No RBAC: the kubelet hands the plugin the pod's identity and the mount's secret.
    patchable(new kplus.k8s.KubeServiceAccount(this, 'ServiceAccount', { metadata, automountServiceAccountToken: false }));

    const pluginArgs = [
      'csi',
      '--endpoint', `unix://${SOCKET}`,
      '--node-id', '$(NODE_NAME)',
      '--cache-dir', cacheDir,
      '--driver-name', this.name,
      '--metrics-port', String(metricsPort),
      '--cache-max-size', String(cacheMaxBytes),
      '--kubelet-dir', kubeletDir,
      ...(props.caBundle ? ['--ca-file', `${CA_DIR}/ca.crt`] : []),
      ...(props.shareCacheAcrossNamespaces ? ['--share-cache-across-namespaces'] : []),
      ...(upstreamSidecars ? [] : [
        '--registration-dir', REGISTRATION_DIR,
        '--kubelet-registration-path', kubeletRegistrationPath,
        '--health-port', String(HEALTH_PORT),
      ]),
    ];
    // The plugin creates its socket as root, and connecting needs write permission on it.
    const sidecarSecurity = hardenedSecurityContext({ user: 0, nonRoot: false });
    const sidecarResources = kubeResources(undefined, SIDECAR_RESOURCES);
    // The sidecars only connect to the socket, which a read-only mount allows.
    const socketMount = { name: 'plugin-dir', mountPath: SOCKET_DIR, readOnly: true };
    const sidecars: kplus.k8s.Container[] = [
      {
        name: 'node-driver-registrar',
        image: NODE_DRIVER_REGISTRAR_IMAGE,
        imagePullPolicy: 'IfNotPresent',
        args: [`--csi-address=${SOCKET}`, `--kubelet-registration-path=${kubeletRegistrationPath}`],
        resources: sidecarResources,
        securityContext: sidecarSecurity,
        volumeMounts: [socketMount, { name: 'registration-dir', mountPath: REGISTRATION_DIR }],
      },
      {
        name: 'liveness-probe',
        image: LIVENESS_PROBE_IMAGE,
        imagePullPolicy: 'IfNotPresent',
        args: [`--csi-address=${SOCKET}`, `--health-port=${HEALTH_PORT}`],
        resources: sidecarResources,
        securityContext: sidecarSecurity,
        volumeMounts: [socketMount],
      },
    ];

    this.daemonSet = patchable(new kplus.k8s.KubeDaemonSet(this, 'Resource', {
      metadata,
      spec: {
        selector: { matchLabels: labels },
        updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: kplus.k8s.IntOrString.fromNumber(1) } },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: this.workloadName,
            automountServiceAccountToken: false,
            priorityClassName: 'system-node-critical',
            // Every node that may run a pod with an ORAS volume needs the plugin, tainted or not.
            tolerations: [{ operator: 'Exists' }],
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            // Applies to unprivileged containers (the upstream sidecars); a privileged one runs unconfined regardless.
            securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: 'oras-csi',
                image,
                imagePullPolicy: 'IfNotPresent',
                args: pluginArgs,
                env: [{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
                ports: [
                  // Served by the plugin, or by the livenessprobe sidecar (containers share the pod's network).
                  { name: 'healthz', containerPort: HEALTH_PORT, protocol: 'TCP' },
                  { name: 'metrics', containerPort: metricsPort, protocol: 'TCP' },
                ],
                livenessProbe: {
                  httpGet: { path: '/healthz', port: kplus.k8s.IntOrString.fromString('healthz') },
                  initialDelaySeconds: 10,
                  periodSeconds: 10,
                  timeoutSeconds: 3,
                  failureThreshold: 5,
                },
                resources: kubeResources(props.resources, PLUGIN_RESOURCES),
                securityContext: {
                  // Mount propagation Bidirectional (the bind mounts must reach the kubelet's view of the
                  // pod directories) is only allowed in privileged containers. Privileged implies privilege
                  // escalation; the API server rejects allowPrivilegeEscalation: false next to it.
                  privileged: true,
                  allowPrivilegeEscalation: true,
                  runAsUser: 0,
                  runAsNonRoot: false,
                  readOnlyRootFilesystem: true,
                },
                volumeMounts: [
                  { name: 'plugin-dir', mountPath: SOCKET_DIR },
                  ...(upstreamSidecars ? [] : [{ name: 'registration-dir', mountPath: REGISTRATION_DIR }]),
                  { name: 'pods-dir', mountPath: `${kubeletDir}/pods`, mountPropagation: 'Bidirectional' },
                  { name: 'cache-dir', mountPath: cacheDir },
                  { name: 'tmp', mountPath: '/tmp' },
                  ...(props.caBundle ? [{ name: 'ca-bundle', mountPath: CA_DIR, readOnly: true }] : []),
                ],
              },
              ...(upstreamSidecars ? sidecars : []),
            ],
            volumes: [
              { name: 'plugin-dir', hostPath: { path: pluginDir, type: 'DirectoryOrCreate' } },
              { name: 'registration-dir', hostPath: { path: `${kubeletDir}/plugins_registry`, type: 'Directory' } },
              { name: 'pods-dir', hostPath: { path: `${kubeletDir}/pods`, type: 'Directory' } },
              { name: 'cache-dir', hostPath: { path: cacheDir, type: 'DirectoryOrCreate' } },
              { name: 'tmp', emptyDir: {} },
              ...(props.caBundle ? [{ name: 'ca-bundle', ...caVolumeSource(props.caBundle) }] : []),
            ],
          },
        },
      },
    }));
    if (props.provisioner) this.ensureProvisioner();
  }

  /**
   * The options of the inline volume `volume()` would return, as plain
   * data: for `Volume.fromCsi` of another cdk8s-plus version (such as
   * cdk8s-plus-33, which `cdk8s init` uses), whose Volume this library's
   * cdk8s-plus-27 cannot make.
   *
   * @param artifact the artifact to mount
   * @throws if an option is invalid or the artifact's host is a single label
   */
  public volumeConfig(artifact: OrasArtifact, options: OrasCsiVolumeOptions = {}): OrasCsiVolumeConfig {
    return this.inlineVolume(`OrasCsiDriver "${this.node.path}": volumeConfig of "${artifact.reference}"`, artifact, options);
  }

  private inlineVolume(where: string, artifact: OrasArtifact, options: OrasCsiVolumeOptions): OrasCsiVolumeConfig {
    const attributes = this._attributes(where, options, artifact);
    if (options.name !== undefined && !DNS_LABEL.test(options.name)) {
      throw new Error(`${where}: name "${options.name}" must be a DNS label (lowercase letters, digits and "-", at most 63 characters).`);
    }
    const credentials = options.credentials ?? artifact.registry?.credentials;
    return {
      driver: this.name,
      readOnly: true,
      attributes,
      ...(options.name !== undefined ? { name: options.name } : {}),
      ...(credentials ? { nodePublishSecretName: credentials.name } : {}),
    };
  }

  /**
   * The provisioner Deployment (external-provisioner and the plugin in
   * controller mode), for changes through `addJsonPatch`; undefined until
   * the driver has a StorageClass or `provisioner` is true.
   */
  public get provisioner(): kplus.k8s.KubeDeployment | undefined {
    return this.provisionerDeployment;
  }

  /**
   * A StorageClass of this driver: each PersistentVolumeClaim of it becomes a
   * read-only volume of an artifact, which the provisioner checks exists when
   * it creates the PersistentVolume. Claims must ask for `ReadOnlyMany`:
   * writer modes are refused, with an event on the claim. Adds the
   * provisioner Deployment if the driver has none yet.
   *
   * @param id the id of the StorageClass construct, under this driver
   * @throws if an option is invalid, or the driver was made with `provisioner: false`
   */
  public addStorageClass(id: string, options: OrasStorageClassOptions = {}): OrasStorageClass {
    if (this.props.provisioner === false) {
      throw new Error(`OrasCsiDriver "${this.node.path}": addStorageClass("${id}") needs the provisioner Deployment, but the driver has provisioner: false. `
        + 'Remove provisioner: false, or use persistentVolume() for a static PersistentVolume, which needs no provisioner.');
    }
    this.ensureProvisioner();
    return new OrasStorageClass(this, id, { ...options, driver: this });
  }

  /**
   * A static PersistentVolume of `artifact` and a claim bound to it, in the
   * namespace of the pods that mount it: no provisioner takes part. Mount the
   * claim read-only, for example with `volume()` of the result.
   *
   * @param scope the scope of the OrasPersistentVolume construct
   * @param id the id of the OrasPersistentVolume construct
   * @param artifact the artifact to mount
   */
  public persistentVolume(scope: Construct, id: string, artifact: OrasArtifact, options: OrasPersistentVolumeOptions = {}): OrasPersistentVolume {
    return new OrasPersistentVolume(scope, id, { ...options, driver: this, artifact });
  }

  /**
   * Lets the provisioner read the Secret `name` in any namespace: the
   * registry credentials a StorageClass names for CreateVolume.
   * @internal
   */
  public _allowProvisionerSecret(name: string): void {
    const rule = this.provisionerRules.find((r) => r.resources?.includes('secrets'));
    if (!rule) this.provisionerRules.push({ apiGroups: [''], resources: ['secrets'], verbs: ['get'], resourceNames: [name] });
    else if (!rule.resourceNames?.includes(name)) (rule.resourceNames as string[]).push(name);
  }

  /** Writes the provisioner Deployment and its RBAC, once. */
  private ensureProvisioner(): void {
    if (this.provisionerDeployment) return;
    const name = `${this.name.replace(/\./g, '-').slice(0, 50).replace(/-+$/, '')}-provisioner`;
    const labels = { 'app.kubernetes.io/name': 'oras-csi-provisioner', 'app.kubernetes.io/instance': this.name, 'app.kubernetes.io/part-of': 'cdk8s-oras' };
    const metadata = { name, namespace: this.namespace, labels };
    const account = patchable(new kplus.k8s.KubeServiceAccount(this, 'ProvisionerServiceAccount', { metadata }));
    const subjects = [{ kind: 'ServiceAccount', name: account.name, namespace: this.namespace }];
    // What external-provisioner v5.3.0 uses for a driver without attach, topology, capacity or snapshots
    // (its deploy/kubernetes/rbac.yaml, less those); the plugin reads claims' annotations with the same get.
    clusterScoped(patchable(new kplus.k8s.KubeClusterRole(this, 'ProvisionerClusterRole', {
      metadata: { name, labels },
      rules: this.provisionerRules = [
        { apiGroups: [''], resources: ['persistentvolumes'], verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'] },
        { apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['get', 'list', 'watch', 'update'] },
        { apiGroups: ['storage.k8s.io'], resources: ['storageclasses'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['events'], verbs: ['list', 'watch', 'create', 'update', 'patch'] },
      ],
    })));
    clusterScoped(patchable(new kplus.k8s.KubeClusterRoleBinding(this, 'ProvisionerClusterRoleBinding', {
      metadata: { name, labels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects,
    })));
    patchable(new kplus.k8s.KubeRole(this, 'ProvisionerRole', {
      metadata,
      rules: [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'watch', 'list', 'delete', 'update', 'create'] }],
    }));
    patchable(new kplus.k8s.KubeRoleBinding(this, 'ProvisionerRoleBinding', {
      metadata,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects,
    }));

    const security = hardenedSecurityContext({ user: PROVISIONER_UID, group: PROVISIONER_UID });
    const socketMount = { name: 'socket-dir', mountPath: SOCKET_DIR };
    const caBundle = this.props.caBundle;
    this.provisionerDeployment = patchable(new kplus.k8s.KubeDeployment(this, 'Provisioner', {
      metadata,
      spec: {
        replicas: 1,
        // One leader provisions (--leader-election); a new pod takes over when the old one is gone.
        strategy: { type: 'Recreate' },
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: account.name,
            priorityClassName: 'system-cluster-critical',
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            securityContext: { seccompProfile: { type: 'RuntimeDefault' }, fsGroup: PROVISIONER_UID },
            containers: [
              {
                name: 'csi-provisioner',
                image: CSI_PROVISIONER_IMAGE,
                imagePullPolicy: 'IfNotPresent',
                args: [
                  `--csi-address=${SOCKET}`,
                  // The claim's name, so that the plugin can read its oras.artifact.reference annotation.
                  '--extra-create-metadata',
                  '--leader-election',
                  `--leader-election-namespace=${this.namespace}`,
                  // CreateVolume asks the registry for the artifact, with retries.
                  '--timeout=60s',
                ],
                resources: kubeResources(undefined, PROVISIONER_RESOURCES),
                securityContext: security,
                volumeMounts: [socketMount],
              },
              {
                name: 'oras-csi-controller',
                image: (this.props.runtimeImage ?? OrasRuntimeImage.default()).image,
                imagePullPolicy: 'IfNotPresent',
                args: [
                  'csi', '--endpoint', `unix://${SOCKET}`, '--controller', '--driver-name', this.name, '--health-port', String(HEALTH_PORT),
                  ...(caBundle ? ['--ca-file', `${CA_DIR}/ca.crt`] : []),
                ],
                ports: [{ name: 'healthz', containerPort: HEALTH_PORT, protocol: 'TCP' }],
                livenessProbe: {
                  httpGet: { path: '/healthz', port: kplus.k8s.IntOrString.fromString('healthz') },
                  initialDelaySeconds: 10,
                  periodSeconds: 10,
                  timeoutSeconds: 3,
                  failureThreshold: 5,
                },
                resources: kubeResources(undefined, CONTROLLER_RESOURCES),
                securityContext: security,
                volumeMounts: [socketMount, ...(caBundle ? [{ name: 'ca-bundle', mountPath: CA_DIR, readOnly: true }] : [])],
              },
            ],
            volumes: [
              { name: 'socket-dir', emptyDir: {} },
              ...(caBundle ? [{ name: 'ca-bundle', ...caVolumeSource(caBundle) }] : []),
            ],
          },
        },
      },
    }));
  }

  /**
   * A read-only CSI inline volume of this driver that holds `artifact`, for a
   * pod in any namespace: mount it with `readOnly: true`.
   *
   * The attributes are `oras.artifact.reference`, `oras.options.pullpolicy`,
   * and, when set, `oras.artifact.layers.mediatype` and
   * `oras.options.concurrency`. `oras.options.plainhttp` and
   * `oras.options.insecure` come from the artifact's registry when it is known.
   *
   * The node plugin resolves the registry host from its own namespace, so the
   * host must be a full name (such as `oras.default.svc:5000`): a one-label
   * host (`oras:5000`, `localhost`) is refused.
   *
   * @param scope the scope of the Volume construct
   * @param id the id of the Volume construct
   * @param artifact the artifact to mount
   * @throws if an option is invalid or the artifact's host is a single label
   */
  public volume(scope: Construct, id: string, artifact: OrasArtifact, options: OrasCsiVolumeOptions = {}): kplus.Volume {
    const where = `OrasCsiDriver "${this.node.path}": volume "${id}"`;
    const config = this.inlineVolume(where, artifact, options);
    const volume = kplus.Volume.fromCsi(scope, id, config.driver, config);
    if (config.nodePublishSecretName) setNodePublishSecretRef(volume, config.nodePublishSecretName, where);
    return volume;
  }

  /**
   * The volume attributes of `artifact` (or, without one, of `registry`'s
   * artifacts) with `options`: what inline volumes, StorageClass parameters
   * and static PersistentVolumes carry.
   * @internal
   */
  public _attributes(where: string, options: OrasCsiAttributeOptions, artifact?: OrasArtifact, registry?: IOrasRegistry): Record<string, string> {
    const attributes: Record<string, string> = {};
    if (artifact) {
      const hostName = artifact.host.startsWith('[') ? artifact.host : artifact.host.replace(/:\d+$/, '');
      if (!hostName.startsWith('[') && !hostName.includes('.')) {
        throw new Error(`${where}: the registry host "${artifact.host}" of "${artifact.reference}" is a single label, which the node plugin would resolve `
          + `in its own namespace ("${this.namespace}"), not the pod's. Give the registry's full name, such as "<service>.<namespace>.svc:5000" `
          + '(an OrasRegistry with a namespace has one).');
      }
      attributes[CSI_ATTRIBUTE.REFERENCE] = artifact.reference;
    }
    attributes[CSI_ATTRIBUTE.PULL_POLICY] = options.pullPolicy ?? OrasPullPolicy.IF_NOT_PRESENT;
    if (options.mediaTypes !== undefined) {
      if (options.mediaTypes.length === 0) throw new Error(`${where}: mediaTypes is empty, which would keep no layer. Omit it to keep every layer.`);
      for (const mediaType of options.mediaTypes) {
        if (!MEDIA_TYPE.test(mediaType)) {
          throw new Error(`${where}: media type "${mediaType}" must be "type/subtype" without parameters or commas, such as "application/vnd.oci.image.layer.v1.tar".`);
        }
      }
      attributes[CSI_ATTRIBUTE.MEDIA_TYPES] = options.mediaTypes.join(',');
    }
    if (options.concurrency !== undefined) {
      if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
        throw new Error(`${where}: concurrency must be a whole number of at least 1, not ${options.concurrency}.`);
      }
      attributes[CSI_ATTRIBUTE.CONCURRENCY] = String(options.concurrency);
    }
    const source = artifact?.registry ?? registry;
    if (source) {
      attributes[CSI_ATTRIBUTE.PLAIN_HTTP] = String(source.plainHttp);
      attributes[CSI_ATTRIBUTE.INSECURE] = String(source.insecure);
    }
    return attributes;
  }
}

/**
 * Sets `csi.nodePublishSecretRef` of a Volume made by `Volume.fromCsi`.
 *
 * cdk8s-plus-27 has no option for it, and its Volume cannot be subclassed (the
 * constructor is private). The Volume keeps its Kubernetes source in the
 * field `config`, which `_toKube()` spreads into every pod spec that uses it
 * (Pod, Deployment, Job, …), and the generated Kubernetes types keep
 * `nodePublishSecretRef`. This relies on that layout, so it checks the
 * rendered volume and throws rather than ever drop the credentials silently.
 */
function setNodePublishSecretRef(volume: kplus.Volume, secretName: string, where: string): void {
  const internals = volume as unknown as {
    config?: { csi?: Record<string, unknown> };
    _toKube?: () => { csi?: { nodePublishSecretRef?: { name?: string } } };
  };
  const csi = internals.config?.csi;
  if (csi !== undefined && typeof csi === 'object') csi.nodePublishSecretRef = { name: secretName };
  if (typeof internals._toKube !== 'function' || internals._toKube().csi?.nodePublishSecretRef?.name !== secretName) {
    throw new Error(`${where}: this version of cdk8s-plus-27 does not let cdk8s-oras set the volume's nodePublishSecretRef, so the credentials `
      + `("${secretName}") cannot reach the node plugin. Use the cdk8s-plus-27 version cdk8s-oras was built with, or add `
      + '"csi.nodePublishSecretRef" to the pod\'s volume with ApiObject.of(pod).addJsonPatch and leave "credentials" unset.');
  }
}

/** Throws unless `path` is an absolute, normalized host path other than "/"; returns it. */
function absolutePath(path: string, prop: string, where: string): string {
  const segments = path.split('/').slice(1);
  if (!path.startsWith('/') || path === '/' || segments.some((s) => s === '' || s === '.' || s === '..') || path.includes('\0')) {
    throw new Error(`${where}: ${prop} "${path}" must be an absolute host path without "." or ".." segments, empty segments or a trailing "/", `
      + 'and not "/" itself (for example "/var/lib/oras-csi").');
  }
  return path;
}

/** Whether `path` is `dir` or lies inside it. */
function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}
