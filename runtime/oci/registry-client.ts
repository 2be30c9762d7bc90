import { Readable } from 'node:stream';
import { Authorizer } from './auth/authorizer';
import { CredentialSource, Operation } from './auth/credentials';
import { DeadlineOptions, withDeadline } from './deadline';
import { assertDigest, digestOf, isDigest, verifyContent } from './digest';
import { AuthError, ContentMismatchError, InvalidReferenceError, LimitError, RegistryError } from './errors';
import { HttpResponse, readBody, Transport, TransportOptions } from './http';
import { parseManifest } from './manifest';
import { Descriptor, Manifest, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES } from './media-types';
import { endpointHost } from './reference';
import { DEFAULT_RETRY_POLICY, retry, RetryPolicy } from './retry';

const ERROR_BODY_LIMIT = 64 * 1024;
/** The distribution spec's grammar of repository names and tags. */
const REPOSITORY = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/** Names asked for per page of the catalog and tag lists. */
const LIST_PAGE = 1000;

export interface RegistryClientOptions extends TransportOptions {
  readonly credentials?: CredentialSource;
  /** Attempts for a request that meets a transient failure (see isTransient). Default 5. */
  readonly attempts?: number;
  /** First retry delay (ms), doubled each time with jitter. Default 250. */
  readonly retryBaseMs?: number;
}

export interface FetchedManifest {
  readonly descriptor: Descriptor;
  readonly manifest: Manifest;
  readonly raw: Buffer;
}

/** A chunked upload under way: where the next request goes, and how many bytes the registry has. */
export interface UploadSession {
  readonly repository: string;
  location: URL;
  offset: number;
}

interface CallOptions {
  readonly repository: string;
  readonly operation: Operation;
  readonly headers?: Record<string, string>;
  readonly body?: Buffer | (() => Readable);
  readonly ok: number[];
  /** Send no credentials (a URL on another origin than the registry's). */
  readonly anonymous?: boolean;
  /** The token scope, when it is not the repository's pull or push. */
  readonly scope?: string;
  readonly signal?: AbortSignal;
}

/**
 * The OCI distribution API of one registry, authenticated and verified. Each public method retries
 * transient failures with the client's one policy and honours `signal` and `timeoutMs`.
 */
export class RegistryClient {
  public readonly retryPolicy: RetryPolicy;
  private readonly transport: Transport;
  private readonly authorizer: Authorizer;
  private readonly base: string;

  constructor(public readonly registry: string, options: RegistryClientOptions = {}) {
    this.transport = new Transport(options);
    this.base = `${this.transport.scheme}://${endpointHost(registry)}`;
    this.authorizer = new Authorizer(registry, options.credentials, this.transport, new URL(`${this.base}/v2/`));
    this.retryPolicy = {
      ...DEFAULT_RETRY_POLICY,
      attempts: Math.max(1, options.attempts ?? DEFAULT_RETRY_POLICY.attempts),
      baseMs: options.retryBaseMs ?? DEFAULT_RETRY_POLICY.baseMs,
    };
  }

  /** Digest, size and media type of a manifest, by tag or digest. */
  public resolve(repository: string, reference: string, options: DeadlineOptions = {}): Promise<Descriptor> {
    return withDeadline(`resolving ${this.registry}/${repository}:${reference}`, options, async (signal) => {
      const url = this.manifestUrl(repository, reference);
      const response = await this.retried(signal, () => this.call('HEAD', url, { repository, operation: 'pull', headers: { Accept: MANIFEST_ACCEPT }, ok: [200], signal }));
      response.body.resume();
      const digest = header(response, 'docker-content-digest');
      const size = Number(header(response, 'content-length'));
      const mediaType = header(response, 'content-type');
      if (isDigest(digest) && Number.isSafeInteger(size) && size >= 0 && mediaType) {
        if (isDigest(reference) && digest !== reference) {
          throw new RegistryError('HEAD', url, 200, 'DIGEST_MISMATCH', `asked for ${reference}, the registry answered ${digest}`);
        }
        return { mediaType, digest, size };
      }
      return (await this.fetchManifest(repository, reference, undefined, { signal })).descriptor;
    });
  }

