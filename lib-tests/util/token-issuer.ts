import { createHash, createPrivateKey, KeyObject, randomBytes, sign, timingSafeEqual, X509Certificate } from 'crypto';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { createServer, IncomingMessage, Server, ServerResponse } from 'http';
import { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { requirePeer, run } from './peers';

/**
 * Which actions `user` may have on a resource. `user` is undefined for an
 * anonymous request; `type` is the scope's resource type (`repository` for
 * `repository:<name>:<actions>`, `registry` for `registry:catalog:*`).
 * Returning `'*'` allows every requested action.
 */
export type Grants = (user: string | undefined, repository: string, type: string) => string[];

export type JwtAlgorithm = 'ES256' | 'RS256';

export interface TokenIssuerOptions {
  /** user -> password accepted by HTTP Basic auth and the OAuth2 password grant. */
  readonly users: Record<string, string>;
  /** Default: every action for an authenticated user, nothing for anonymous requests. */
  readonly grants?: Grants;
  /** The `service` (and JWT `aud`) the registry is configured with. Default `oras-test-registry`. */
  readonly service?: string;
  /** The JWT `iss` claim the registry trusts. Default `oras-test-token-issuer`. */
  readonly issuer?: string;
  /** Default ES256 (P-256). */
  readonly algorithm?: JwtAlgorithm;
  /**
   * How the registry finds the verification key: `x5c` (default) puts the
   * issuer's certificate into the JWT header, `kid` puts the libtrust key ID
   * of its public key. Distribution 2.8 accepts both against `rootcertbundle`.
   */
  readonly keyHeader?: 'x5c' | 'kid';
  /** Lifetime of issued tokens in seconds (`expires_in`). Default 300. */
  readonly expiresIn?: number;
}

/** One entry of the JWT `access` claim. */
export interface ResourceAccess {
  readonly type: string;
  readonly name: string;
  readonly actions: string[];
}

/** What the issuer saw of one request to its realm. */
export interface TokenRequestRecord {
  readonly method: string;
  /** Scopes as requested (repeated `scope` parameters and space-separated lists are both split). */
  readonly scopes: string[];
  /** The authenticated user; undefined when the request was anonymous or its credentials were wrong. */
  readonly user?: string;
  /** `password` or `refresh_token` for POST; undefined for GET. */
  readonly grantType?: string;
  readonly service?: string;
  readonly clientId?: string;
  /** Whether a refresh token was asked for (GET `offline_token=true`, POST `access_type=offline`). */
  readonly offline: boolean;
  readonly status: number;
  /** The `access` claim of the issued token (empty when no token was issued). */
  readonly granted: ResourceAccess[];
}

export interface MintOptions {
  /** JWT `sub`; default: empty (anonymous). */
  readonly user?: string;
  readonly access?: ResourceAccess[];
  /** Epoch seconds used for `iat` and `nbf`; default: now. */
  readonly issuedAt?: number;
  /** Seconds from issuedAt to `exp`; default: the issuer's expiresIn. */
  readonly expiresIn?: number;
  /** Override `aud` (default: the issuer's service). */
  readonly audience?: string;
  /** Override `iss` (default: the issuer's issuer name). */
  readonly issuer?: string;
}

const DEFAULT_GRANTS: Grants = (user) => (user === undefined ? [] : ['*']);

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** RFC 4648 base32 without padding. */
function base32(data: Buffer): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const bits = [...data].map((byte) => byte.toString(2).padStart(8, '0')).join('');
  return (bits.match(/.{1,5}/g) ?? []).map((group) => alphabet[parseInt(group.padEnd(5, '0'), 2)]).join('');
}

/**
 * The libtrust key ID of a public key, as distribution computes it for the
 * certificates in `rootcertbundle`: base32 of the first 240 bits of the
 * SHA-256 of the DER SubjectPublicKeyInfo, in groups of four joined by ':'.
 */
export function libtrustKeyId(spkiDer: Buffer): string {
  const encoded = base32(createHash('sha256').update(spkiDer).digest().subarray(0, 30));
  return encoded.match(/.{1,4}/g)!.join(':');
}

