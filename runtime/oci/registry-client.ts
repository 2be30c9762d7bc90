import { Readable } from 'node:stream';
import { Authorizer } from './auth/authorizer';
import { CredentialSource, Operation } from './auth/credentials';
import { digestOf, verifyContent } from './digest';
import { HttpResponse, isRetryableError, readBody, sleep, Transport, TransportError, TransportOptions } from './http';
import { Descriptor, Manifest, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES } from './media-types';
import { endpointHost } from './reference';

const ERROR_BODY_LIMIT = 64 * 1024;
const UPLOAD_ATTEMPTS = 3;

/** An answer the registry gave that the request could not accept: method, URL, status and the registry's error code. */
export class RegistryError extends Error {
  constructor(
    public readonly method: string,
    public readonly url: URL,
    public readonly status: number,
    public readonly code: string,
    detail: string,
  ) {
    super(`${method} ${url.origin}${url.pathname}: ${status} ${code}${detail ? `: ${detail}` : ''}`);
    this.name = 'RegistryError';
  }
}

export interface RegistryClientOptions extends TransportOptions {
  readonly credentials?: CredentialSource;
}

export interface FetchedManifest {
  readonly descriptor: Descriptor;
  readonly manifest: Manifest;
  readonly raw: Buffer;
}

interface CallOptions {
  readonly repository: string;
  readonly operation: Operation;
  readonly headers?: Record<string, string>;
  readonly body?: Buffer | (() => Readable);
  readonly ok: number[];
  /** Send no credentials (a URL on another origin than the registry's). */
  readonly anonymous?: boolean;
  /** Attempts at the transport level; 1 where a blind repeat is unsafe. */
  readonly attempts?: number;
}

/** The OCI distribution API of one registry, authenticated and verified. */
export class RegistryClient {
  private readonly transport: Transport;
  private readonly authorizer: Authorizer;
  private readonly base: string;

  constructor(public readonly registry: string, options: RegistryClientOptions = {}) {
    this.transport = new Transport(options);
    this.authorizer = new Authorizer(registry, options.credentials, this.transport);
    this.base = `${this.transport.scheme}://${endpointHost(registry)}`;
  }

  /** Digest, size and media type of a manifest, by tag or digest. */
  public async resolve(repository: string, reference: string): Promise<Descriptor> {
    const url = this.url(repository, `manifests/${reference}`);
    const response = await this.call('HEAD', url, { repository, operation: 'pull', headers: { Accept: MANIFEST_ACCEPT }, ok: [200] });
    response.body.resume();
    const digest = header(response, 'docker-content-digest');
    const size = Number(header(response, 'content-length'));
    const mediaType = header(response, 'content-type');
    if (digest && Number.isFinite(size) && mediaType) {
      if (reference.includes(':') && digest !== reference) {
        throw new RegistryError('HEAD', url, 200, 'DIGEST_MISMATCH', `asked for ${reference}, the registry answered ${digest}`);
      }
      return { mediaType, digest, size };
    }
    return (await this.fetchManifest(repository, reference)).descriptor;
  }