  /**
   * Fetches a manifest and checks it: at most 4 MiB (or the size `expected` declares), its sha256
   * equals the digest asked for, the descriptor given, or the digest the registry states, and every
   * field has the type the spec gives it.
   */
  public fetchManifest(repository: string, reference: string, expected?: Descriptor, options: DeadlineOptions = {}): Promise<FetchedManifest> {
    return withDeadline(`fetching the manifest ${this.registry}/${repository}:${reference}`, options, (signal) => this.retried(signal, async () => {
      const url = this.manifestUrl(repository, reference);
      const asked = expected?.digest ?? (isDigest(reference) ? reference : undefined);
      let what = `manifest ${this.registry}/${repository}@${asked ?? reference}`;
      const limit = expected?.size ?? MAX_MANIFEST_BYTES;
      if (limit > MAX_MANIFEST_BYTES) throw new LimitError(what, 'bytes', MAX_MANIFEST_BYTES, 'a manifest may hold at most 4 MiB');
      const response = await this.call('GET', url, { repository, operation: 'pull', headers: { Accept: MANIFEST_ACCEPT }, ok: [200], signal });
      const stated = header(response, 'docker-content-digest');
      const digest = asked ?? (isDigest(stated) ? stated : undefined);
      what = `manifest ${this.registry}/${repository}@${digest ?? reference}`;
      const tooLarge = () => (expected
        ? new ContentMismatchError(what, expected, { size: limit + 1 })
        : new LimitError(what, 'bytes', MAX_MANIFEST_BYTES, 'a manifest may hold at most 4 MiB'));
      if (Number(header(response, 'content-length')) > limit) {
        response.body.destroy();
        throw tooLarge();
      }
      const raw = await readBody(response.body, limit, tooLarge);
      const actual = { digest: digestOf(raw), size: raw.length };
      if (digest) verifyContent(what, { digest, size: expected?.size }, actual);
      const manifest = parseManifest(raw, what);
      const mediaType = manifest.mediaType ?? header(response, 'content-type') ?? '';
      return { descriptor: { mediaType, digest: actual.digest, size: actual.size }, manifest, raw };
    }));
  }

  /** Stores a manifest under a tag or its digest; resolves to its digest. */
  public pushManifest(repository: string, reference: string, raw: Buffer, mediaType: string, options: DeadlineOptions = {}): Promise<string> {
    return withDeadline(`pushing the manifest ${this.registry}/${repository}:${reference}`, options, async (signal) => {
      const url = this.manifestUrl(repository, reference);
      const response = await this.retried(signal, () => this.call('PUT', url, { repository, operation: 'push', headers: { 'Content-Type': mediaType }, body: raw, ok: [201], signal }));
      response.body.resume();
      const digest = digestOf(raw);
      const stated = header(response, 'docker-content-digest');
      if (stated && stated !== digest) throw new RegistryError('PUT', url, 201, 'DIGEST_MISMATCH', `sent ${digest}, the registry stored ${stated}`);
      return digest;
    });
  }

  public hasBlob(repository: string, digest: string, operation: Operation = 'pull', options: DeadlineOptions = {}): Promise<boolean> {
    return withDeadline(`looking up the blob ${digest}`, options, (signal) => this.retried(signal, () => this.headBlob(repository, digest, operation, signal)));
  }

  /**
   * The blob's byte stream; redirects are followed. One attempt: the caller verifies what it reads
   * (VerifyingStream) and retries the whole transfer when isTransient says so.
   */
  public async fetchBlob(repository: string, digest: string, options: { signal?: AbortSignal } = {}): Promise<HttpResponse> {
    return this.call('GET', this.blobUrl(repository, digest), { repository, operation: 'pull', ok: [200], signal: options.signal });
  }

  /**
   * Uploads a blob unless the repository has it: HEAD, then POST and one PUT
   * with the digest. `open` makes the content stream anew for each attempt.
   */
  public pushBlob(repository: string, descriptor: Descriptor, open: () => Readable, options: DeadlineOptions = {}): Promise<'exists' | 'uploaded'> {
    return withDeadline(`pushing the blob ${descriptor.digest}`, options, async (signal) => {
      if (await this.hasBlob(repository, descriptor.digest, 'push', { signal })) return 'exists';
      // A failed attempt starts over with a new session: a repeated POST leaves sessions behind, and
      // a PUT whose answer was lost fails on replay although the blob arrived.
      return this.retried(signal, async (attempt): Promise<'exists' | 'uploaded'> => {
        if (attempt > 1 && await this.headBlob(repository, descriptor.digest, 'push', signal)) return 'uploaded';
        const session = await this.startUpload(repository, { signal });
        await this.finishUpload(session, descriptor.digest, open, descriptor.size, { signal });
        return 'uploaded';
      });
    });
  }

