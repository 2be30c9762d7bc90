import { IOrasRegistry } from './registry';

/** One lowercase path component: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`. */
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
/** A DNS label as the distribution grammar allows it (any case). */
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6_HOST = /^\[[0-9a-fA-F:.]+\]$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };
const MAX_NAME_LENGTH = 255;

const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/**
 * Options for `OrasArtifact.fromReference`.
 */
export interface ArtifactReferenceOptions {
  /**
   * The registry a reference without a host is relative to, as the operator's
   * `input-uri` annotation was relative to its `oras-cache`. Its connection
   * settings (plain HTTP, credentials) travel with the artifact.
   *
   * @default - a reference must name its registry host
   */
  readonly registry?: IOrasRegistry;
}

/**
 * Tag or digest of an artifact. At least one is required.
 */
export interface ArtifactVersionOptions {
  /**
   * Tag, at most 128 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
   *
   * @default - no tag; `digest` must be set
   */
  readonly tag?: string;

  /**
   * Content digest, `sha256:<64 hex>` or `sha512:<128 hex>`.
   *
   * @default - no digest; `tag` must be set
   */
  readonly digest?: string;
}

/**
 * A validated reference to an ORAS artifact: `host[:port]/repository[:tag][@digest]`.
 *
 * References are never normalized to Docker Hub silently. ORAS clients
 * (oras-go, the oras CLI) require a registry host, and so does this class:
 * a reference without a host is an error unless `options.registry` says which
 * registry it is relative to. When the host is Docker Hub (`docker.io`,
 * `index.docker.io` or `registry-1.docker.io`), it is written `docker.io`, and a
 * one-component repository gets the `library/` prefix, as Docker Hub requires.
 *
 * A reference must carry a tag or a digest: `latest` is never implied.
 */
