import { parseArgs, ParseArgsConfig } from 'node:util';
import { UsageError } from './command';
import { RUNTIME_VERSION } from './version';
import { ChainedCredentials, DockerConfigCredentials, EnvironmentCredentials } from '../oci/auth/credentials';
import { Reference } from '../oci/reference';
import { RegistryClient } from '../oci/registry-client';

/** Flags every registry command takes, named as the oras CLI names them. */
export const REGISTRY_OPTIONS = {
  'plain-http': { type: 'boolean' },
  'insecure': { type: 'boolean' },
  'concurrency': { type: 'string' },
  'registry-config': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export const REGISTRY_USAGE = [
  '  --plain-http               use HTTP instead of HTTPS',
  '  --insecure                 use HTTPS without verifying the certificate',
  '  --concurrency <n>          parallel blob transfers (default 3)',
  '  --registry-config <file>   docker config.json with credentials',
  '                             (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)',
  '  Credentials also come from ORAS_USER with ORAS_PASS, ORAS_PULL_PASS or ORAS_PUSH_PASS.',
].join('\n');

/** parseArgs that turns its errors into usage errors. */
export function parseFlags<T extends ParseArgsConfig>(config: T) {
  try {
    return parseArgs({ ...config, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
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

export interface RegistryFlags {
  'plain-http'?: boolean;
  'insecure'?: boolean;
  'concurrency'?: string;
  'registry-config'?: string;
}

/** A client for the reference's registry, configured from the common flags. */
export function clientFor(reference: Reference, flags: RegistryFlags): RegistryClient {
  if (flags['plain-http'] && flags.insecure) throw new UsageError('--plain-http and --insecure exclude each other');
  const dockerConfig = flags['registry-config'] !== undefined
    ? new DockerConfigCredentials(flags['registry-config'], true)
    : new DockerConfigCredentials();
  return new RegistryClient(reference.registry, {
    plainHttp: flags['plain-http'],
    insecure: flags.insecure,
    maxSockets: positiveInteger(flags.concurrency, '--concurrency', 3) + 2,
    userAgent: `oras-runtime/${RUNTIME_VERSION}`,
    credentials: new ChainedCredentials([new EnvironmentCredentials(), dockerConfig]),
  });
}
