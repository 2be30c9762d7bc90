import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { registryProblem } from './node';
import { CsiError } from './protocol';
import { parseAttributes, required, secretCredentials, unsupportedCapability } from './requests';
import { CSI_ATTRIBUTE } from '../../src/csi-attributes';
import { RegistryClient } from '../oci/registry-client';

/** The parameters external-provisioner adds with --extra-create-metadata. */
const PVC_NAME = 'csi.storage.k8s.io/pvc/name';
const PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';
/** Parameters of the CO, not of the volume: the provisioner's own (secrets, fs type) and the PVC's identity. */
const CO_PARAMETER = /^csi\.storage\.k8s\.io\//;
/** The attributes a StorageClass may set: every volume attribute but the pod's namespace, which the kubelet sets. */
const STORAGE_CLASS_KEYS: readonly string[] = Object.values(CSI_ATTRIBUTE).filter((key) => key !== CSI_ATTRIBUTE.POD_NAMESPACE);
/** Those a PVC annotation may set: what to mount, not how the registry is reached (that stays with the class). */
const CLAIM_KEYS: readonly string[] = [CSI_ATTRIBUTE.REFERENCE, CSI_ATTRIBUTE.MEDIA_TYPES, CSI_ATTRIBUTE.PULL_POLICY];
/** Volume ids this controller makes: `oras-` and 40 hex digits, far below CSI's 128 bytes. */
const VOLUME_ID = /^oras-[0-9a-f]{40}$/;

/** Reads a PVC's annotations (the Kubernetes bundle), for a StorageClass that leaves the artifact to each claim. */
export type ClaimAnnotations = (namespace: string, name: string) => Promise<Record<string, string>>;

export interface ControllerOptions {
  /** PEM certificates every registry client trusts besides the system's (`--ca-file`). */
  readonly ca?: string;
  /** Absent when the plugin has no Kubernetes API access: then the StorageClass must name the artifact. */
  readonly claimAnnotations?: ClaimAnnotations;
}

interface Created {
  readonly volumeId: string;
  readonly capacity: number;
  readonly context: Record<string, string>;
}

/**
 * The CSI Controller service: CreateVolume checks that the artifact exists
 * and answers with a volume whose context holds its attributes (the kubelet
 * hands them to NodePublishVolume), DeleteVolume forgets it (the artifact
 * stays in its registry), ValidateVolumeCapabilities accepts read-only
 * mounts. Nothing is attached. Volume ids are derived from the name and the
 * attributes, so a repeated CreateVolume gets the same volume even after a
 * restart; the names seen since the start are kept to refuse one reused with
 * other arguments.
 */
export class OrasController {
  private readonly created = new Map<string, Created>();

  constructor(private readonly options: ControllerOptions = {}) {}

  public getCapabilities(): object {
    return { capabilities: [{ rpc: { type: 'CREATE_DELETE_VOLUME' } }] };
  }

  public async createVolume(request: any): Promise<object> {
    const name = required(request.name, 'name');
    checkCapabilities(request.volume_capabilities, true);
    if (request.volume_content_source) {
      throw new CsiError(grpc.status.INVALID_ARGUMENT, 'a volume content source (snapshot or clone) is not supported: an artifact volume shows its artifact');
    }
    const capacity = requestedCapacity(request.capacity_range);
    // Sorted: a Go client (external-provisioner, csi-sanity) sends map entries in random order, and the id must not depend on it.
    const context = Object.fromEntries(Object.entries(await this.volumeContext(request.parameters ?? {})).sort(([a], [b]) => a.localeCompare(b)));
    const attributes = parseAttributes(context);
    const volumeId = `oras-${createHash('sha256').update(JSON.stringify([name, context])).digest('hex').slice(0, 40)}`;
    const earlier = this.created.get(name);
    if (earlier && (earlier.volumeId !== volumeId || earlier.capacity !== capacity)) {
      throw new CsiError(grpc.status.ALREADY_EXISTS, `volume ${name} exists with other parameters or capacity (${earlier.context[CSI_ATTRIBUTE.REFERENCE]}, `
        + `${earlier.capacity} bytes); delete it first or choose another name`);
    }
    // The artifact must exist (and these credentials may read it): a claim that names a missing one fails with its event, not at mount time.
    const { reference } = attributes;
    const client = new RegistryClient(reference.registry, {
      plainHttp: attributes.plainHttp,
      insecure: attributes.insecure,
      ca: this.options.ca,
      credentials: secretCredentials(request.secrets ?? {}, reference.registry),
      attempts: 3,
    });
    try {
      await client.resolve(reference.repository, reference.manifestReference).catch((err) => {
        throw registryProblem(err, reference.text, 'the provisioner secret (csi.storage.k8s.io/provisioner-secret-name)');
      });
    } finally {
      client.close();
    }
    this.created.set(name, { volumeId, capacity, context });
    return { volume: { volume_id: volumeId, capacity_bytes: capacity, volume_context: context } };
  }

  public deleteVolume(request: any): object {
    const volumeId = required(request.volume_id, 'volume_id');
    for (const [name, created] of this.created) if (created.volumeId === volumeId) this.created.delete(name);
    return {};
  }

