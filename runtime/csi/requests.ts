import { isAbsolute, posix } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CsiError } from './protocol';
import { CSI_ATTRIBUTE } from '../../src/csi-attributes';
import { Credential, CredentialSource, credentialFromAuths, DockerConfig } from '../oci/auth/credentials';
import { parseReference, Reference } from '../oci/reference';

// Decoding and validation of the Node service's requests, apart from what they do: a bad field is INVALID_ARGUMENT, naming it.

export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

export interface RequestOptions {
  /** The kubelet's root directory: targets must lie in its pods/ directory. */
  readonly kubeletDir: string;
  /** Cache entries are shared only within a namespace. */
  readonly isolateNamespaces: boolean;
}

/** A volume's attributes (its volume_context, or a StorageClass's parameters), validated. */
export interface Attributes {
  readonly reference: Reference;
  readonly plainHttp: boolean;
  readonly insecure: boolean;
  readonly policy: PullPolicy;
  readonly concurrency: number;
  readonly mediaTypes?: string[];
}

/** A validated NodePublishVolume request. */
export interface Publish extends Attributes {
  readonly volumeId: string;
  readonly target: string;
  /** The namespace whose entries this volume may use ('' when namespaces share). */
  readonly scope: string;
  readonly secrets: Record<string, string>;
  /** The volume's artifact and how to reach it: a republish to the same target must ask for the same. */
  readonly artifact: string;
}

function bool(value: string | undefined, name: string): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new CsiError(grpc.status.INVALID_ARGUMENT, `volume attribute ${name} must be "true" or "false", not "${value}"`);
}

export function required(value: string | undefined, field: string): string {
  if (!value) throw new CsiError(grpc.status.INVALID_ARGUMENT, `${field} is required`);
  return value;
}

/**
 * A path the kubelet gave: absolute, normalized (no "..", "." or empty
 * segments, no trailing slash) and inside `<kubelet dir>/pods/`. So each
 * target has one spelling, and nothing else is mounted on or deleted.
 */
export function kubeletPath(value: string | undefined, field: string, kubeletDir: string): string {
  const path = required(value, field);
  if (!isAbsolute(path) || posix.normalize(path) !== path || (path.endsWith('/') && path !== '/')) {
    throw new CsiError(grpc.status.INVALID_ARGUMENT, `${field} "${path}" must be an absolute path without ".", ".." or empty segments and without a trailing slash`);
  }
  const pods = posix.join(kubeletDir, 'pods');
  if (!path.startsWith(`${pods}/`)) {
    throw new CsiError(grpc.status.INVALID_ARGUMENT, `${field} "${path}" is not inside the kubelet's pods directory ${pods}; `
      + 'if the kubelet runs with another --root-dir, start the plugin with --kubelet-dir set to it');
  }
  return path;
}

/** Credentials from a dockerconfigjson secret passed through nodePublishSecretRef. */
export function secretCredentials(secrets: Record<string, string>, registry: string): CredentialSource {
  const source = 'the nodePublishSecretRef Secret';
  return {
    async get(): Promise<Credential | undefined> {
      const text = secrets['.dockerconfigjson'] ?? secrets['config.json'];
      if (!text) return undefined;
      let config: DockerConfig;
      try {
        config = JSON.parse(text);
        return credentialFromAuths(config, registry, source);
      } catch {
        // The parser's message could quote the secret: name the Secret only.
        throw new CsiError(grpc.status.INVALID_ARGUMENT, `${source} has no valid .dockerconfigjson for ${registry}`);
      }
    },
  };
}

/**
 * The reference forms the operator prototype's CSI driver accepted: an
 * `oras://` prefix, and no tag meaning `latest`. (At synth time a tag is
 * required; volume attributes written by hand keep working.)
 */
export function prototypeReference(text: string): string {
  const bare = text.startsWith('oras://') ? text.slice('oras://'.length) : text;
  const name = bare.slice(bare.lastIndexOf('/') + 1);
  return bare.includes('@') || name.includes(':') || !bare.includes('/') ? bare : `${bare}:latest`;
}

/** The access modes of a read-only volume: ReadOnlyMany and the single-node reader. */
const READ_ONLY_MODES = new Set(['MULTI_NODE_READER_ONLY', 'SINGLE_NODE_READER_ONLY']);

