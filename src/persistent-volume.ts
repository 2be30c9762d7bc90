import { Chart, JsonPatch, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { OrasArtifact } from './artifact';
import { clusterScoped } from './cluster-scoped';
import type { OrasCsiAttributeOptions, OrasCsiDriver } from './csi-driver';
import { quantity } from './resources';
import { patchable } from './typed';

/**
 * Options of `OrasCsiDriver.persistentVolume`.
 */
export interface OrasPersistentVolumeOptions extends OrasCsiAttributeOptions {
  /**
   * Name of the PersistentVolume (cluster-wide).
   *
   * @default - a name cdk8s derives from the construct path
   */
  readonly name?: string;

  /**
   * Name of the claim bound to the PersistentVolume, which pods reference.
   *
   * @default - a name cdk8s derives from the construct path
   */
  readonly claimName?: string;

  /**
   * Namespace of the claim: the namespace of the pods that mount it.
   *
   * @default - the chart's namespace
   */
  readonly namespace?: string;

  /**
   * The nominal capacity of the PersistentVolume and its claim (both
   * require one). The volume shows the artifact, whatever its size.
   *
   * @default Size.gibibytes(1)
   */
  readonly storage?: Size;

  /**
   * Secret of type `kubernetes.io/dockerconfigjson` with the registry
   * credentials, in the claim's namespace: the kubelet hands it to the node
   * plugin with each mount (the volume's `nodePublishSecretRef`).
   *
   * @default - the credentials of the artifact's registry, if it has any; else anonymous
   */
  readonly credentials?: kplus.ISecret;
}

/**
 * Properties of an `OrasPersistentVolume`.
 */
export interface OrasPersistentVolumeProps extends OrasPersistentVolumeOptions {
  /** The driver that mounts the volume. */
  readonly driver: OrasCsiDriver;
  /** The artifact the volume shows. */
  readonly artifact: OrasArtifact;
}

/**
 * A static PersistentVolume of an artifact (a `volumeHandle` and the volume
 * attributes of inline volumes) and a claim bound to it alone, both
 * ReadOnlyMany: no provisioner takes part. Pods reference the claim by name,
 * so a Helm chart or a Deployment written by hand can mount the artifact.
 * The PersistentVolume is retained when the claim is deleted; the artifact
 * stays in its registry either way.
 */
export class OrasPersistentVolume extends Construct {
  /** The PersistentVolume (id `Resource`), for changes through `addJsonPatch`. */
  public readonly persistentVolume: kplus.k8s.KubePersistentVolume;
  /** The claim bound to it. */
  public readonly claim: kplus.k8s.KubePersistentVolumeClaim;
  /** Name of the claim, which pods reference. */
  public readonly claimName: string;
  /** Namespace of the claim. */
  public readonly namespace: string;

  constructor(scope: Construct, id: string, props: OrasPersistentVolumeProps) {
    super(scope, id);
    const where = `OrasPersistentVolume "${this.node.path}"`;
    const { driver, artifact } = props;
    const attributes = driver._attributes(where, props, artifact);
    const namespace = props.namespace ?? Chart.of(this).namespace;
    if (!namespace) {
      throw new Error(`${where}: the claim needs a namespace (the pods'): set namespace, or give the chart one.`);
    }
    this.namespace = namespace;
    const storage = kplus.k8s.Quantity.fromString(quantity(props.storage ?? Size.gibibytes(1)));
    const credentials = props.credentials ?? artifact.registry?.credentials;
    const labels = { 'app.kubernetes.io/part-of': 'cdk8s-oras' };

    this.persistentVolume = clusterScoped(patchable(new kplus.k8s.KubePersistentVolume(this, 'Resource', {
      metadata: { ...(props.name !== undefined ? { name: props.name } : {}), labels },
      spec: {
        capacity: { storage },
        accessModes: ['ReadOnlyMany'],
        // Nothing provisioned it, so nothing could delete it.
        persistentVolumeReclaimPolicy: 'Retain',
        // No class: neither a default StorageClass nor a provisioner takes it.
        storageClassName: '',
        csi: {
          driver: driver.name,
          // Unique among the driver's volumes: the construct's address.
          volumeHandle: `oras-static-${this.node.addr}`,
          readOnly: true,
          volumeAttributes: attributes,
          ...(credentials ? { nodePublishSecretRef: { name: credentials.name, namespace } } : {}),
        },
      },
    })));
    this.claim = patchable(new kplus.k8s.KubePersistentVolumeClaim(this, 'Claim', {
      metadata: { ...(props.claimName !== undefined ? { name: props.claimName } : {}), namespace, labels },
      spec: {
        accessModes: ['ReadOnlyMany'],
        storageClassName: '',
        volumeName: this.persistentVolume.name,
        resources: { requests: { storage } },
      },
    }));
    this.claimName = this.claim.name;
    // Bound both ways: no other claim can take the volume.
    this.persistentVolume.addJsonPatch(JsonPatch.add('/spec/claimRef', { namespace, name: this.claimName }));
  }

  /**
   * A read-only pod volume of the claim, for a cdk8s-plus-27 workload.
   *
   * @param scope the scope of the Volume construct
   * @param id the id of the Volume construct
   */
  public volume(scope: Construct, id: string): kplus.Volume {
    const claim = kplus.PersistentVolumeClaim.fromClaimName(scope, `${id}Claim`, this.claimName);
    return kplus.Volume.fromPersistentVolumeClaim(scope, id, claim, { readOnly: true });
  }
}
