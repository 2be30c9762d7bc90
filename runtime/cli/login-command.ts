import { readFileSync } from 'node:fs';
import { ReadStream } from 'node:tty';
import { cancellable, Command, UsageError } from './command';
import { ORAS_OPTIONS, parseFlags, REGISTRY_OPTIONS, RegistryFlags, reporterFor, transportFor } from './registry-flags';
import { validateHost } from '../../src/artifact';
import { Authorizer } from '../oci/auth/authorizer';
import { defaultDockerConfigPath, eraseCredential, saveCredential } from '../oci/auth/credentials';
import { AuthError, CancelledError, RegistryError } from '../oci/errors';
import { Transport, TransportOptions } from '../oci/http';
import { endpointHost } from '../oci/reference';
import { retry } from '../oci/retry';

/** What `login` stores: a user name and a password (identity tokens are not supported). */
interface LoginCredential {
  readonly username: string;
  readonly password: string;
}

/** The registry turned the credentials down (401 or 403, from itself or its token service): `login` stores nothing. */
export class CredentialsRefusedError extends Error {
  public override name = 'CredentialsRefusedError';
  constructor(public readonly registry: string, public readonly username: string, public readonly status: number, refusedBy: string) {
    super(`login failed: the registry refused these credentials: ${refusedBy} answered ${status} for user "${username}"; check the user name and password`);
  }
}

/** The flags of `oras login` that we have, as oras names them. */
const LOGIN_OPTIONS = {
  'plain-http': REGISTRY_OPTIONS['plain-http'],
  'insecure': REGISTRY_OPTIONS.insecure,
  'ca-file': REGISTRY_OPTIONS['ca-file'],
  'registry-config': REGISTRY_OPTIONS['registry-config'],
  ...ORAS_OPTIONS,
} as const;

/** The flags of `oras logout`. */
const LOGOUT_OPTIONS = {
  'registry-config': REGISTRY_OPTIONS['registry-config'],
  'debug': ORAS_OPTIONS.debug,
} as const;

const CONFIG_USAGE = [
  '  --registry-config <file>   the docker config to write; given several times, the first, as in oras',
  '                             (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)',
].join('\n');

/** The one registry host a command names, checked: `host[:port]`, no repository. */
function registryArgument(positionals: string[], verb: string): string {
  if (positionals.length !== 1) throw new UsageError(`${verb} takes exactly one registry, such as localhost:5000 or registry.example.com`);
  const [registry] = positionals;
  const fail = (why: string): never => { throw new UsageError(`"${registry}" is not a registry: ${why}`); };
  if (/[/@]/.test(registry)) fail('write its host[:port] alone, without a scheme or a repository, such as registry.example.com:5000');
  validateHost(registry, fail);
  return registry;
}

/** The config file to write: the first `--registry-config`, as oras writes, else docker's. */
function configPath(flags: { 'registry-config'?: string[] }): string {
  return flags['registry-config']?.[0] ?? defaultDockerConfigPath();
}


/** A user name and password that the docker config can hold as `base64(user:password)`. */
function checkedCredential(username: string, password: string): LoginCredential {
  if (username === '') throw new UsageError('a user name is required (identity tokens are not supported)');
  if (username.includes(':')) throw new UsageError('a user name cannot contain ":": the docker config stores "user:password"');
  if (password === '') throw new UsageError('the password is empty');
  return { username, password };
}

/** The credentials to log in with: from -u with --password-stdin or -p, else asked for on a terminal. */
async function loginCredential(flags: RegistryFlags): Promise<LoginCredential> {
  const { username, password } = flags;
  const fromStdin = flags['password-stdin'];
  if (password !== undefined && fromStdin) throw new UsageError('--password and --password-stdin exclude each other');
  if ((password !== undefined || fromStdin) && username === undefined) throw new UsageError('--password and --password-stdin need --username (-u)');
  if (fromStdin) return checkedCredential(username!, readFileSync(0, 'utf8').replace(/\r?\n$/, ''));
  if (password !== undefined) {
    process.stderr.write('oras-runtime: WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
    return checkedCredential(username!, password);
  }
  if (!process.stdin.isTTY) {
    throw new UsageError('no password given, and stdin is not a terminal to ask for one: pass it with -u <user> --password-stdin');
  }
  const name = username ?? (await promptTerminal('Username: ', true)).trim();
  return checkedCredential(name, await promptTerminal('Password: ', false));
}

/**
 * Reads one line from the terminal on stdin in raw mode, echoed on stderr only when `echo` (never a
 * password). Ctrl-C cancels as SIGINT would; Ctrl-D ends the line.
 */
function promptTerminal(prompt: string, echo: boolean): Promise<string> {
  const input = process.stdin as ReadStream;
  // Raw mode first: what is typed after the prompt must never be echoed by the terminal.
  input.setRawMode(true);
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let line: string[] = [];
    const finish = (error?: Error) => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      if (error) reject(error); else resolve(line.join(''));
    };
    const onData = (chunk: Buffer) => {
      for (const char of chunk.toString('utf8')) {
        if (char === '\r' || char === '\n' || char === '\u0004') return finish();
        if (char === '\u0003') return finish(new CancelledError('SIGINT received', 'SIGINT'));
        if (char === '\u007f' || char === '\b') {
          if (line.length > 0 && echo) process.stderr.write('\b \b');
          line = line.slice(0, -1);
        } else {
          line.push(char);
          if (echo) process.stderr.write(char);
        }
      }
      return undefined;
    };
    input.on('data', onData);
    input.resume();
  });
}