  public validateVolumeCapabilities(request: any): object {
    const volumeId = required(request.volume_id, 'volume_id');
    checkCapabilities(request.volume_capabilities, false);
    const known = [...this.created.values()].some((c) => c.volumeId === volumeId);
    // Volumes created before a restart are known by the shape of their id and an artifact in their context.
    if (!known && !(VOLUME_ID.test(volumeId) && request.volume_context?.[CSI_ATTRIBUTE.REFERENCE])) {
      throw new CsiError(grpc.status.NOT_FOUND, `volume ${volumeId} does not exist`);
    }
    const refused = (request.volume_capabilities as any[]).map((c) => unsupportedCapability(c, true)).find(Boolean);
    if (refused) return { message: refused };
    return {
      confirmed: {
        volume_context: request.volume_context ?? {},
        volume_capabilities: request.volume_capabilities,
        parameters: request.parameters ?? {},
      },
    };
  }

  /**
   * The volume's attributes: the StorageClass's parameters, and the PVC's
   * annotations of CLAIM_KEYS (external-provisioner passes the claim's name
   * with --extra-create-metadata). A claim may set what its StorageClass
   * leaves open; one that contradicts it is refused, as are unknown
   * parameters: nothing the user wrote is dropped.
   */
  private async volumeContext(parameters: Record<string, string>): Promise<Record<string, string>> {
    const context: Record<string, string> = {};
    for (const [key, value] of Object.entries(parameters)) {
      if (CO_PARAMETER.test(key)) continue;
      if (!STORAGE_CLASS_KEYS.includes(key)) {
        throw new CsiError(grpc.status.INVALID_ARGUMENT, `unknown StorageClass parameter "${key}"; the parameters are ${STORAGE_CLASS_KEYS.join(', ')}`);
      }
      context[key] = value;
    }
    const claim = parameters[PVC_NAME];
    const namespace = parameters[PVC_NAMESPACE];
    const fromClass = context[CSI_ATTRIBUTE.REFERENCE] !== undefined;
    if (claim && namespace && (this.options.claimAnnotations || !fromClass)) {
      for (const [key, value] of Object.entries(await this.claimAttributes(namespace, claim))) {
        if (context[key] !== undefined && context[key] !== value) {
          throw new CsiError(grpc.status.INVALID_ARGUMENT, `PVC ${namespace}/${claim} annotates ${key}: "${value}", but its StorageClass sets "${context[key]}"; `
            + 'remove the annotation, or use a StorageClass that leaves it to each claim');
        }
        context[key] = value;
      }
      if (context[CSI_ATTRIBUTE.REFERENCE] === undefined) {
        throw new CsiError(grpc.status.INVALID_ARGUMENT, `PVC ${namespace}/${claim} has no annotation ${CSI_ATTRIBUTE.REFERENCE}, and its StorageClass names `
          + 'no artifact: annotate the claim with the artifact to mount, for example registry.example.com:5000/models/demo:v1');
      }
    }
    if (context[CSI_ATTRIBUTE.REFERENCE] === undefined) {
      throw new CsiError(grpc.status.INVALID_ARGUMENT, `no artifact: set the StorageClass parameter ${CSI_ATTRIBUTE.REFERENCE}, or annotate each `
        + 'PersistentVolumeClaim with it (external-provisioner then needs --extra-create-metadata)');
    }
    return context;
  }

  /** The claim's annotations that are volume attributes. */
  private async claimAttributes(namespace: string, claim: string): Promise<Record<string, string>> {
    if (!this.options.claimAnnotations) {
      throw new CsiError(grpc.status.FAILED_PRECONDITION, `PVC ${namespace}/${claim}: the StorageClass names no artifact, and this controller has `
        + `no Kubernetes API access to read the claim's ${CSI_ATTRIBUTE.REFERENCE} annotation`);
    }
    const annotations = await this.options.claimAnnotations(namespace, claim).catch((err: Error) => {
      throw new CsiError(grpc.status.UNAVAILABLE, `cannot read PVC ${namespace}/${claim}: ${err.message}`);
    });
    return Object.fromEntries(CLAIM_KEYS.filter((key) => annotations[key] !== undefined).map((key) => [key, annotations[key]]));
  }
}

/** INVALID_ARGUMENT unless there are capabilities and each can be served (with `forCreate`, each is read-only). */
function checkCapabilities(capabilities: any[] | undefined, forCreate: boolean): void {
  if (!capabilities?.length) throw new CsiError(grpc.status.INVALID_ARGUMENT, 'volume_capabilities is required');
  const refused = capabilities.map((c) => unsupportedCapability(c, forCreate)).find(Boolean);
  if (refused) throw new CsiError(grpc.status.INVALID_ARGUMENT, refused);
}

/** The capacity to report: what the claim asked for. An artifact takes the room it has, and nothing can be written. */
function requestedCapacity(range: { required_bytes?: number; limit_bytes?: number } | undefined): number {
  const requiredBytes = range?.required_bytes ?? 0;
  const limit = range?.limit_bytes ?? 0;
  if (requiredBytes < 0 || limit < 0) throw new CsiError(grpc.status.INVALID_ARGUMENT, 'capacity_range must not be negative');
  if (limit > 0 && requiredBytes > limit) {
    throw new CsiError(grpc.status.OUT_OF_RANGE, `capacity_range asks for at least ${requiredBytes} and at most ${limit} bytes`);
  }
  return requiredBytes;
}
