import { readFileSync } from 'node:fs';
import { parseArgs, ParseArgsConfig } from 'node:util';
import { UsageError } from './command';
import { parseDuration } from './duration';
import { parseSize } from './size';
import { closest } from './suggest';
import { RUNTIME_VERSION } from './version';
import { ChainedCredentials, CredentialSource, DockerConfigCredentials, EnvironmentCredentials } from '../oci/auth/credentials';
import { DEFAULT_MIN_RATE, MinRate, TransportOptions } from '../oci/http';
import { defaultReporter, JsonReporter, Reporter } from '../oci/progress';
import { Reference } from '../oci/reference';
import { RegistryClient } from '../oci/registry-client';

/** Flags every registry command takes, named as the oras CLI names them. */
export const REGISTRY_OPTIONS = {
  'plain-http': { type: 'boolean' },
  'insecure': { type: 'boolean' },
  'concurrency': { type: 'string' },
  'registry-config': { type: 'string', multiple: true },
  'min-rate': { type: 'string' },
  'ca-file': { type: 'string', multiple: true },
} as const satisfies ParseArgsConfig['options'];

export const REGISTRY_USAGE = [
  '  --plain-http               use HTTP instead of HTTPS (the default for localhost, as in oras, unless --insecure or --ca-file asks for HTTPS)',
  '  --insecure                 use HTTPS without verifying the certificate (--plain-http wins when both are given, as in oras)',
  '  --ca-file <file>           trust the CA certificates (PEM) in <file> too, for a registry with a private CA (repeatable)',
  '  --concurrency <n>          parallel blob transfers (default 3)',
  '  --registry-config <file>   docker config.json with credentials; repeatable, each consulted in turn',
  '                             (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)',
  '  --min-rate <size>/<duration>  a transfer slower than this is stalled and tried again (default 32KiB/30s; 0 turns it off)',
  '  Credentials also come from ORAS_USER with ORAS_PASS, ORAS_PULL_PASS or ORAS_PUSH_PASS.',
].join('\n');