/**
 * Checks credentials as `oras login` does: a GET of the registry's API root (`/v2/`) that answers its
 * challenge (Basic, or a Bearer token for no scope). 200 is a yes; 401 or 403 a CredentialsRefusedError;
 * anything else a RegistryError. Connection failures and 5xx are retried as every request is.
 */
export async function checkCredentials(
  registry: string, credential: LoginCredential, options: TransportOptions, signal?: AbortSignal,
): Promise<void> {
  const transport = new Transport(options);
  const root = new URL(`${transport.scheme}://${endpointHost(registry)}/v2/`);
  const authorizer = new Authorizer(registry, { get: async () => credential }, transport, root);
  try {
    await retry(() => getApiRoot(registry, credential, transport, authorizer, root, signal), { signal });
  } catch (err) {
    // The token service refused the user name and password.
    if (err instanceof AuthError && err.code === 'DENIED') {
      throw new CredentialsRefusedError(registry, credential.username, err.status, `the token service ${err.url.origin}${err.url.pathname}`);
    }
    throw err;
  } finally {
    transport.close();
  }
}

/** One GET of `/v2/` with the auth rounds its challenge asks for. */
async function getApiRoot(
  registry: string, credential: LoginCredential, transport: Transport, authorizer: Authorizer, root: URL, signal?: AbortSignal,
): Promise<void> {
  let authorization = await authorizer.header([], 'pull', signal);
  for (let round = 0; ; round++) {
    const response = await transport.send({ method: 'GET', url: root, headers: authorization ? { Authorization: authorization } : {}, signal });
    response.body.resume();
    if (response.status === 200) return;
    const challenge = response.headers['www-authenticate'];
    if (response.status === 401 && round < 2 && await authorizer.challenged(Array.isArray(challenge) ? challenge[0] : challenge, [], 'pull', authorization)) {
      authorization = await authorizer.header([], 'pull', signal);
      continue;
    }
    if (response.status === 401 || response.status === 403) throw new CredentialsRefusedError(registry, credential.username, response.status, `GET ${root.href}`);
    throw new RegistryError('GET', root, response.status, 'HTTP_ERROR', 'a registry answers 200 here to valid credentials; is this an OCI registry?');
  }
}

export const loginCommand: Command = {
  name: 'login',
  summary: 'check credentials with a registry, then store them in the docker config',
  usage: [
    'Usage: oras-runtime login <registry> -u <user> --password-stdin [options]',
    '',
    'Checks the credentials with the registry (GET /v2/) and only then stores them, as oras login does:',
    'with the config\'s credential helper for the registry (credHelpers, credsStore: docker-credential-<name> store),',
    'else as auths["<registry>"].auth in the config file, which keeps every other key. Prints "Login Succeeded".',
    'Without a password, asks for the user name and password when stdin is a terminal.',
    '',
    '  --username, -u <name>      registry user name',
    '  --password-stdin           read the password from stdin',
    '  --password, -p <secret>    the password; prefer --password-stdin: command lines are visible to other processes',
    CONFIG_USAGE,
    '  --plain-http               use HTTP instead of HTTPS (the default for localhost, as in oras, unless --insecure or --ca-file asks for HTTPS)',
    '  --insecure                 use HTTPS without verifying the certificate',
    '  --ca-file <file>           trust the CA certificates (PEM) in <file> too (repeatable)',
    '  --debug, -d                also report every HTTP response as a JSON line on stderr (never headers)',
    '  --verbose, -v, --no-tty    accepted as in oras',
  ].join('\n'),
  async run(args) {
    const { values, positionals } = parseFlags({ args, allowPositionals: true, options: LOGIN_OPTIONS });
    const registry = registryArgument(positionals, 'login');
    const options = transportFor(registry, values, values.debug ? reporterFor(values) : undefined);
    const credential = await loginCredential(values);
    await cancellable(async (signal) => {
      try {
        await checkCredentials(registry, credential, options, signal);
      } catch (err) {
        if (err instanceof CredentialsRefusedError || err instanceof CancelledError) throw err;
        throw new Error(`login failed: could not check the credentials with ${registry}: ${(err as Error).message}`, { cause: err });
      }
    });
    await saveCredential(configPath(values), registry, credential);
    process.stdout.write('Login Succeeded\n');
    return 0;
  },
};

export const logoutCommand: Command = {
  name: 'logout',
  summary: 'remove the credentials of a registry from the docker config',
  usage: [
    'Usage: oras-runtime logout <registry> [options]',
    '',
    'Removes the registry\'s credentials as oras logout does: with the config\'s credential helper for it',
    '(docker-credential-<name> erase), and every auths entry that names it; the rest of the file is kept.',
    'A registry without credentials is not an error.',
    '',
    CONFIG_USAGE,
    '  --debug, -d                accepted as in oras',
  ].join('\n'),
  async run(args) {
    const { values, positionals } = parseFlags({ args, allowPositionals: true, options: LOGOUT_OPTIONS });
    await eraseCredential(configPath(values), registryArgument(positionals, 'logout'));
    return 0;
  },
};
