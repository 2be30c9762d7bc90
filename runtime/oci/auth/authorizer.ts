import { parseChallenge } from './challenge';
import { Credential, CredentialSource, Operation } from './credentials';
import { AuthError, RegistryError } from '../errors';
import { HttpResponse, readBody, Transport } from '../http';
import { isTransient } from '../retry';

const TOKEN_BODY_LIMIT = 1024 * 1024;
const DEFAULT_TOKEN_SECONDS = 60;

interface CachedToken {
  readonly token: string;
  readonly expiresAt: number;
}

/**
 * Answers a registry's auth challenges: Basic with the user's credentials, or
 * the Bearer token flow (realm, service, scope), caching one token per scope
 * set until shortly before it expires. Parallel requests share one fetch.
 */
export class Authorizer {
  private scheme?: 'basic' | 'bearer';
  private realm?: URL;
  private service?: string;
  private readonly tokens = new Map<string, Promise<CachedToken>>();
  private readonly credentials = new Map<Operation, Promise<Credential | undefined>>();

  /** `base`: the registry's API root (`https://host/v2/`), named in errors. */
  constructor(
    private readonly registry: string,
    private readonly source: CredentialSource | undefined,
    private readonly transport: Transport,
    private readonly base: URL,
  ) {}

  /** The Authorization header for a request with these scopes, if the registry asked for one before. */
  public async header(scopes: string[], operation: Operation, signal?: AbortSignal): Promise<string | undefined> {
    const credential = await this.credential(operation);
    if (credential?.accessToken) return `Bearer ${credential.accessToken}`;
    if (this.scheme === 'basic') return basic(credential);
    if (this.scheme !== 'bearer') return undefined;
    const key = scopeKey(scopes);
    let pending = this.tokens.get(key);
    if (pending) {
      const cached = await pending.catch(() => undefined);
      if (!cached || cached.expiresAt <= Date.now()) pending = undefined;
    }
    if (!pending) {
      pending = this.fetchToken(scopes, operation, signal);
      this.tokens.set(key, pending);
      pending.catch(() => this.tokens.get(key) === pending && this.tokens.delete(key));
    }
    return `Bearer ${(await pending).token}`;
  }

  /**
   * Learns from a 401 answer. Resolves to true when a retry with another
   * header can succeed, false when nothing more can be tried.
   */
  public async challenged(wwwAuthenticate: string | undefined, scopes: string[], operation: Operation, sentHeader?: string): Promise<boolean> {
    const challenge = parseChallenge(wwwAuthenticate);
    if (!challenge) return false;
    if (challenge.scheme === 'basic') {
      this.scheme = 'basic';
      const next = basic(await this.credential(operation));
      return next !== undefined && next !== sentHeader;
    }
    const realm = this.realmOf(challenge.params.realm);
    if (this.scheme !== 'bearer' || this.realm?.href !== realm.href) this.tokens.clear();
    this.scheme = 'bearer';
    this.realm = realm;
    this.service = challenge.params.service;
    if (sentHeader === undefined) return true;
    const key = scopeKey(scopes);
    const cached = await this.tokens.get(key)?.catch(() => undefined);
    if (cached && `Bearer ${cached.token}` === sentHeader) {
      // The token we sent was refused: forget it and report the refusal.
      this.tokens.delete(key);
      return false;
    }
    // Another request renewed the token meanwhile, or this one was not ours.
    return cached !== undefined || !sentHeader.startsWith('Bearer ');
  }

  private credential(operation: Operation): Promise<Credential | undefined> {
    let credential = this.credentials.get(operation);
    if (!credential) {
      credential = this.source ? this.source.get(this.registry, operation) : Promise.resolve(undefined);
      this.credentials.set(operation, credential);
    }
    return credential;
  }

  /** The token service's URL from a Bearer challenge: absolute http(s), else an AuthError naming it and the registry. */
  private realmOf(text: string | undefined): URL {
    let realm: URL | undefined;
    try {
      realm = text ? new URL(text) : undefined;
    } catch {
      realm = undefined;
    }
    if (realm?.protocol === 'https:' || realm?.protocol === 'http:') return realm;
    const problem = text ? `names the token realm ${JSON.stringify(text)}, which is not an http(s) URL` : 'has no realm';
    throw new AuthError(this.registry, 'GET', this.base, 401, 'INVALID_REALM', '',
      `${this.registry} asked for a Bearer token, but its challenge ${problem}; the registry's auth configuration is broken`);
  }

  private async fetchToken(scopes: string[], operation: Operation, signal?: AbortSignal): Promise<CachedToken> {
    const credential = await this.credential(operation);
    const realm = this.realm!;
    const who = credential?.username ? `user "${credential.username}"` : credential?.refreshToken ? 'the identity token' : 'anonymous access';
    const method = credential?.refreshToken ? 'POST' : 'GET';
    let response: HttpResponse;
    if (credential?.refreshToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: credential.refreshToken, client_id: 'oras-runtime' });
      if (this.service) form.set('service', this.service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      response = await this.transport.send({
        method: 'POST',
        url: realm,
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: Buffer.from(form.toString()),
        signal,
      });
    } else {
      const url = new URL(realm);
      if (this.service) url.searchParams.set('service', this.service);
      for (const scope of scopes) url.searchParams.append('scope', scope);
      const auth = basic(credential);
      response = await this.transport.send({ method: 'GET', url, headers: auth ? { Authorization: auth } : {}, signal });
    }
    const body = await readBody(response.body, TOKEN_BODY_LIMIT);
    const fail = (code: string, message: string) => new AuthError(this.registry, method, realm, response.status, code, '', message);
    if (response.status !== 200) {
      const busy = new RegistryError(method, realm, response.status, 'TOKEN_SERVICE_UNAVAILABLE', `token service of ${this.registry}`);
      if (isTransient(busy)) throw busy;
      const hint = credential
        ? 'Check the credentials (ORAS_USER/ORAS_PASS or the docker config).'
        : 'The registry needs credentials: set ORAS_USER and ORAS_PASS, or log in to it in the docker config (--registry-config).';
      throw fail('DENIED', `token service ${realm.origin}${realm.pathname} refused ${who} for ${scopes.join(' ')} (HTTP ${response.status}). ${hint}`);
    }
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(body.toString('utf8')) ?? {};
    } catch {
      throw fail('TOKEN_INVALID', `token service ${realm.origin} answered without JSON`);
    }
    const token = parsed.access_token ?? parsed.token;
    if (typeof token !== 'string' || token === '') throw fail('TOKEN_INVALID', `token service ${realm.origin} answered without a token`);
    const seconds = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_SECONDS;
    // Renew 10% (at most 30 s) before expiry so a token never lapses mid-request.
    return { token, expiresAt: Date.now() + seconds * 1000 - Math.min(30_000, seconds * 100) };
  }
}

function basic(credential: Credential | undefined): string | undefined {
  if (credential?.username === undefined || credential.password === undefined) return undefined;
  return `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
}

function scopeKey(scopes: string[]): string {
  return [...scopes].sort().join(' ');
}
