import { Size, SizeRoundingBehavior } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';

/**
 * Options for `RegistryStorage.emptyDir`.
 */
export interface RegistryEmptyDirOptions {
  /**
   * Largest size the cache may reach before the kubelet evicts the pod.
   *
   * @default Size.gibibytes(10)
   */
  readonly sizeLimit?: Size;
}

/**
 * Options for `RegistryStorage.persistentVolumeClaim`.
 */
export interface RegistryClaimOptions {
  /** Size of the volume. */
  readonly size: Size;

  /**
   * StorageClass of the claim.
   *
   * @default - the cluster's default StorageClass
   */
  readonly storageClassName?: string;
}

/**
 * Where an `OrasRegistry` keeps its blobs.
 */
export abstract class RegistryStorage {
  /**
   * A pod-local emptyDir: fast, and lost when the pod is deleted or moves.
   */
  public static emptyDir(options: RegistryEmptyDirOptions = {}): RegistryStorage {
    return new EmptyDirStorage(options.sizeLimit ?? Size.gibibytes(10));
  }

  /**
   * A new ReadWriteOnce PersistentVolumeClaim that outlives the pod.
   */
  public static persistentVolumeClaim(options: RegistryClaimOptions): RegistryStorage {
    if (options.size.toKibibytes({ rounding: SizeRoundingBehavior.NONE }) < 1024) {
      throw new Error(`RegistryStorage.persistentVolumeClaim: "size" is ${options.size.toKibibytes()} KiB; it must be at least 1 MiB.`);
    }
    return new ClaimStorage(options);
  }

  /**
   * An existing PersistentVolumeClaim, for example one restored from a snapshot.
   */
  public static existingClaim(claim: kplus.IPersistentVolumeClaim): RegistryStorage {
    return new ExistingClaimStorage(claim);
  }

  /**
   * Whether the blobs outlive the registry pod (a restart keeps them).
   * @internal
   */
  public abstract readonly _persistent: boolean;

  /**
   * Creates what the storage needs inside the registry and returns its volume.
   * @internal
   */
  public abstract _bind(scope: Construct, metadata: RegistryStorageMetadata): kplus.Volume;
}

/**
 * Name, namespace and labels the storage objects share with the registry.
 * @internal
 */
export interface RegistryStorageMetadata {
  readonly name: string;
  readonly namespace?: string;
  readonly labels: { [key: string]: string };
}

class EmptyDirStorage extends RegistryStorage {
  public readonly _persistent = false;

  constructor(private readonly sizeLimit: Size) {
    super();
  }

  public _bind(scope: Construct): kplus.Volume {
    return kplus.Volume.fromEmptyDir(scope, 'StorageVolume', 'storage', { sizeLimit: this.sizeLimit });
  }
}

class ClaimStorage extends RegistryStorage {
  public readonly _persistent = true;

  constructor(private readonly options: RegistryClaimOptions) {
    super();
  }

  public _bind(scope: Construct, metadata: RegistryStorageMetadata): kplus.Volume {
    const claim = new kplus.PersistentVolumeClaim(scope, 'StorageClaim', {
      metadata: { ...metadata, name: `${metadata.name}-storage` },
      storage: this.options.size,
      storageClassName: this.options.storageClassName,
      accessModes: [kplus.PersistentVolumeAccessMode.READ_WRITE_ONCE],
      volumeMode: kplus.PersistentVolumeMode.FILE_SYSTEM,
    });
    return kplus.Volume.fromPersistentVolumeClaim(scope, 'StorageVolume', claim, { name: 'storage' });
  }
}

class ExistingClaimStorage extends RegistryStorage {
  public readonly _persistent = true;

  constructor(private readonly claim: kplus.IPersistentVolumeClaim) {
    super();
  }

  public _bind(scope: Construct): kplus.Volume {
    return kplus.Volume.fromPersistentVolumeClaim(scope, 'StorageVolume', this.claim, { name: 'storage' });
  }
}
