import { Readable } from 'stream';
import { digestOf } from '../../runtime/oci/digest';
import { Annotation, Descriptor, EMPTY_CONFIG, Manifest, MediaType } from '../../runtime/oci/media-types';
import { parseReference } from '../../runtime/oci/reference';
import { RegistryClient } from '../../runtime/oci/registry-client';

/** A hand-made layer: any title, media type and annotations, none of the checks push makes. */
export interface RawLayer {
  readonly content: Buffer;
  readonly title?: string;
  readonly mediaType?: string;
  readonly annotations?: Record<string, string>;
}

/** The descriptor of a raw layer (a plain tar layer unless it says otherwise). */
export function rawDescriptor(layer: RawLayer): Descriptor {
  return {
    mediaType: layer.mediaType ?? MediaType.LAYER_TAR,
    digest: digestOf(layer.content),
    size: layer.content.length,
    annotations: { ...layer.annotations, ...(layer.title !== undefined ? { [Annotation.TITLE]: layer.title } : {}) },
  };
}

/** An ORAS artifact manifest of these layers with the empty config. */
export function rawManifest(layers: unknown[]): Manifest {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    artifactType: MediaType.DEFAULT_ARTIFACT_TYPE,
    config: EMPTY_CONFIG,
    layers: layers as Descriptor[],
  };
}

/** Pushes an artifact of hand-made layers to a real registry under `reference`; returns the reference. */
export async function pushRawArtifact(client: RegistryClient, reference: string, layers: RawLayer[]): Promise<string> {
  const { repository, manifestReference } = parseReference(reference);
  await client.pushBlob(repository, EMPTY_CONFIG, () => Readable.from([Buffer.from('{}')]));
  for (const layer of layers) await client.pushBlob(repository, rawDescriptor(layer), () => Readable.from([layer.content]));
  const manifest = Buffer.from(JSON.stringify(rawManifest(layers.map(rawDescriptor))));
  await client.pushManifest(repository, manifestReference, manifest, MediaType.OCI_MANIFEST);
  return reference;
}
