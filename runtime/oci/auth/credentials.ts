import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';

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

/** The key oras and docker store the credentials of `registry` under: Docker Hub's is its v1 URL. */
export function serverAddressOf(registry: string): string {
  return registry === 'docker.io' ? 'https://index.docker.io/v1/' : registry;
}

/** The host[:port] a docker config `auths` key names (keys may be URLs). */
function hostOfKey(key: string): string {
  const withoutScheme = key.replace(/^[a-z]+:\/\//i, '');
  return withoutScheme.split('/')[0].toLowerCase();
}

/** Whether an `auths` key names `registry`: keys may be URLs, and docker.io has its aliases. */
function namesRegistry(key: string, registry: string): boolean {
  const wanted = registry.toLowerCase();
  const keys = wanted === 'docker.io' ? DOCKER_HUB_KEYS : [wanted];
  return keys.includes(hostOfKey(key)) || keys.includes(key);
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
    this.config ??= readDockerConfig(this.path, !this.explicit);
    return this.config;
  }

  public async get(registry: string): Promise<Credential | undefined> {
    const config = await this.load();
    const found = credentialFromAuths(config, registry, `registry config ${this.path}`);
    if (found) return found;
    const helper = helperFor(config, registry);
    return helper ? credentialFromHelper(helper, registry, this.env) : undefined;
  }
}

/** A whole docker config: the parts that hold credentials, and whatever else it holds. */
type DockerConfigFile = DockerConfig & Record<string, unknown>;

/** Reads and parses a docker config; a missing file is an empty config when `missingIsEmpty`, else an error. */
function readDockerConfig(path: string, missingIsEmpty: boolean): Promise<DockerConfigFile> {
  return readFile(path, 'utf8').then(
    (text) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        // JSON.parse quotes the text around the fault, and that may be a password: never echo it.
        throw new Error(`registry config ${path} is not valid JSON`);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`registry config ${path} is not a JSON object`);
      return parsed as DockerConfigFile;
    },
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' && missingIsEmpty) return {};
      throw new Error(`cannot read registry config ${path}: ${err.message}`);
    },
  );
}

/** The credential helper the config names for `registry`: its `credHelpers` entry, else `credsStore`. */
function helperFor(config: DockerConfig, registry: string): string | undefined {
  const helper = config.credHelpers?.[registry.toLowerCase()] ?? config.credsStore;
  return helper || undefined;
}

/**
 * Stores a user name and password for `registry` as `oras login` does: with the config's credential
 * helper for it (`docker-credential-<name> store`, the secret on stdin), else as
 * `auths["<registry>"].auth` in the file. Every other key of the file is kept; an `auths` entry that
 * names the registry under another key (`https://host/`) is replaced, since it would be read first.
 * A missing file (and its directory) is created. Resolves to where the credentials went.
 */
export async function saveCredential(
  path: string, registry: string, credential: { username: string; password: string }, env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const config = await readDockerConfig(path, true);
  const helper = helperFor(config, registry);
  const address = serverAddressOf(registry);
  if (helper) {
    const input = JSON.stringify({ ServerURL: address, Username: credential.username, Secret: credential.password });
    await runCredentialHelper(helper, 'store', input, registry, env);
    if (removeAuths(config, registry, path)) await writeDockerConfig(path, config);
    return `docker-credential-${helper}`;
  }
  removeAuths(config, registry, path);
  authsOf(config, path)[address] = { auth: Buffer.from(`${credential.username}:${credential.password}`).toString('base64') };
  await writeDockerConfig(path, config);
  return path;
}

/**
 * Removes the credentials of `registry` as `oras logout` does: with the config's credential helper
 * for it (`erase`), and every `auths` entry that names it; the rest of the file is kept. A registry
 * without credentials is no error, and a file with nothing to remove is not rewritten.
 */
export async function eraseCredential(path: string, registry: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const config = await readDockerConfig(path, true);
  const helper = helperFor(config, registry);
  if (helper) await runCredentialHelper(helper, 'erase', serverAddressOf(registry), registry, env);
  if (removeAuths(config, registry, path)) await writeDockerConfig(path, config);
}

