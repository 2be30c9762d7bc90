import { OrasArtifact } from '../../src/artifact';
import type { IOrasRegistry } from '../../src/registry';

/** A parsed artifact reference, as the registry API needs it. */
export interface Reference {
  /** `host[:port]` as written. */
  readonly registry: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
  /** Digest if present, else tag: what goes into /v2/<repository>/manifests/<here>. */
  readonly manifestReference: string;
  /** The full reference string. */
  readonly text: string;
}

/**
 * Parses `host[:port]/repository[:tag][@digest]` with the same grammar the
 * constructs validate at synth time. `defaultRegistry` resolves references
 * without a host, as the operator's annotations were relative to the cache.
 */
export function parseReference(text: string, defaultRegistry?: string): Reference {
  const registry: IOrasRegistry | undefined = defaultRegistry === undefined ? undefined : {
    host: defaultRegistry,
    plainHttp: false,
    insecure: false,
    artifact: (repository, tag) => OrasArtifact.fromRegistry(registry!, repository, { tag }),
  };
  const artifact = OrasArtifact.fromReference(text, { registry });
  return {
    registry: artifact.host,
    repository: artifact.repository,
    tag: artifact.tag,
    digest: artifact.digest,
    manifestReference: artifact.digest ?? artifact.tag!,
    text: artifact.reference,
  };
}

/** The host:port to connect to: Docker Hub's API lives on registry-1.docker.io. */
export function endpointHost(registry: string): string {
  return registry === 'docker.io' ? 'registry-1.docker.io' : registry;
}