  /**
   * Opens a chunked upload (the distribution spec's "pushing a blob in chunks"), for content whose
   * digest is known only at its end. Chunks go in order with `uploadChunk`; `finishUpload` closes it.
   * One attempt per request: a chunked upload that fails is abandoned, and the caller pushes the blob
   * again with `pushBlob`.
   */
  public async startUpload(repository: string, options: { signal?: AbortSignal } = {}): Promise<UploadSession> {
    const response = await this.call('POST', this.url(repository, 'blobs/uploads/'), { repository, operation: 'push', ok: [202], signal: options.signal });
    response.body.resume();
    return { repository, location: this.uploadLocation('POST', response), offset: 0 };
  }

  /** Sends the next `length` bytes of a chunked upload. */
  public async uploadChunk(session: UploadSession, body: () => Readable, length: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    const response = await this.call('PATCH', session.location, {
      ...this.uploadCall(session, length, body, true),
      ok: [202],
      signal: options.signal,
    });
    response.body.resume();
    session.location = this.uploadLocation('PATCH', response);
    session.offset += length;
  }

  /** Sends the last `length` bytes (none is fine) and closes the upload under `digest`. */
  public async finishUpload(session: UploadSession, digest: string, body: () => Readable, length: number,
    options: { signal?: AbortSignal } = {}): Promise<void> {
    assertDigest(digest, `blob of ${session.repository}`);
    const target = new URL(session.location);
    target.searchParams.set('digest', digest);
    const response = await this.call('PUT', target, { ...this.uploadCall(session, length, body), ok: [201], signal: options.signal });
    response.body.resume();
    session.offset += length;
  }

  /** Every repository of the registry (the catalog API, page by page). */
  public catalog(options: DeadlineOptions = {}): Promise<string[]> {
    return withDeadline(`listing the repositories of ${this.registry}`, options, (signal) =>
      this.listPages(new URL(`${this.base}/v2/_catalog?n=${LIST_PAGE}`), 'repositories', { repository: '', scope: 'registry:catalog:*', operation: 'pull', signal }));
  }

  /** Every tag of a repository, page by page; none for a repository the registry does not know. */
  public tags(repository: string, options: DeadlineOptions = {}): Promise<string[]> {
    return withDeadline(`listing the tags of ${this.registry}/${repository}`, options, async (signal) => {
      const url = this.url(repository, `tags/list?n=${LIST_PAGE}`);
      try {
        return await this.listPages(url, 'tags', { repository, operation: 'pull', signal });
      } catch (err) {
        if (err instanceof RegistryError && err.status === 404) return [];
        throw err;
      }
    });
  }

  /** Deletes a manifest, and with it every tag that points at it; its blobs stay until the registry's garbage collection. */
  public deleteManifest(repository: string, digest: string, options: DeadlineOptions = {}): Promise<void> {
    assertDigest(digest, `manifest of ${repository}`);
    return withDeadline(`deleting ${this.registry}/${repository}@${digest}`, options, async (signal) => {
      const url = this.manifestUrl(repository, digest);
      const response = await this.retried(signal, () => this.call('DELETE', url, { repository, operation: 'push', scope: `repository:${repository}:delete`, ok: [202, 200], signal }));
      response.body.resume();
    });
  }

  public close(): void {
    this.transport.close();
  }

  /** The names a paginated list holds: it follows each `Link: <…>; rel="next"`. */
  private async listPages(first: URL, key: 'repositories' | 'tags', options: Omit<CallOptions, 'ok'>): Promise<string[]> {
    const names: string[] = [];
    for (let url: URL | undefined = first; url;) {
      const page: URL = url;
      const response = await this.retried(options.signal, () => this.call('GET', page, { ...options, ok: [200] }));
      const body = JSON.parse((await readBody(response.body, MAX_MANIFEST_BYTES, () => new LimitError(`${key} of ${this.registry}`, 'bytes', MAX_MANIFEST_BYTES, 'a list page may hold at most 4 MiB'))).toString('utf8')) as Record<string, unknown>;
      const list = body[key];
      if (list !== null && list !== undefined && (!Array.isArray(list) || list.some((n) => typeof n !== 'string'))) {
        throw new RegistryError('GET', page, 200, 'INVALID_LIST', `"${key}" is not a list of names`);
      }
      names.push(...(list as string[] | null ?? []));
      const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(header(response, 'link') ?? '');
      url = next ? new URL(next[1], this.base) : undefined;
      if (url && url.origin !== new URL(this.base).origin) throw new RegistryError('GET', page, 200, 'INVALID_LINK', `the next page is on another origin (${url.origin})`);
    }
    return names;
  }