/** The config's `auths` object, made when there is none. */
function authsOf(config: DockerConfigFile, path: string): Record<string, unknown> {
  config.auths ??= {};
  if (typeof config.auths !== 'object' || config.auths === null || Array.isArray(config.auths)) {
    throw new Error(`registry config ${path}: "auths" is not a JSON object`);
  }
  return config.auths;
}

/** Removes every `auths` entry that names `registry`; whether there was one. */
function removeAuths(config: DockerConfigFile, registry: string, path: string): boolean {
  const auths = authsOf(config, path);
  const keys = Object.keys(auths).filter((key) => namesRegistry(key, registry));
  for (const key of keys) Reflect.deleteProperty(auths, key);
  return keys.length > 0;
}

/**
 * Replaces a docker config atomically: a temporary file beside it, synced, then renamed over it. A
 * symlinked config is written where the link points; an existing file keeps its mode, a new one is
 * 0600 in a directory made 0700 if needed.
 */
async function writeDockerConfig(path: string, config: DockerConfigFile): Promise<void> {
  const target = await realpath(path).catch(() => path);
  const temp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await mkdir(dirname(target), { recursive: true, mode: 0o700 });
    const mode = await stat(target).then((s) => s.mode & 0o777, () => 0o600);
    const file = await open(temp, 'wx', 0o600);
    try {
      await file.writeFile(`${JSON.stringify(config, null, '\t')}\n`);
      await file.chmod(mode);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, target);
  } catch (err) {
    await rm(temp, { force: true });
    throw new Error(`cannot write registry config ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The credentials an `auths` entry of a docker config holds for `registry`
 * (keys may be URLs; docker.io has its aliases): `identitytoken`,
 * `registrytoken`, `auth` (base64 of user:password) or `username`/`password`.
 * `source` names the config in errors.
 */
export function credentialFromAuths(config: DockerConfig, registry: string, source: string): Credential | undefined {
  for (const [key, entry] of Object.entries(config.auths ?? {})) {
    if (!namesRegistry(key, registry)) continue;
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

/** The programs of the docker credential helper protocol, and what each is given on stdin. */
type HelperAction = 'get' | 'store' | 'erase';

/** A credential helper that could not run, failed, or answered what the protocol does not allow. */
export class CredentialHelperError extends Error {
  public override name = 'CredentialHelperError';
  constructor(public readonly program: string, public readonly action: HelperAction, message: string) {
    super(message);
  }
}

/**
 * Runs `docker-credential-<helper> <action>` with `input` on stdin: the registry for `get` and
 * `erase`, the credentials JSON for `store` (a secret never goes on a command line). Resolves to its
 * stdout, or to undefined for the protocol's "credentials not found" answer to `get` or `erase`.
 * Its output is never quoted in errors: it may hold a secret.
 */
function runCredentialHelper(
  helper: string, action: HelperAction, input: string, registry: string, env: NodeJS.ProcessEnv,
): Promise<string | undefined> {
  const program = `docker-credential-${helper}`;
  const fail = (message: string) => new CredentialHelperError(program, action, `credential helper ${program} ${message}`);
  return new Promise((resolve, reject) => {
    const child = spawn(program, [action], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', (e) => reject(fail(`could not run: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) return resolve(out);
      // The protocol's "no credentials" answer is this exact line with a non-zero exit.
      const notFound = out.trim() === CREDENTIALS_NOT_FOUND || err.trim() === CREDENTIALS_NOT_FOUND;
      if (notFound && action !== 'store') return resolve(undefined);
      return reject(fail(`${action === 'get' ? '' : `${action} `}failed (exit ${code}) for ${registry}`));
    });
    // A helper may exit without reading its input (EPIPE): its exit code and output decide.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** The credentials a helper's `get` prints, or undefined (anonymous access) when it has none. */
async function credentialFromHelper(helper: string, registry: string, env: NodeJS.ProcessEnv): Promise<Credential | undefined> {
  const out = await runCredentialHelper(helper, 'get', registry, registry, env);
  if (out === undefined) return undefined;
  try {
    const { Username, Secret } = JSON.parse(out) as { Username: string; Secret: string };
    return Username === '<token>' ? { refreshToken: Secret } : { username: Username, password: Secret };
  } catch {
    const program = `docker-credential-${helper}`;
    throw new CredentialHelperError(program, 'get', `credential helper ${program} printed no JSON credentials for ${registry}`);
  }
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