/**
 * Parses one scope, `type[(class)]:name:action[,action…]`. The name may
 * contain ':' (a registry host with a port), so type is the first field and
 * the actions the last. Undefined for anything else.
 */
export function parseScope(scope: string): ResourceAccess | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  const type = scope.slice(0, first).replace(/\(.*\)$/, '');
  const name = scope.slice(first + 1, last);
  const actions = scope.slice(last + 1).split(',').map((a) => a.trim()).filter(Boolean);
  if (!name) return undefined;
  return { type, name, actions };
}

/**
 * Parses a `WWW-Authenticate: Bearer k="v",…` challenge into its parameters
 * (realm, service, scope, error). Undefined if it is not a Bearer challenge.
 */
export function parseBearerChallenge(header: string | undefined): Record<string, string> | undefined {
  if (!header) return undefined;
  const match = /^\s*Bearer\s+(.*)$/i.exec(header);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?\s*/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(match[1])) !== null && m[0] !== '') {
    params[m[1].toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
  }
  return params;
}

/** Header and claims of a JWT, without verifying it. */
export function decodeJwt(token: string): { header: Record<string, any>; claims: Record<string, any> } {
  const [header, claims] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString('utf8')),
    claims: JSON.parse(Buffer.from(claims, 'base64url').toString('utf8')),
  };
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function splitScopes(values: string[]): string[] {
  return values.flatMap((v) => v.split(' ')).filter(Boolean);
}

class HttpError extends Error {
  constructor(public readonly status: number, public readonly body: Record<string, unknown>, public readonly headers: Record<string, string> = {}) {
    super(`HTTP ${status}`);
  }
}

/**
 * A Docker registry token server (https://distribution.github.io/distribution/spec/auth/token/)
 * on 127.0.0.1: GET `/token` with optional Basic auth, and the OAuth2 POST
 * `/token` (grant_type `password` and `refresh_token`). It signs JWTs that a
 * real distribution registry configured with `auth.token` accepts (see
 * `Distribution.start({ token })`).
 */