/** The flags of the commands people type, as the oras CLI has them; step commands, run by pods, have none of these. */
export const ORAS_OPTIONS = {
  'username': { type: 'string', short: 'u' },
  'password': { type: 'string', short: 'p' },
  'password-stdin': { type: 'boolean' },
  'debug': { type: 'boolean', short: 'd' },
  'verbose': { type: 'boolean', short: 'v' },
  'no-tty': { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

export const ORAS_USAGE = [
  '  --username, -u <name>      registry user name, with --password-stdin (or --password, which shows on the command line)',
  '  --password, -p <secret>    registry password; prefer --password-stdin: command lines are visible to other processes',
  '  --password-stdin           read the password from stdin',
  '  --debug, -d                also report every HTTP response: method, URL without query, status, milliseconds (never headers)',
  '  --verbose, -v              accepted as in oras: every event is reported anyway',
  '  --no-tty                   JSON lines on stderr even on a terminal',
].join('\n');

/** parseArgs that turns its errors into usage errors. */
export function parseFlags<T extends ParseArgsConfig>(config: T) {
  const unknown = unknownOption(config);
  if (unknown) throw new UsageError(unknown);
  try {
    return parseArgs({ ...config, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** What to say about the first option the command does not have: its name, and the closest one it has. */
function unknownOption(config: ParseArgsConfig): string | undefined {
  const options = config.options ?? {};
  const { tokens } = parseArgs({ ...config, strict: false, tokens: true });
  const unknown = tokens.find((token) => token.kind === 'option' && !Object.hasOwn(options, token.name));
  if (unknown?.kind !== 'option') return undefined;
  const known = Object.entries(options).flatMap(([name, option]) => [`--${name}`, ...(option.short ? [`-${option.short}`] : [])]);
  const suggestion = closest(unknown.rawName, known);
  return `unknown option "${unknown.rawName}"${suggestion ? `; did you mean "${suggestion}"?` : ''}`;
}

export function positiveInteger(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} must be a positive integer, not "${value}"`);
  return n;
}

/** `--annotation key=value` pairs as a map; the value may contain "=". */
export function parseAnnotations(pairs: string[] = []): Record<string, string> {
  const annotations: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--annotation "${pair}" must be key=value`);
    annotations[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return annotations;
}

/** A duration flag in milliseconds (`90s`, `5m`), or `fallback` when it is not given. */
export function durationFlag(value: string | undefined, flag: string, fallback: string): number;
export function durationFlag(value: string | undefined, flag: string): number | undefined;
export function durationFlag(value: string | undefined, flag: string, fallback?: string): number | undefined {
  const text = value ?? fallback;
  return text === undefined ? undefined : parsed(flag, () => parseDuration(text));
}

/** A size flag in bytes (`512MiB`, `10GiB`), or undefined when it is not given. */
export function sizeFlag(value: string | undefined, flag: string): number | undefined {
  return value === undefined ? undefined : parsed(flag, () => parseSize(value));
}

/** `--min-rate <size>/<duration>`, or `0` for none. */
export function minRateFlag(value: string | undefined): MinRate {
  if (value === undefined) return DEFAULT_MIN_RATE;
  if (value === '0') return { bytes: 0, windowMs: DEFAULT_MIN_RATE.windowMs };
  const [size, window, ...rest] = value.split('/');
  if (window === undefined || rest.length > 0) throw new UsageError(`--min-rate must be <size>/<duration> such as 32KiB/30s, or 0, not "${value}"`);
  const rate = { bytes: parsed('--min-rate', () => parseSize(size)), windowMs: parsed('--min-rate', () => parseDuration(window)) };
  if (rate.windowMs <= 0) throw new UsageError('--min-rate needs a window longer than 0');
  return rate;
}

function parsed<T>(flag: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

export interface RegistryFlags {
  'plain-http'?: boolean;
  'insecure'?: boolean;
  'username'?: string;
  'password'?: string;
  'password-stdin'?: boolean;
  'debug'?: boolean;
  'verbose'?: boolean;
  'no-tty'?: boolean;
  'concurrency'?: string;
  'registry-config'?: string[];
  'min-rate'?: string;
  'ca-file'?: string[];
  /** Step commands: hosts spoken to over plain HTTP (the others over HTTPS). */
  'plain-http-host'?: string[];
  /** Step commands: hosts whose certificate is not verified. */
  'insecure-host'?: string[];
}

/** The PEM of every `--ca-file`, checked: each holds one or more certificates. */
export function caFileFlag(files: string[] | undefined): string | undefined {
  if (files === undefined || files.length === 0) return undefined;
  return files.map((file) => {
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`--ca-file ${file} cannot be read: ${(err as Error).message}`);
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--ca-file ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
    return pem.endsWith('\n') ? pem : `${pem}\n`;
  }).join('');
}

/** Whether a registry host is localhost, which oras speaks to over plain HTTP unless told otherwise. */
function isLocalhost(host: string): boolean {
  return host === 'localhost' || host.startsWith('localhost:');
}

/** `-u` with `-p` or `--password-stdin`: credentials that come before every other source. */
function flagCredentials(flags: RegistryFlags): CredentialSource | undefined {
  const { username, password } = flags;
  const fromStdin = flags['password-stdin'];
  if (password !== undefined && fromStdin) throw new UsageError('--password and --password-stdin exclude each other');
  if (username === undefined) {
    if (password !== undefined || fromStdin) throw new UsageError('--password and --password-stdin need --username (-u)');
    return undefined;
  }
  if (password === undefined && !fromStdin) throw new UsageError('--username needs --password-stdin (or --password)');
  // As `docker login --password-stdin`: one line, its newline dropped.
  const secret = fromStdin ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : password!;
  if (secret === '') throw new UsageError('the password read from stdin is empty');
  if (!fromStdin) process.stderr.write('oras-runtime: WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  const credential = { username, password: secret };
  return { get: async () => credential };
}

/** A client for the reference's registry, configured from the common flags. */
/**
 * How the flags say to reach `host`: the scheme, TLS verification and extra
 * CAs, the user agent, and --debug's response events through `reporter`.
 */
export function transportFor(host: string, flags: RegistryFlags, reporter?: Reporter): TransportOptions {
  if (flags['ca-file'] !== undefined && (flags['plain-http'] || flags.insecure)) {
    throw new UsageError('--ca-file verifies HTTPS certificates: it goes with neither --plain-http nor --insecure');
  }
  // As oras: --plain-http wins over --insecure; localhost is plain HTTP unless --insecure or --ca-file asks for HTTPS.
  const plainHttp = flags['plain-http'] ?? ((flags['plain-http-host'] ?? []).includes(host) || (isLocalhost(host) && !flags.insecure && !flags['ca-file']));
  return {
    plainHttp,
    insecure: !plainHttp && (flags.insecure || (flags['insecure-host'] ?? []).includes(host)),
    ca: caFileFlag(flags['ca-file']),
    userAgent: `oras-runtime/${RUNTIME_VERSION}`,
    onResponse: flags.debug && reporter
      ? (method, url, status, ms) => reporter.event('http', { method, url: url.href, status, ms })
      : undefined,
  };
}

export function clientFor(reference: Reference, flags: RegistryFlags, reporter?: Reporter): RegistryClient {
  const configs = flags['registry-config'] ?? [];
  const dockerConfigs = configs.length > 0 ? configs.map((file) => new DockerConfigCredentials(file, true)) : [new DockerConfigCredentials()];
  const fromFlags = flagCredentials(flags);
  return new RegistryClient(reference.registry, {
    ...transportFor(reference.registry, flags, reporter),
    maxSockets: positiveInteger(flags.concurrency, '--concurrency', 3) + 2,
    minRate: minRateFlag(flags['min-rate']),
    credentials: new ChainedCredentials([...(fromFlags ? [fromFlags] : []), new EnvironmentCredentials(), ...dockerConfigs]),
  });
}

/** The reporter the flags ask for: JSON lines with --no-tty or --debug, else TTY progress on a terminal. */
export function reporterFor(flags: RegistryFlags): Reporter {
  return flags['no-tty'] || flags.debug ? new JsonReporter(process.stderr) : defaultReporter();
}
