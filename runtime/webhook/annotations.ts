import { ContainerSpec, InjectionSettings, PodSpecJson } from '../../src/injection';
import { parseReference } from '../oci/reference';

/** The prefix of the oras-operator's annotations, kept for compatibility. */
export const PREFIX = 'oras.converged-computing.github.io/';

/** Port of an `oras-cache` registry Service. */
const CACHE_PORT = 5000;

export interface WebhookDefaults {
  /** The runtime image injected unless `oras-container` names another. */
  readonly runtimeImage: string;
  readonly inputTimeoutSeconds: number;
  readonly startTimeoutSeconds: number;
}

/** Annotations that cannot be turned into a prepared pod: the message says what to change. */
export class AnnotationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AnnotationError';
  }
}

/** Whether any annotation asks for ORAS. */
export function wantsOras(annotations: Record<string, string> | undefined): boolean {
  return Object.keys(annotations ?? {}).some((key) => key.startsWith(PREFIX));
}

const KNOWN = new Set([
  'oras-cache', 'registry', 'input-uri', 'output-uri', 'input-path', 'output-path', 'output-pipe', 'container',
  'oras-env', 'oras-container', 'unpack', 'debug', 'plain-http', 'insecure', 'input-timeout', 'failure-uri',
]);

function flag(value: string | undefined, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new AnnotationError(`${PREFIX}${name} must be "true" or "false", not "${value}"`);
}

/**
 * Turns the operator's annotations on a pod (or a Job's pod template) into
 * injection settings. Every annotation of the table is read; an unknown one
 * under the prefix is an error, so that a typo does not silently do nothing.
 */
export function settingsFromAnnotations(annotations: Record<string, string>, spec: PodSpecJson, defaults: WebhookDefaults): InjectionSettings {
  const get = (name: string): string | undefined => annotations[`${PREFIX}${name}`];
  for (const key of Object.keys(annotations)) {
    if (!key.startsWith(PREFIX)) continue;
    const name = key.slice(PREFIX.length);
    if (!KNOWN.has(name) && !/^input-uri_\d+$/.test(name)) {
      throw new AnnotationError(`unknown annotation ${key}; the known ones are ${[...KNOWN].map((k) => PREFIX + k).join(', ')} and ${PREFIX}input-uri_<n>`);
    }
  }

  const cache = get('oras-cache');
  const external = get('registry');
  if (cache && external) throw new AnnotationError(`set either ${PREFIX}oras-cache (a registry in this namespace) or ${PREFIX}registry (another host), not both`);
  if (!cache && !external) throw new AnnotationError(`set ${PREFIX}oras-cache to the name of the registry Service in this namespace, or ${PREFIX}registry to a registry host`);
  if (cache && !/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(cache)) throw new AnnotationError(`${PREFIX}oras-cache "${cache}" must be the name of a Service (a DNS label)`);
  const host = cache ? `${cache}:${CACHE_PORT}` : external!;
  const insecure = flag(get('insecure'), 'insecure', false);
  // An oras-cache speaks plain HTTP unless the pod says it has an (unverifiable) certificate.
  const plainHttp = flag(get('plain-http'), 'plain-http', cache !== undefined && !insecure);
  if (plainHttp && insecure) {
    throw new AnnotationError(`${PREFIX}plain-http and ${PREFIX}insecure exclude each other: remove insecure for a registry without TLS, `
      + 'or plain-http for one whose certificate cannot be verified');
  }

  const resolve = (name: string, text: string): string => {
    try {
      return parseReference(text, host).text;
    } catch (err) {
      throw new AnnotationError(`${PREFIX}${name}: ${(err as Error).message}`);
    }
  };

  const containerName = get('container');
  const app = pickContainer(spec, containerName);
  const workdir = (app.workingDir as string | undefined);
  const pathOf = (name: string): string => {
    const value = get(name) ?? workdir;
    if (!value) {
      throw new AnnotationError(`${PREFIX}${name} is not set and container "${app.name}" has no workingDir; `
        + `set ${PREFIX}${name} (or the container's workingDir) to an absolute directory`);
    }
    return value;
  };

  const inputKeys = Object.keys(annotations)
    .filter((key) => key === `${PREFIX}input-uri` || (key.startsWith(PREFIX) && /^input-uri_\d+$/.test(key.slice(PREFIX.length))))
    .sort((a, b) => (Number(a.split('_')[1] ?? -1) - Number(b.split('_')[1] ?? -1)));
  const inputs = inputKeys.map((key) => ({ reference: resolve(key.slice(PREFIX.length), annotations[key]), path: '' }));
  const inputPath = inputs.length > 0 ? pathOf('input-path') : undefined;

  const outputUri = get('output-uri');
  const pipe = get('output-pipe');
  if (pipe && !outputUri) throw new AnnotationError(`${PREFIX}output-pipe copies stdout into the output, but ${PREFIX}output-uri is not set`);
  const failureUri = get('failure-uri');
  if (failureUri && !outputUri) throw new AnnotationError(`${PREFIX}failure-uri needs ${PREFIX}output-uri`);

  const unpack = flag(get('unpack'), 'unpack', true);
  const debug = flag(get('debug'), 'debug', false);
  const timeout = get('input-timeout');
  if (timeout !== undefined && !/^[0-9]{1,16}$/.test(timeout)) {
    throw new AnnotationError(`${PREFIX}input-timeout must be a whole number of seconds written in digits, such as "1800", not "${timeout}"`);
  }
  const inputTimeoutSeconds = timeout === undefined ? defaults.inputTimeoutSeconds : Number(timeout);

  return {
    runtimeImage: get('oras-container') ?? defaults.runtimeImage,
    registry: { host, plainHttp, insecure, envSecret: get('oras-env') },
    inputs: inputs.map((input) => ({ ...input, path: inputPath! })),
    output: outputUri ? {
      reference: resolve('output-uri', outputUri),
      path: pathOf('output-path'),
      unpack,
      stdoutFile: pipe,
      failureReference: failureUri ? resolve('failure-uri', failureUri) : undefined,
    } : undefined,
    container: containerName ?? app.name,
    inputTimeoutSeconds,
    startTimeoutSeconds: defaults.startTimeoutSeconds,
    debug,
  };
}

function pickContainer(spec: PodSpecJson, name: string | undefined): ContainerSpec {
  if (name !== undefined) {
    const found = spec.containers.find((c) => c.name === name);
    if (!found) throw new AnnotationError(`${PREFIX}container names "${name}", but the pod has ${spec.containers.map((c) => `"${c.name}"`).join(', ')}`);
    return found;
  }
  if (spec.containers.length !== 1) {
    throw new AnnotationError(`the pod has ${spec.containers.length} containers (${spec.containers.map((c) => `"${c.name}"`).join(', ')}); `
      + `name the one that runs the command in ${PREFIX}container`);
  }
  return spec.containers[0];
}