export class TokenIssuer {
  public static async start(options: TokenIssuerOptions): Promise<TokenIssuer> {
    for (const user of Object.keys(options.users)) {
      if (user === '' || user.includes(':')) throw new Error(`TokenIssuer: invalid user name ${JSON.stringify(user)}`);
    }
    const algorithm = options.algorithm ?? 'ES256';
    const dir = mkdtempSync(join(tmpdir(), 'oras-token-issuer-'));
    try {
      const keyPath = join(dir, 'issuer.key');
      const certificatePath = join(dir, 'issuer.crt');
      const newkey = algorithm === 'ES256' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] : ['-newkey', 'rsa:2048'];
      const result = run(requirePeer('openssl'), ['req', '-x509', ...newkey, '-sha256', '-nodes', '-days', '2',
        '-subj', '/CN=oras test token issuer', '-keyout', keyPath, '-out', certificatePath]);
      if (result.status !== 0) throw new Error(`openssl could not create the token signing certificate:\n${result.output}`);
      const issuer = new TokenIssuer(options, algorithm, dir, certificatePath, createPrivateKey(readFileSync(keyPath)));
      await issuer.listen();
      return issuer;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** `http://127.0.0.1:<port>` */
  public url = '';
  /** `<url>/token`: the realm to configure in the registry. */
  public realm = '';
  public readonly service: string;
  /** The `iss` claim (the registry's `auth.token.issuer`). */
  public readonly issuer: string;
  /** Default token lifetime in seconds; tests may change it. */
  public expiresIn: number;
  /** PEM of the self-signed certificate whose key signs the tokens (the registry's rootcertbundle). */
  public readonly certificatePem: string;
  /** libtrust key ID of the signing key (the `kid` header in `keyHeader: 'kid'` mode). */
  public readonly keyId: string;
  /** Every request to the realm, in order. Tests may clear it (`requests.length = 0`). */
  public readonly requests: TokenRequestRecord[] = [];

  private readonly users: Map<string, string>;
  private readonly grants: Grants;
  private readonly keyHeader: 'x5c' | 'kid';
  private readonly certificateDer: Buffer;
  private readonly refreshTokens = new Map<string, string>();
  private readonly server: Server;

  private constructor(
    options: TokenIssuerOptions,
    public readonly algorithm: JwtAlgorithm,
    /** Scratch directory holding the key and certificate; removed by stop(). */
    public readonly dir: string,
    /** File holding `certificatePem`, to use as the registry's `rootcertbundle`. */
    public readonly certificatePath: string,
    private readonly key: KeyObject,
  ) {
    this.users = new Map(Object.entries(options.users));
    this.grants = options.grants ?? DEFAULT_GRANTS;
    this.service = options.service ?? 'oras-test-registry';
    this.issuer = options.issuer ?? 'oras-test-token-issuer';
    this.keyHeader = options.keyHeader ?? 'x5c';
    this.expiresIn = options.expiresIn ?? 300;
    this.certificatePem = readFileSync(certificatePath, 'utf8');
    const certificate = new X509Certificate(this.certificatePem);
    this.certificateDer = certificate.raw;
    this.keyId = libtrustKeyId(certificate.publicKey.export({ type: 'spki', format: 'der' }));
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(String(err));
      });
    });
  }

  private async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    this.realm = `${this.url}/token`;
  }

  /** An opaque refresh token for `user`, accepted by POST grant_type=refresh_token (a docker config.json `identitytoken`). */
  public issueRefreshToken(user: string): string {
    if (!this.users.has(user)) throw new Error(`TokenIssuer: unknown user ${user}`);
    const token = randomBytes(24).toString('base64url');
    this.refreshTokens.set(token, user);
    return token;
  }

  /** Makes a refresh token invalid. */
  public revokeRefreshToken(token: string): void {
    this.refreshTokens.delete(token);
  }

  /** Signs a registry JWT directly (for example an expired one: `issuedAt` an hour ago). */
  public mintToken(options: MintOptions = {}): string {
    const iat = options.issuedAt ?? Math.floor(Date.now() / 1000);
    const claims = {
      iss: options.issuer ?? this.issuer,
      sub: options.user ?? '',
      aud: options.audience ?? this.service, // distribution 2.8 wants a string, not a list
      exp: iat + (options.expiresIn ?? this.expiresIn),
      nbf: iat,
      iat,
      jti: randomBytes(16).toString('hex'),
      access: options.access ?? [],
    };
    const header: Record<string, unknown> = { typ: 'JWT', alg: this.algorithm };
    if (this.keyHeader === 'x5c') header.x5c = [this.certificateDer.toString('base64')];
    else header.kid = this.keyId;
    const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
    const signature = this.algorithm === 'ES256'
      ? sign('sha256', Buffer.from(input), { key: this.key, dsaEncoding: 'ieee-p1363' })
      : sign('sha256', Buffer.from(input), this.key);
    return `${input}.${base64url(signature)}`;
  }

  public async stop(): Promise<void> {
    if (this.server.listening) {
      this.server.closeAllConnections();
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The access a user gets for the requested scopes: the requested actions that `grants` allows. */
  private grant(user: string | undefined, scopes: string[]): ResourceAccess[] {
    const merged = new Map<string, ResourceAccess>();
    for (const scope of scopes) {
      const wanted = parseScope(scope);
      if (!wanted) continue;
      const allowed = this.grants(user, wanted.name, wanted.type);
      const actions = allowed.includes('*') ? wanted.actions : wanted.actions.filter((a) => allowed.includes(a));
      const key = `${wanted.type}\u0000${wanted.name}`;
      const previous = merged.get(key)?.actions ?? [];
      merged.set(key, { type: wanted.type, name: wanted.name, actions: [...new Set([...previous, ...actions])] });
    }
    return [...merged.values()].filter((a) => a.actions.length > 0);
  }

  private checkPassword(user: string, password: string): boolean {
    const expected = this.users.get(user);
    return expected !== undefined && safeEqual(expected, password);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const method = req.method ?? 'GET';
    const body = method === 'POST' ? await readBody(req) : '';
    const params = method === 'POST' ? new URLSearchParams(body ?? '') : url.searchParams;
    const scopes = splitScopes(params.getAll('scope'));
    const service = params.get('service') ?? undefined;
    const clientId = params.get('client_id') ?? undefined;
    const grantType = method === 'POST' ? (params.get('grant_type') ?? '') : undefined;
    const offline = method === 'POST' ? params.get('access_type') === 'offline' : params.get('offline_token') === 'true';
    let user: string | undefined;
    let granted: ResourceAccess[] = [];
    let status = 200;
    try {
      if (url.pathname !== '/token') throw new HttpError(404, { error: 'not_found' });
      if (method !== 'GET' && method !== 'POST') throw new HttpError(405, { error: 'method_not_allowed' }, { Allow: 'GET, POST' });
      if (body === undefined) throw new HttpError(413, { error: 'invalid_request', error_description: 'body too large' });
      if (service !== undefined && service !== this.service) {
        throw new HttpError(400, { error: 'invalid_request', error_description: `unknown service ${JSON.stringify(service)}` });
      }
      let refreshToken: string | undefined;
      if (method === 'GET') {
        const authorization = req.headers.authorization;
        if (authorization !== undefined) {
          const [name, password] = parseBasic(authorization) ?? [];
          if (name === undefined || password === undefined || !this.checkPassword(name, password)) {
            throw new HttpError(401, { errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] },
              { 'WWW-Authenticate': 'Basic realm="oras-test-token-issuer"' });
          }
          user = name;
          if (offline) refreshToken = this.issueRefreshToken(user);
        }
      } else {
        if (!req.headers['content-type']?.startsWith('application/x-www-form-urlencoded')) {
          throw new HttpError(400, { error: 'invalid_request', error_description: 'expected an application/x-www-form-urlencoded body' });
        }
        if (!clientId) throw new HttpError(400, { error: 'invalid_request', error_description: 'client_id is required' });
        if (grantType === 'password') {
          const name = params.get('username') ?? '';
          if (!this.checkPassword(name, params.get('password') ?? '')) {
            throw new HttpError(401, { error: 'invalid_grant', error_description: 'invalid username or password' });
          }
          user = name;
          if (offline) refreshToken = this.issueRefreshToken(user);
        } else if (grantType === 'refresh_token') {
          const presented = params.get('refresh_token') ?? '';
          const owner = this.refreshTokens.get(presented);
          if (owner === undefined) throw new HttpError(401, { error: 'invalid_grant', error_description: 'unknown refresh token' });
          user = owner;
          if (offline) refreshToken = presented;
        } else {
          throw new HttpError(400, { error: 'unsupported_grant_type' });
        }
      }
      granted = this.grant(user, scopes);
      const iat = Math.floor(Date.now() / 1000);
      const token = this.mintToken({ user, access: granted, issuedAt: iat });
      const issuedAt = new Date(iat * 1000).toISOString();
      const answer: Record<string, unknown> = method === 'GET'
        ? { token, access_token: token, expires_in: this.expiresIn, issued_at: issuedAt }
        : { access_token: token, scope: scopes.join(' '), expires_in: this.expiresIn, issued_at: issuedAt };
      if (refreshToken !== undefined) answer.refresh_token = refreshToken;
      send(res, 200, answer);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      status = err.status;
      user = undefined;
      granted = [];
      send(res, err.status, err.body, err.headers);
    } finally {
      this.requests.push({ method, scopes, user, grantType, service, clientId, offline, status, granted });
    }
  }
}

function parseBasic(header: string): [string, string] | undefined {
  const match = /^\s*Basic\s+(\S+)\s*$/i.exec(header);
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : [decoded.slice(0, colon), decoded.slice(colon + 1)];
}

/** The request body as text, or undefined when it is larger than 1 MiB. */
async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size <= 1024 * 1024) chunks.push(chunk as Buffer);
  }
  return size > 1024 * 1024 ? undefined : Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, status: number, body: Record<string, unknown>, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), ...headers });
  res.end(payload);
}