/**
 * Why a volume capability cannot be served, or undefined when it can: a
 * mounted directory with a read-only access mode. Writer modes are refused
 * when a volume is created; the Node service mounts read-only whatever the
 * mode, as the kubelet asks inline volumes with a writer mode.
 */
export function unsupportedCapability(capability: any, forCreate: boolean): string | undefined {
  if (!capability) return 'a volume capability is empty';
  if (capability.block) return 'block access is not supported: an artifact is mounted as a read-only directory';
  const mode = capability.access_mode?.mode;
  if (forCreate && !READ_ONLY_MODES.has(mode)) {
    return `access mode ${mode ?? 'UNKNOWN'} is not supported: artifact volumes are read-only, so the PersistentVolumeClaim's accessModes must be [ReadOnlyMany]`;
  }
  return undefined;
}

/** The artifact and pull options of a volume, from its attributes: INVALID_ARGUMENT names the bad one. */
export function parseAttributes(context: Record<string, string>): Attributes {
  const referenceText = context[CSI_ATTRIBUTE.REFERENCE];
  if (!referenceText) {
    throw new CsiError(grpc.status.INVALID_ARGUMENT, `the volume attribute ${CSI_ATTRIBUTE.REFERENCE} is required (the artifact to mount, for example registry:5000/models/demo:v1)`);
  }
  let reference: Reference;
  try {
    reference = parseReference(prototypeReference(referenceText));
  } catch (err) {
    throw new CsiError(grpc.status.INVALID_ARGUMENT, `${CSI_ATTRIBUTE.REFERENCE}: ${(err as Error).message}`);
  }
  const plainHttp = bool(context[CSI_ATTRIBUTE.PLAIN_HTTP], CSI_ATTRIBUTE.PLAIN_HTTP) ?? false;
  const insecure = bool(context[CSI_ATTRIBUTE.INSECURE], CSI_ATTRIBUTE.INSECURE) ?? false;
  const pullAlways = bool(context[CSI_ATTRIBUTE.PULL_ALWAYS], CSI_ATTRIBUTE.PULL_ALWAYS) ?? false;
  const policy = context[CSI_ATTRIBUTE.PULL_POLICY] ?? (pullAlways ? 'Always' : 'IfNotPresent');
  if (!['Always', 'IfNotPresent', 'Never'].includes(policy)) {
    throw new CsiError(grpc.status.INVALID_ARGUMENT, `${CSI_ATTRIBUTE.PULL_POLICY} must be Always, IfNotPresent or Never, not "${policy}"`);
  }
  const concurrencyText = context[CSI_ATTRIBUTE.CONCURRENCY];
  const concurrency = concurrencyText === undefined ? 3 : Number(concurrencyText);
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new CsiError(grpc.status.INVALID_ARGUMENT, `${CSI_ATTRIBUTE.CONCURRENCY} must be a positive integer, not "${concurrencyText}"`);
  }
  const mediaTypes = context[CSI_ATTRIBUTE.MEDIA_TYPES]?.split(',').map((m) => m.trim()).filter(Boolean);
  return { reference, plainHttp, insecure, policy: policy as PullPolicy, concurrency, mediaTypes };
}

/** The NodePublishVolume request, validated. */
export function parsePublish(request: any, options: RequestOptions): Publish {
  const volumeId = required(request.volume_id, 'volume_id');
  const target = kubeletPath(request.target_path, 'target_path', options.kubeletDir);
  if (!request.volume_capability) throw new CsiError(grpc.status.INVALID_ARGUMENT, 'volume_capability is required');
  const unsupported = unsupportedCapability(request.volume_capability, false);
  if (unsupported) throw new CsiError(grpc.status.INVALID_ARGUMENT, unsupported);
  const context: Record<string, string> = request.volume_context ?? {};
  const attributes = parseAttributes(context);
  const { reference, plainHttp, insecure, mediaTypes } = attributes;
  return {
    ...attributes,
    volumeId,
    target,
    scope: options.isolateNamespaces ? (context[CSI_ATTRIBUTE.POD_NAMESPACE] ?? '') : '',
    secrets: request.secrets ?? {},
    artifact: JSON.stringify([reference.text, plainHttp, insecure, mediaTypes ?? []]),
  };
}