export class OrasArtifact {
  /**
   * Parses a reference string such as `registry.example.com:5000/team/data:v1`.
   *
   * @throws if any part is invalid; the message names the part and the fix.
   */
  public static fromReference(reference: string, options: ArtifactReferenceOptions = {}): OrasArtifact {
    const fail = (why: string): never => {
      throw new Error(`Invalid artifact reference "${reference}": ${why}`);
    };
    if (typeof reference !== 'string' || reference.trim() === '') fail('it is empty; write host[:port]/repository:tag');
    if (/\s/.test(reference)) fail('it contains white space');

    let rest = reference;
    let digest: string | undefined;
    const at = rest.indexOf('@');
    if (at >= 0) {
      digest = rest.slice(at + 1);
      rest = rest.slice(0, at);
    }

    let tag: string | undefined;
    const lastSlash = rest.lastIndexOf('/');
    const lastColon = rest.lastIndexOf(':');
    if (lastColon > lastSlash) {
      tag = rest.slice(lastColon + 1);
      rest = rest.slice(0, lastColon);
    }

    let host: string;
    let repository: string;
    const firstSlash = rest.indexOf('/');
    const first = firstSlash >= 0 ? rest.slice(0, firstSlash) : '';
    if (firstSlash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))) {
      host = first;
      repository = rest.slice(firstSlash + 1);
    } else if (options.registry) {
      host = options.registry.host;
      repository = rest;
    } else {
      return fail(`"${rest}" has no registry host. Write it as <host[:port]>/${rest}${tag ? ':' + tag : ''}, `
        + 'or pass { registry } to resolve it against a registry (for example an OrasRegistry).');
    }
    // Connection settings apply only to the registry they belong to.
    const registry = options.registry?.host === host ? options.registry : undefined;
    return new OrasArtifact(host, repository, { tag, digest }, registry, reference);
  }

  /**
   * An artifact in the given registry.
   *
   * @throws if the repository, tag or digest is invalid, or neither tag nor digest is given.
   */
  public static fromRegistry(registry: IOrasRegistry, repository: string, version: ArtifactVersionOptions): OrasArtifact {
    return new OrasArtifact(registry.host, repository, version, registry);
  }

  /** Registry host, with port if one was given (for example `cache:5000`). */
  public readonly host: string;
  /** Repository path inside the registry (for example `team/data`). */
  public readonly repository: string;
  /** The tag, if the reference has one. */
  public readonly tag?: string;
  /** The digest, if the reference has one. */
  public readonly digest?: string;
  /** The registry this artifact lives in, if known; it carries connection settings. */
  public readonly registry?: IOrasRegistry;

  private constructor(host: string, repository: string, version: ArtifactVersionOptions, registry?: IOrasRegistry, original?: string) {
    const label = original ?? `${host}/${repository}`;
    const fail = (why: string): never => {
      throw new Error(`Invalid artifact reference "${label}": ${why}`);
    };

    validateHost(host, fail);
    let repo = repository;
    if (repo === '' || repo.startsWith('/') || repo.endsWith('/')) fail(`repository "${repo}" must be non-empty path components separated by single "/"`);
    for (const part of repo.split('/')) {
      if (!PATH_COMPONENT.test(part)) {
        fail(`repository component "${part}" must be lowercase letters and digits, optionally separated by ".", "_", "__" or "-"`);
      }
    }
    let normalizedHost = host;
    if (DOCKER_HUB_ALIASES.has(host.toLowerCase())) {
      normalizedHost = DOCKER_HUB;
      if (!repo.includes('/')) repo = `library/${repo}`;
    }
    if (`${normalizedHost}/${repo}`.length > MAX_NAME_LENGTH) fail(`the name "${normalizedHost}/${repo}" is longer than ${MAX_NAME_LENGTH} characters`);

    const { tag, digest } = version;
    if (tag === undefined && digest === undefined) {
      fail('it has neither tag nor digest. Add ":<tag>" or "@sha256:<digest>"; "latest" is never implied');
    }
    if (tag !== undefined && !TAG.test(tag)) {
      fail(`tag "${tag}" must be 1 to 128 characters of letters, digits, "_", "." and "-", and must not start with "." or "-"`);
    }
    if (digest !== undefined) validateDigest(digest, fail);

    this.host = normalizedHost;
    this.repository = repo;
    this.tag = tag;
    this.digest = digest;
    this.registry = registry;
  }

  /** `host/repository`, without tag or digest. */
  public get name(): string {
    return `${this.host}/${this.repository}`;
  }

  /** The full reference: `host/repository[:tag][@digest]`. */
  public get reference(): string {
    return `${this.name}${this.tag !== undefined ? ':' + this.tag : ''}${this.digest !== undefined ? '@' + this.digest : ''}`;
  }

  /** The same repository with another tag (any digest is dropped). */
  public withTag(tag: string): OrasArtifact {
    return new OrasArtifact(this.host, this.repository, { tag }, this.registry);
  }

  /** The same repository pinned to a digest (the tag is kept for readability). */
  public withDigest(digest: string): OrasArtifact {
    return new OrasArtifact(this.host, this.repository, { tag: this.tag, digest }, this.registry);
  }

  /** The full reference. */
  public toString(): string {
    return this.reference;
  }
}

/**
 * Throws through `fail` unless `host` is `name[:port]` or `[ipv6][:port]`.
 * @internal
 */
export function validateHost(host: string, fail: (why: string) => never): void {
  let name = host;
  const portMatch = /^(.*):([^:\]]*)$/.exec(host);
  if (portMatch && !(host.startsWith('[') && !host.includes(']:'))) {
    name = portMatch[1];
    const port = portMatch[2];
    if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
      fail(`port "${port}" of host "${host}" must be a number from 1 to 65535`);
    }
  }
  if (name.startsWith('[')) {
    if (!IPV6_HOST.test(name)) fail(`host "${host}" is not a valid bracketed IPv6 address`);
    return;
  }
  if (name === '' || !name.split('.').every((label) => DOMAIN_COMPONENT.test(label))) {
    fail(`host "${host}" must be a DNS name or IP address with an optional :port (letters, digits, "-" and ".")`);
  }
}

function validateDigest(digest: string, fail: (why: string) => never): void {
  const [algorithm, hex, ...extra] = digest.split(':');
  const length = DIGEST_HEX_LENGTH[algorithm];
  if (extra.length > 0 || hex === undefined || length === undefined) {
    fail(`digest "${digest}" must be "sha256:<64 hex digits>" or "sha512:<128 hex digits>"`);
  }
  if (!new RegExp(`^[a-f0-9]{${length}}$`).test(hex)) {
    fail(`digest "${digest}" must have exactly ${length} lowercase hex digits after "${algorithm}:" (it has ${hex.length})`);
  }
}