  private retried<T>(signal: AbortSignal | undefined, work: (attempt: number) => Promise<T>): Promise<T> {
    return retry(work, { policy: this.retryPolicy, signal });
  }

  private async headBlob(repository: string, digest: string, operation: Operation, signal?: AbortSignal): Promise<boolean> {
    const response = await this.call('HEAD', this.blobUrl(repository, digest), { repository, operation, ok: [200, 404], signal });
    response.body.resume();
    return response.status === 200;
  }

  /** A PATCH names its range; the closing PUT carries only its length, as the spec shows it. */
  private uploadCall(session: UploadSession, length: number, body: () => Readable, range = false): Omit<CallOptions, 'ok'> {
    const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream', 'Content-Length': String(length) };
    if (range) headers['Content-Range'] = `${session.offset}-${session.offset + length - 1}`;
    return {
      repository: session.repository,
      operation: 'push',
      headers,
      body: length > 0 ? body : Buffer.alloc(0),
      // Credentials stay with the registry's own origin (scheme, host and port).
      anonymous: session.location.origin !== new URL(this.base).origin,
    };
  }

  /** Where an upload session continues, from the Location of the registry's last answer. */
  private uploadLocation(method: string, response: HttpResponse): URL {
    const location = header(response, 'location');
    if (!location) throw new RegistryError(method, response.url, response.status, 'NO_LOCATION', 'the upload session has no Location header');
    return new URL(location, this.base);
  }

  private url(repository: string, path: string): URL {
    if (!REPOSITORY.test(repository)) throw new InvalidReferenceError(`registry ${this.registry}`, repository, 'a repository name');
    return new URL(`${this.base}/v2/${repository}/${path}`);
  }

  /** Digests and tags are checked before they reach a URL: `../x?y` must never become a path. */
  private manifestUrl(repository: string, reference: string): URL {
    if (!isDigest(reference) && !TAG.test(reference)) throw new InvalidReferenceError(`manifest of ${repository}`, reference, 'a tag or a sha256/sha512 digest');
    return this.url(repository, `manifests/${reference}`);
  }

  private blobUrl(repository: string, digest: string): URL {
    assertDigest(digest, `blob of ${repository}`);
    return this.url(repository, `blobs/${digest}`);
  }

  /** One request, with the auth rounds a challenge asks for; no retries. */
  private async call(method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: URL, options: CallOptions): Promise<HttpResponse> {
    const { signal } = options;
    const scopes = [options.scope ?? `repository:${options.repository}:${options.operation === 'push' ? 'pull,push' : 'pull'}`];
    let authorization = options.anonymous ? undefined : await this.authorizer.header(scopes, options.operation, signal);
    for (let round = 0; ; round++) {
      const headers = { ...options.headers, ...(authorization ? { Authorization: authorization } : {}) };
      const response = await this.transport.send({ method, url, headers, body: options.body, signal });
      if (options.ok.includes(response.status)) return response;
      if (response.status === 401 && round < 2 && !options.anonymous
        && await this.authorizer.challenged(header(response, 'www-authenticate'), scopes, options.operation, authorization)) {
        response.body.resume();
        authorization = await this.authorizer.header(scopes, options.operation, signal);
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
  const codes: string[] = [];
  const messages: string[] = [];
  try {
    const body = method === 'HEAD' ? Buffer.alloc(0) : await readBody(response.body, ERROR_BODY_LIMIT);
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: unknown; message?: unknown }[] };
    for (const error of Array.isArray(parsed.errors) ? parsed.errors : []) {
      if (typeof error?.code !== 'string') continue;
      codes.push(error.code);
      if (typeof error.message === 'string' && error.message) messages.push(codes.length > 1 ? `${error.code}: ${error.message}` : error.message);
    }
  } catch {
    response.body.resume();
  }
  const code = codes[0] ?? (response.status === 401 ? 'UNAUTHORIZED' : response.status === 404 ? 'NOT_FOUND' : 'HTTP_ERROR');
  let detail = messages.join('; ');
  if (response.status === 401 || response.status === 403) {
    detail += `${detail ? '. ' : ''}Credentials for ${registry} are missing or not allowed this: set ORAS_USER and ORAS_PASS, or log in with a docker config (--registry-config)`;
    return new AuthError(registry, method, url, response.status, code, detail, undefined, codes);
  }
  const seconds = Number(header(response, 'retry-after'));
  return new RegistryError(method, url, response.status, code, detail, Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined, codes);
}
