import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** What a client may present to one registry. */
export interface Credential {
  readonly username?: string;
  readonly password?: string;
  /** OAuth2 refresh token (docker config `identitytoken`). */
  readonly refreshToken?: string;
  /** A bearer token to send as is (docker config `registrytoken`). */
  readonly accessToken?: string;
}

/** Whether credentials are wanted for reading or for writing. */
export type Operation = 'pull' | 'push';

export interface CredentialSource {
  /** Credentials for `registry` (host[:port]), or undefined for anonymous. */
  get(registry: string, operation: Operation): Promise<Credential | undefined>;
}

/** The docker config location: $DOCKER_CONFIG/config.json, else ~/.docker/config.json. */
export function defaultDockerConfigPath(): string {
  return join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
}

const DOCKER_HUB_KEYS = ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];

/** The host[:port] a docker config `auths` key names (keys may be URLs). */
function hostOfKey(key: string): string {
  const withoutScheme = key.replace(/^[a-z]+:\/\//i, '');
  return withoutScheme.split('/')[0].toLowerCase();
}

/** The parts of a docker config.json that hold credentials. */
export interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string; registrytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/**
 * Credentials from a docker `config.json`: `auths` entries (`auth`,
 * `username`/`password`, `identitytoken`, `registrytoken`), then credential
 * helpers (`credHelpers`, `credsStore`) run as `docker-credential-<name> get`.
 * A missing file means anonymous access; an unreadable one is an error.
 */
export class DockerConfigCredentials implements CredentialSource {
  private config?: Promise<DockerConfig>;

  /**
   * @param path the config file
   * @param explicit the user named the file: a missing file is an error, not anonymous access
   * @param env environment of credential helpers (PATH finds them)
   */
  constructor(
    public readonly path: string = defaultDockerConfigPath(),
    private readonly explicit = false,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  private load(): Promise<DockerConfig> {
    this.config ??= readFile(this.path, 'utf8').then(
      (text) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          // JSON.parse quotes the text around the fault, and that may be a password: never echo it.
          throw new Error(`registry config ${this.path} is not valid JSON`);
        }
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`registry config ${this.path} is not a JSON object`);
        return parsed as DockerConfig;
      },
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' && !this.explicit) return {};
        throw new Error(`cannot read registry config ${this.path}: ${err.message}`);
      },
    );
    return this.config;
  }

  public async get(registry: string): Promise<Credential | undefined> {
    const config = await this.load();
    const found = credentialFromAuths(config, registry, `registry config ${this.path}`);
    if (found) return found;
    const helper = config.credHelpers?.[registry.toLowerCase()] ?? config.credsStore;
    return helper ? runCredentialHelper(helper, registry, this.env) : undefined;
  }
}

/**
 * The credentials an `auths` entry of a docker config holds for `registry`
 * (keys may be URLs; docker.io has its aliases): `identitytoken`,
 * `registrytoken`, `auth` (base64 of user:password) or `username`/`password`.
 * `source` names the config in errors.
 */
export function credentialFromAuths(config: DockerConfig, registry: string, source: string): Credential | undefined {
  const wanted = registry.toLowerCase();
  const keys = wanted === 'docker.io' ? DOCKER_HUB_KEYS : [wanted];
  for (const [key, entry] of Object.entries(config.auths ?? {})) {
    if (!keys.includes(hostOfKey(key)) && !keys.includes(key)) continue;
    if (entry.identitytoken) return { refreshToken: entry.identitytoken, username: entry.username };
    if (entry.registrytoken) return { accessToken: entry.registrytoken };
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw new Error(`${source}: the "auth" of ${key} is not base64 of "user:password"`);
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password };
  }
  return undefined;
}

/** docker-credential-helpers' ErrCredentialsNotFound: the wire value of "no credentials for this registry". */
const CREDENTIALS_NOT_FOUND = 'credentials not found in native keychain';

function runCredentialHelper(helper: string, registry: string, env: NodeJS.ProcessEnv): Promise<Credential | undefined> {
  const program = `docker-credential-${helper}`;
  return new Promise((resolve, reject) => {
    const child = spawn(program, ['get'], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', (e) => reject(new Error(`credential helper ${program} could not run: ${e.message}`)));
    child.on('close', (code) => {
      if (code !== 0) {
        // The protocol's "no credentials" answer is this exact line with a non-zero exit: anonymous access.
        if (out.trim() === CREDENTIALS_NOT_FOUND || err.trim() === CREDENTIALS_NOT_FOUND) return resolve(undefined);
        return reject(new Error(`credential helper ${program} failed (exit ${code}) for ${registry}`));
      }
      try {
        const { Username, Secret } = JSON.parse(out) as { Username: string; Secret: string };
        resolve(Username === '<token>' ? { refreshToken: Secret } : { username: Username, password: Secret });
      } catch {
        reject(new Error(`credential helper ${program} printed no JSON credentials for ${registry}`));
      }
    });
    // A helper may exit without reading the registry name (EPIPE): its exit code and output decide.
    child.stdin.on('error', () => undefined);
    child.stdin.end(registry);
  });
}

/**
 * The operator prototype's variables: ORAS_USER with ORAS_PASS, or
 * ORAS_PULL_PASS / ORAS_PUSH_PASS for one direction. They apply to every registry.
 */
export class EnvironmentCredentials implements CredentialSource {
  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  public async get(_registry: string, operation: Operation): Promise<Credential | undefined> {
    const username = this.env.ORAS_USER;
    const password = (operation === 'pull' ? this.env.ORAS_PULL_PASS : this.env.ORAS_PUSH_PASS) ?? this.env.ORAS_PASS;
    if (!username || password === undefined) return undefined;
    return { username, password };
  }
}

/** The first source that has credentials wins. */
export class ChainedCredentials implements CredentialSource {
  constructor(private readonly sources: CredentialSource[]) {}

  public async get(registry: string, operation: Operation): Promise<Credential | undefined> {
    for (const source of this.sources) {
      const credential = await source.get(registry, operation);
      if (credential) return credential;
    }
    return undefined;
  }
}
