import { InjectionCaBundle, InjectionSettings, PodSpecJson } from '../../src/injection';
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
  'oras-env', 'docker-config', 'oras-container', 'unpack', 'debug', 'plain-http', 'insecure', 'input-timeout', 'failure-uri',
  'entrypoint', 'oras-entrypoint', 'ca-configmap', 'ca-secret',
]);

/** The registry Service the prototype assumed when a pod names none. */
export const DEFAULT_CACHE = 'oras';

/** The prototype's scripts to download at start: nothing is downloaded here. */
const IGNORED = ['entrypoint', 'oras-entrypoint'];

/** The injection settings, and what the pod's author should know (AdmissionResponse warnings). */
export interface AnnotatedSettings {
  readonly settings: InjectionSettings;
  readonly warnings: string[];
}

/** Whether an image is the oras CLI (the prototype's `oras-container`), which cannot run the step commands. */
function isOrasCli(image: string): boolean {
  const name = image.split('@')[0].replace(/:[^/:]*$/, '');
  return name.split('/').pop() === 'oras';
}

function flag(value: string | undefined, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new AnnotationError(`${PREFIX}${name} must be "true" or "false", not "${value}"`);
}

/**
 * Turns the operator's annotations on a pod (or a Job's pod template) into
 * injection settings, as the compatibility table of DESIGN.md says. An
 * unknown annotation under the prefix is an error, so that a typo does not
 * silently do nothing; what the prototype accepted but cannot mean anything
 * here is admitted with a warning.
 */
export function settingsFromAnnotations(annotations: Record<string, string>, spec: PodSpecJson, defaults: WebhookDefaults): AnnotatedSettings {
  const get = (name: string): string | undefined => annotations[`${PREFIX}${name}`];
  const warnings: string[] = [];
  for (const key of Object.keys(annotations)) {
    if (!key.startsWith(PREFIX)) continue;
    const name = key.slice(PREFIX.length);
    if (!KNOWN.has(name) && !/^input-uri_\d+$/.test(name)) {
      throw new AnnotationError(`unknown annotation ${key}; the known ones are ${[...KNOWN].map((k) => PREFIX + k).join(', ')} and ${PREFIX}input-uri_<n>`);
    }
  }
  for (const name of IGNORED) {
    if (get(name) !== undefined) warnings.push(`${PREFIX}${name} is ignored: nothing is downloaded when the pod starts, the runtime image has what the prototype's script did`);
  }

  const external = get('registry');
  const cache = get('oras-cache') ?? (external ? undefined : DEFAULT_CACHE);
  if (get('oras-cache') && external) throw new AnnotationError(`set either ${PREFIX}oras-cache (a registry in this namespace) or ${PREFIX}registry (another host), not both`);
  if (cache && !/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(cache)) throw new AnnotationError(`${PREFIX}oras-cache "${cache}" must be the name of a Service (a DNS label)`);
  const host = cache ? `${cache}:${CACHE_PORT}` : external!;
  const insecure = flag(get('insecure'), 'insecure', false);
  const caBundle = caBundleOf(get('ca-configmap'), get('ca-secret'));
  // An oras-cache speaks plain HTTP unless the pod says it has a certificate (unverifiable, or from a private CA).
  const plainHttp = flag(get('plain-http'), 'plain-http', cache !== undefined && !insecure && !caBundle);
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

  const containers = pickContainers(spec, get('container'), warnings);
  // Relative paths resolve when the container runs, in its working dir (the image's WORKDIR when the pod sets none).
  const pathOf = (name: string): string => get(name) ?? '.';

  const inputKeys = Object.keys(annotations)
    .filter((key) => key === `${PREFIX}input-uri` || (key.startsWith(PREFIX) && /^input-uri_\d+$/.test(key.slice(PREFIX.length))))
    .sort((a, b) => (Number(a.split('_')[1] ?? -1) - Number(b.split('_')[1] ?? -1)));
  const inputPath = pathOf('input-path');
  const inputs = inputKeys.map((key) => ({ reference: resolve(key.slice(PREFIX.length), annotations[key]), path: inputPath }));

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

  let runtimeImage = get('oras-container') ?? defaults.runtimeImage;
  if (isOrasCli(runtimeImage)) {
    warnings.push(`${PREFIX}oras-container "${runtimeImage}" is the oras CLI, which cannot run the pull and push steps; `
      + `the runtime image ${defaults.runtimeImage} is used instead. Remove the annotation to silence this warning.`);
    runtimeImage = defaults.runtimeImage;
  }

  const settings: InjectionSettings = {
    runtimeImage,
    registry: { host, plainHttp, insecure, envSecret: get('oras-env'), credentialsSecret: get('docker-config'), ...(caBundle ? { caBundle } : {}) },
    inputs,
    output: outputUri ? {
      reference: resolve('output-uri', outputUri),
      path: pathOf('output-path'),
      unpack,
      stdoutFile: pipe,
      failureReference: failureUri ? resolve('failure-uri', failureUri) : undefined,
    } : undefined,
    containers,
    placement: 'copy',
    inputTimeoutSeconds,
    startTimeoutSeconds: defaults.startTimeoutSeconds,
    debug,
  };
  return { settings, warnings };
}

/** The app containers: those `container` lists (comma-separated), else the first, with a warning when there are several. */
function pickContainers(spec: PodSpecJson, list: string | undefined, warnings: string[]): string[] {
  const names = (list ?? '').split(',').map((name) => name.trim()).filter((name) => name !== '');
  const all = spec.containers.map((c) => c.name);
  if (names.length === 0) {
    if (all.length > 1) {
      warnings.push(`the pod has ${all.length} containers (${all.map((n) => `"${n}"`).join(', ')}) and no ${PREFIX}container: `
        + `"${all[0]}", the first, runs the command with the inputs and output. Name the app container(s) in ${PREFIX}container to silence this warning.`);
    }
    return all.slice(0, 1);
  }
  for (const name of names) {
    if (!all.includes(name)) throw new AnnotationError(`${PREFIX}container names "${name}", but the pod has ${all.map((n) => `"${n}"`).join(', ')}`);
  }
  return names;
}

/** `ca-configmap` or `ca-secret`: `<name>` (key ca.crt) or `<name>/<key>`. */
function caBundleOf(configMap: string | undefined, secret: string | undefined): InjectionCaBundle | undefined {
  if (configMap !== undefined && secret !== undefined) throw new AnnotationError(`set either ${PREFIX}ca-configmap or ${PREFIX}ca-secret, not both`);
  const value = configMap ?? secret;
  if (value === undefined) return undefined;
  const annotation = `${PREFIX}${configMap !== undefined ? 'ca-configmap' : 'ca-secret'}`;
  const match = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)(?:\/([-._a-zA-Z0-9]{1,253}))?$/.exec(value);
  if (!match) throw new AnnotationError(`${annotation} "${value}" must be <name> (the key ca.crt) or <name>/<key> of a ${configMap !== undefined ? 'ConfigMap' : 'Secret'} in this namespace`);
  const key = match[3] ?? 'ca.crt';
  return configMap !== undefined ? { configMapName: match[1], key } : { secretName: match[1], key };
}