  /**
   * Fetches a manifest and checks it: at most 4 MiB, and its sha256 equals
   * the digest asked for, the descriptor given, or the digest the registry states.
   */
  public async fetchManifest(repository: string, reference: string, expected?: Descriptor): Promise<FetchedManifest> {
    const url = this.url(repository, `manifests/${reference}`);
    const response = await this.call('GET', url, { repository, operation: 'pull', headers: { Accept: MANIFEST_ACCEPT }, ok: [200] });
    const length = Number(header(response, 'content-length'));
    if (length > MAX_MANIFEST_BYTES) {
      response.body.destroy();
      throw new RegistryError('GET', url, 200, 'MANIFEST_TOO_LARGE', `${length} bytes, the limit is ${MAX_MANIFEST_BYTES}`);
    }
    const raw = await readBody(response.body, MAX_MANIFEST_BYTES);
    const digest = expected?.digest ?? (reference.includes(':') ? reference : header(response, 'docker-content-digest'));
    const actual = { digest: digestOf(raw), size: raw.length };
    if (digest) verifyContent(`manifest ${this.registry}/${repository}@${digest}`, { digest, size: expected?.size }, actual);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new RegistryError('GET', url, 200, 'MANIFEST_INVALID', 'the manifest is not JSON');
    }
    if (manifest.schemaVersion !== 2) throw new RegistryError('GET', url, 200, 'MANIFEST_INVALID', `unsupported schemaVersion ${manifest.schemaVersion}`);
    const mediaType = manifest.mediaType ?? header(response, 'content-type') ?? '';
    return { descriptor: { mediaType, digest: actual.digest, size: actual.size }, manifest, raw };
  }

  /** Stores a manifest under a tag or its digest; resolves to its digest. */
  public async pushManifest(repository: string, reference: string, raw: Buffer, mediaType: string): Promise<string> {
    const url = this.url(repository, `manifests/${reference}`);
    const response = await this.call('PUT', url, { repository, operation: 'push', headers: { 'Content-Type': mediaType }, body: raw, ok: [201] });
    response.body.resume();
    const digest = digestOf(raw);
    const stated = header(response, 'docker-content-digest');
    if (stated && stated !== digest) throw new RegistryError('PUT', url, 201, 'DIGEST_MISMATCH', `sent ${digest}, the registry stored ${stated}`);
    return digest;
  }

  public async hasBlob(repository: string, digest: string, operation: Operation = 'pull'): Promise<boolean> {
    const response = await this.call('HEAD', this.url(repository, `blobs/${digest}`), { repository, operation, ok: [200, 404] });
    response.body.resume();
    return response.status === 200;
  }

  /** The blob's byte stream; redirects are followed. The caller verifies what it reads. */
  public async fetchBlob(repository: string, digest: string): Promise<HttpResponse> {
    return this.call('GET', this.url(repository, `blobs/${digest}`), { repository, operation: 'pull', ok: [200] });
  }

  /**
   * Uploads a blob unless the repository has it: HEAD, then POST and one PUT
   * with the digest. `open` makes the content stream anew for each attempt.
   */
  public async pushBlob(repository: string, descriptor: Descriptor, open: () => Readable): Promise<'exists' | 'uploaded'> {
    if (await this.hasBlob(repository, descriptor.digest, 'push')) return 'exists';
    for (let attempt = 1; ; attempt++) {
      try {
        // Neither step is repeated blindly: a repeated POST leaves sessions behind, and a PUT whose
        // answer was lost fails on replay although the blob arrived. A failed attempt starts over.
        const session = await this.call('POST', this.url(repository, 'blobs/uploads/'), { repository, operation: 'push', ok: [202], attempts: 1 });
        session.body.resume();
        const location = header(session, 'location');
        if (!location) throw new RegistryError('POST', session.url, 202, 'NO_LOCATION', 'the upload session has no Location header');
        const target = new URL(location, this.base);
        target.searchParams.set('digest', descriptor.digest);
        const put = await this.call('PUT', target, {
          repository,
          operation: 'push',
          headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(descriptor.size) },
          body: open,
          ok: [201],
          attempts: 1,
          // Credentials stay with the registry's own origin (scheme, host and port).
          anonymous: target.origin !== new URL(this.base).origin,
        });
        put.body.resume();
        return 'uploaded';
      } catch (err) {
        const retryable = isRetryableError((err as TransportError).cause ?? err) || (err instanceof RegistryError && err.status >= 500);
        if (!retryable || attempt >= UPLOAD_ATTEMPTS) throw err;
        await sleep(250 * 2 ** attempt);
        if (await this.hasBlob(repository, descriptor.digest, 'push')) return 'uploaded';
      }
    }
  }

  public close(): void {
    this.transport.close();
  }

  private url(repository: string, path: string): URL {
    return new URL(`${this.base}/v2/${repository}/${path}`);
  }

  private async call(method: 'GET' | 'HEAD' | 'POST' | 'PUT', url: URL, options: CallOptions): Promise<HttpResponse> {
    const scopes = [`repository:${options.repository}:${options.operation === 'push' ? 'pull,push' : 'pull'}`];
    let authorization = options.anonymous ? undefined : await this.authorizer.header(scopes, options.operation);
    for (let round = 0; ; round++) {
      const headers = { ...options.headers, ...(authorization ? { Authorization: authorization } : {}) };
      const response = await this.transport.send({ method, url, headers, body: options.body, attempts: options.attempts });
      if (options.ok.includes(response.status)) return response;
      if (response.status === 401 && round < 2 && !options.anonymous
        && await this.authorizer.challenged(header(response, 'www-authenticate'), scopes, options.operation, authorization)) {
        response.body.resume();
        authorization = await this.authorizer.header(scopes, options.operation);
        continue;
      }
      throw await errorOf(method, url, response, this.registry);
    }
  }
}

function header(response: HttpResponse, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

async function errorOf(method: string, url: URL, response: HttpResponse, registry: string): Promise<RegistryError> {
  let code = response.status === 401 ? 'UNAUTHORIZED' : response.status === 404 ? 'NOT_FOUND' : 'HTTP_ERROR';
  let detail = '';
  try {
    const body = method === 'HEAD' ? Buffer.alloc(0) : await readBody(response.body, ERROR_BODY_LIMIT);
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const first = parsed.errors?.[0];
    if (first?.code) code = first.code;
    if (first?.message) detail = first.message;
  } catch {
    response.body.resume();
  }
  if (response.status === 401 || response.status === 403) {
    detail += `${detail ? '. ' : ''}Credentials for ${registry} are missing or not allowed this: set ORAS_USER and ORAS_PASS, or log in with a docker config (--registry-config)`;
  }
  return new RegistryError(method, url, response.status, code, detail);
}
