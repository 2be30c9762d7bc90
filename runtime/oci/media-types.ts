/** Media types and annotation keys of the OCI image spec and the ORAS layout. */
export const MediaType = {
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  OCI_ARTIFACT_MANIFEST: 'application/vnd.oci.artifact.manifest.v1+json',
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_MANIFEST_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  EMPTY: 'application/vnd.oci.empty.v1+json',
  LAYER_TAR: 'application/vnd.oci.image.layer.v1.tar',
  LAYER_TAR_GZIP: 'application/vnd.oci.image.layer.v1.tar+gzip',
  DEFAULT_ARTIFACT_TYPE: 'application/vnd.unknown.artifact.v1',
} as const;

export const Annotation = {
  TITLE: 'org.opencontainers.image.title',
  CREATED: 'org.opencontainers.image.created',
  CONTENT_DIGEST: 'io.deis.oras.content.digest',
  UNPACK: 'io.deis.oras.content.unpack',
} as const;

/** Every manifest type we read; distribution 2.8 answers 404 to an OCI manifest the Accept header does not name. */
export const MANIFEST_ACCEPT = [
  MediaType.OCI_MANIFEST,
  MediaType.OCI_INDEX,
  MediaType.DOCKER_MANIFEST,
  MediaType.DOCKER_MANIFEST_LIST,
  MediaType.OCI_ARTIFACT_MANIFEST,
].join(', ');

/** The empty JSON config `{}` that ORAS artifacts use. */
export const EMPTY_CONFIG = {
  mediaType: MediaType.EMPTY,
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
  data: 'e30=',
} as const;

/** Largest manifest we accept (the distribution default limit is 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Record<string, string>;
  readonly artifactType?: string;
  readonly data?: string;
  readonly platform?: Record<string, unknown>;
}

export interface Manifest {
  readonly schemaVersion: 2;
  readonly mediaType?: string;
  readonly artifactType?: string;
  readonly config?: Descriptor;
  readonly layers?: Descriptor[];
  readonly blobs?: Descriptor[];
  readonly manifests?: Descriptor[];
  readonly subject?: Descriptor;
  readonly annotations?: Record<string, string>;
}

export function isIndex(mediaType: string | undefined): boolean {
  return mediaType === MediaType.OCI_INDEX || mediaType === MediaType.DOCKER_MANIFEST_LIST;
}
