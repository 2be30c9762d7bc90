import { Chart, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { OrasArtifact } from './artifact';
import { clusterScoped } from './cluster-scoped';
import { CSI_ATTRIBUTE } from './csi-attributes';
import type { OrasCsiAttributeOptions, OrasCsiDriver, OrasPullPolicy } from './csi-driver';
import { IOrasRegistry } from './registry';
import { quantity } from './resources';
import { patchable } from './typed';

/** What happens to a provisioned PersistentVolume when its claim is deleted. */
export enum OrasReclaimPolicy {
  /** Delete the PersistentVolume (DeleteVolume). The artifact stays in its registry. */
  DELETE = 'Delete',
  /** Keep the PersistentVolume, Released, until an administrator deletes it. */
  RETAIN = 'Retain',
}

/** When a claim of the StorageClass gets its PersistentVolume. */
export enum OrasVolumeBindingMode {
  /** As soon as the claim exists: a claim that names a missing artifact fails at once, with an event. */
  IMMEDIATE = 'Immediate',
  /** When the first pod that uses the claim is scheduled. */
  WAIT_FOR_FIRST_CONSUMER = 'WaitForFirstConsumer',
}

/**
 * Options of `OrasCsiDriver.addStorageClass`.
 */
export interface OrasStorageClassOptions extends OrasCsiAttributeOptions {
  /**
   * Name of the StorageClass, which claims name in `storageClassName`.
   *
   * @default - a name cdk8s derives from the construct path
   */
  readonly name?: string;

  /**
   * The one artifact every claim of this class mounts. Without it, each
   * claim names its own in the annotation `oras.artifact.reference` (and may
   * set `oras.artifact.layers.mediatype` and `oras.options.pullpolicy` too,
   * where this class leaves them open; `claim()` writes them).
   *
   * @default - each claim names its artifact
   */
  readonly artifact?: OrasArtifact;

  /**
   * The registry of the claims' artifacts, when `artifact` is not set: how to
   * reach it (plain HTTP, TLS verification) and its default credentials.
   *
   * @default - the artifact's registry; without an artifact, HTTPS with certificate verification and no credentials
   */
  readonly registry?: IOrasRegistry;

  /**
   * Secret of type `kubernetes.io/dockerconfigjson` with the registry
   * credentials. A Secret of this name must exist in the namespace of each
   * claim: the provisioner reads it to check the artifact (and may read
   * Secrets of this name only), and the kubelet hands it to the node plugin
   * with each mount.
   *
   * @default - the credentials of the artifact's registry (or `registry`'s), if it has any; else anonymous
   */
  readonly credentials?: kplus.ISecret;

  /**
   * What happens to a PersistentVolume when its claim is deleted.
   *
   * @default OrasReclaimPolicy.DELETE
   */
  readonly reclaimPolicy?: OrasReclaimPolicy;

  /**
   * When a claim gets its PersistentVolume.
   *
   * @default OrasVolumeBindingMode.IMMEDIATE
   */
  readonly volumeBindingMode?: OrasVolumeBindingMode;

  /**
   * Make this the cluster's default StorageClass (the annotation
   * `storageclass.kubernetes.io/is-default-class`), which claims without a
   * `storageClassName` get. Rarely wanted: such claims usually expect
   * writable storage.
   *
   * @default false
   */
  readonly isDefault?: boolean;
}

/**
 * Properties of an `OrasStorageClass`.
 */
export interface OrasStorageClassProps extends OrasStorageClassOptions {
  /** The driver whose provisioner serves the class. */
  readonly driver: OrasCsiDriver;
}

/**
 * Options of `OrasStorageClass.claim`.
 */
export interface OrasClaimOptions {
  /**
   * The artifact the claim mounts. Required when the StorageClass has none;
   * refused when it has one (the class decides).
   *
   * @default - the StorageClass's artifact
   */
  readonly artifact?: OrasArtifact;

  /**
   * Name of the claim.
   *
   * @default - a name cdk8s derives from the construct path
   */
  readonly name?: string;

  /**
   * Namespace of the claim: the namespace of the pods that mount it.
   *
   * @default - the chart's namespace
   */
  readonly namespace?: string;

  /**
   * The capacity the claim requests. An artifact volume shows the artifact,
   * whatever its size; this is the PersistentVolume's nominal capacity.
   *
   * @default Size.gibibytes(1)
   */
  readonly storage?: Size;

  /**
   * When the node pulls the artifact rather than use its cache (the
   * annotation `oras.options.pullpolicy`); only where the StorageClass sets none.
   *
   * @default - the StorageClass's
   */
  readonly pullPolicy?: OrasPullPolicy;
}

/**
 * A StorageClass of an `OrasCsiDriver`: its PersistentVolumeClaims become
 * read-only volumes of artifacts, provisioned by the driver's provisioner
 * (external-provisioner and the plugin's Controller service). The class's
 * parameters are the volume attributes of inline volumes
 * (`oras.artifact.reference`, `oras.options.*`); without an artifact, each
 * claim names its own in an annotation of the same key.
 */
export class OrasStorageClass extends Construct {
  /** Name of the StorageClass. */
  public readonly name: string;
  /** The StorageClass object (id `Resource`), for changes through `addJsonPatch`. */
  public readonly storageClass: kplus.k8s.KubeStorageClass;
  private readonly driver: OrasCsiDriver;
  private readonly artifact?: OrasArtifact;
  private readonly fixedPullPolicy: boolean;

  constructor(scope: Construct, id: string, props: OrasStorageClassProps) {
    super(scope, id);
    const where = `OrasStorageClass "${this.node.path}"`;
    const driver = props.driver;
    this.driver = driver;
    this.artifact = props.artifact;
    this.fixedPullPolicy = props.pullPolicy !== undefined || props.artifact !== undefined;
    if (props.artifact && props.registry) {
      throw new Error(`${where}: give artifact or registry, not both: the artifact's registry is the one its claims use.`);
    }
    const parameters = driver._attributes(where, props, props.artifact, props.registry);
    // Without an artifact and an explicit policy, each claim may choose its own pull policy.
    if (!this.fixedPullPolicy) delete parameters[CSI_ATTRIBUTE.PULL_POLICY];
    const credentials = props.credentials ?? props.artifact?.registry?.credentials ?? props.registry?.credentials;
    if (credentials) {
      // Looked up in the claim's namespace, like an inline volume's Secret in the pod's.
      Object.assign(parameters, {
        'csi.storage.k8s.io/provisioner-secret-name': credentials.name,
        'csi.storage.k8s.io/provisioner-secret-namespace': '${pvc.namespace}',
        'csi.storage.k8s.io/node-publish-secret-name': credentials.name,
        'csi.storage.k8s.io/node-publish-secret-namespace': '${pvc.namespace}',
      });
      driver._allowProvisionerSecret(credentials.name);
    }
    this.storageClass = clusterScoped(patchable(new kplus.k8s.KubeStorageClass(this, 'Resource', {
      metadata: {
        ...(props.name !== undefined ? { name: props.name } : {}),
        labels: { 'app.kubernetes.io/part-of': 'cdk8s-oras' },
        ...(props.isDefault ? { annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } } : {}),
      },
      provisioner: driver.name,
      parameters,
      reclaimPolicy: props.reclaimPolicy ?? OrasReclaimPolicy.DELETE,
      volumeBindingMode: props.volumeBindingMode ?? OrasVolumeBindingMode.IMMEDIATE,
      allowVolumeExpansion: false,
    })));
    this.name = this.storageClass.name;
  }

  /**
   * A PersistentVolumeClaim of this class (ReadOnlyMany), annotated with its
   * artifact when the class has none. Mount it read-only, for example with
   * `kplus.Volume.fromPersistentVolumeClaim`.
   *
   * @param scope the scope of the claim
   * @param id the id of the claim
   * @throws if the artifact is missing, or given where the class has one
   */
  public claim(scope: Construct, id: string, options: OrasClaimOptions = {}): kplus.k8s.KubePersistentVolumeClaim {
    const where = `OrasStorageClass "${this.node.path}": claim "${id}"`;
    if (this.artifact && options.artifact && options.artifact.reference !== this.artifact.reference) {
      throw new Error(`${where}: the StorageClass mounts "${this.artifact.reference}" in every claim, so the claim cannot name "${options.artifact.reference}". `
        + 'Use a StorageClass without an artifact.');
    }
    if (!this.artifact && !options.artifact) {
      throw new Error(`${where}: the StorageClass names no artifact, so the claim must (artifact).`);
    }
    if (options.pullPolicy !== undefined && this.fixedPullPolicy) {
      throw new Error(`${where}: the StorageClass sets the pull policy for its claims; leave pullPolicy out, or use a StorageClass without one.`);
    }
    const annotations: Record<string, string> = {};
    if (!this.artifact) {
      // The same checks as the class's own artifact (a full registry host name).
      this.driver._attributes(where, {}, options.artifact);
      annotations[CSI_ATTRIBUTE.REFERENCE] = options.artifact!.reference;
      if (options.pullPolicy !== undefined) annotations[CSI_ATTRIBUTE.PULL_POLICY] = options.pullPolicy;
    }
    return patchable(new kplus.k8s.KubePersistentVolumeClaim(scope, id, {
      metadata: {
        ...(options.name !== undefined ? { name: options.name } : {}),
        namespace: options.namespace ?? Chart.of(scope).namespace,
        ...(Object.keys(annotations).length ? { annotations } : {}),
      },
      spec: {
        accessModes: ['ReadOnlyMany'],
        storageClassName: this.name,
        resources: { requests: { storage: kplus.k8s.Quantity.fromString(quantity(options.storage ?? Size.gibibytes(1))) } },
      },
    }));
  }
}
