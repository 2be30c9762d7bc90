import { readBody, Transport } from '../http';
import { parseChallenge } from './challenge';
import { Credential, CredentialSource, Operation } from './credentials';

const TOKEN_BODY_LIMIT = 1024 * 1024;
const DEFAULT_TOKEN_SECONDS = 60;

/** Credentials were missing or rejected: says which registry and what to do. */
export class AuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthError';
  }
}

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
  private realm?: string;
  private service?: string;
  private readonly tokens = new Map<string, Promise<CachedToken>>();
  private readonly credentials = new Map<Operation, Promise<Credential | undefined>>();

  constructor(private readonly registry: string, private readonly source: CredentialSource | undefined, private readonly transport: Transport) {}

  /** The Authorization header for a request with these scopes, if the registry asked for one before. */
  public async header(scopes: string[], operation: Operation): Promise<string | undefined> {
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
      pending = this.fetchToken(scopes, operation);
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
    if (!challenge.params.realm) throw new AuthError(`${this.registry} sent a Bearer challenge without a realm`);
    if (this.scheme !== 'bearer' || this.realm !== challenge.params.realm) this.tokens.clear();
    this.scheme = 'bearer';
    this.realm = challenge.params.realm;
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

  private async fetchToken(scopes: string[], operation: Operation): Promise<CachedToken> {
    const credential = await this.credential(operation);
    const realm = new URL(this.realm!);
    const who = credential?.username ? `user "${credential.username}"` : credential?.refreshToken ? 'the identity token' : 'anonymous access';
    let response;
    if (credential?.refreshToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: credential.refreshToken, client_id: 'oras-runtime' });
      if (this.service) form.set('service', this.service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      response = await this.transport.send({
        method: 'POST',
        url: realm,
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: Buffer.from(form.toString()),
      });
    } else {
      const url = new URL(realm);
      if (this.service) url.searchParams.set('service', this.service);
      for (const scope of scopes) url.searchParams.append('scope', scope);
      const auth = basic(credential);
      response = await this.transport.send({ method: 'GET', url, headers: auth ? { Authorization: auth } : {} });
    }
    const body = await readBody(response.body, TOKEN_BODY_LIMIT);
    if (response.status !== 200) {
      const hint = credential
        ? 'Check the credentials (ORAS_USER/ORAS_PASS or the docker config).'
        : 'The registry needs credentials: set ORAS_USER and ORAS_PASS, or log in to it in the docker config (--registry-config).';
      throw new AuthError(`token service ${realm.origin}${realm.pathname} refused ${who} for ${scopes.join(' ')} (HTTP ${response.status}). ${hint}`);
    }
    let parsed: { token?: string; access_token?: string; expires_in?: number };
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new AuthError(`token service ${realm.origin} answered without JSON`);
    }
    const token = parsed.access_token ?? parsed.token;
    if (!token) throw new AuthError(`token service ${realm.origin} answered without a token`);
    const seconds = parsed.expires_in && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_SECONDS;
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
