/**
 * The pod mutation that prepares a pod for ORAS: one pure function used by
 * OrasWorkflowStep at synth time and by the webhook at admission time.
 *
 * What it adds:
 * - when there are inputs, a container `oras-pull` (runtime image), listed
 *   first so that the kubelet starts it before the app container: it waits
 *   for every input up to a deadline, pulls it into the volume mounted at the
 *   input's path, and then leaves a ready marker (or the reason it failed) in
 *   the shared state volume. It is no init container: the kubelet would
 *   notice its end only at its next relist, up to a second later;
 * - the wrapper around the app container's argv, passed inline
 *   (`/bin/sh -c "$WRAPPER_SCRIPT" oras-wrap … -- argv`): it waits for the
 *   ready marker, then runs the argv as given, forwards signals, and records
 *   and returns the exit code;
 * - when there is an output, a container `oras-push` that waits for the
 *   app's outcome and pushes the output directory only after exit code 0.
 *   The pod shares one process namespace, so the wrapper notices an oras-pull
 *   killed without a word, and oras-push an app killed without a clean exit:
 *   the pod still finishes.
 *
 * @internal Not part of the jsii API; the runtime imports it directly.
 */

import { hardenedSecurityContext } from './hardening';
import { PROVENANCE } from './provenance';
import { RUNTIME_MOUNT, WRAPPER_SCRIPT_IN_SPEC } from './wrapper';

export { PROVENANCE };

/** The subset of a Kubernetes container this transform reads and writes. */
export interface ContainerSpec {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  envFrom?: unknown[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
  [key: string]: unknown;
}

/** The subset of a Kubernetes pod spec this transform reads and writes. */
export interface PodSpecJson {
  containers: ContainerSpec[];
  initContainers?: ContainerSpec[];
  volumes?: { name: string; [key: string]: unknown }[];
  restartPolicy?: string;
  shareProcessNamespace?: boolean;
  [key: string]: unknown;
}

/** How to reach one registry: its connection settings and its credentials. */
export interface InjectionConnection {
  /** host[:port] of the registry. */
  readonly host: string;
  readonly plainHttp: boolean;
  readonly insecure: boolean;
  /** Secret of type kubernetes.io/dockerconfigjson, mounted and passed as `--registry-config` to the containers that reach this registry. */
  readonly credentialsSecret?: string;
  /** CA certificates trusted besides the system's: one key of a ConfigMap or a Secret. */
  readonly caBundle?: InjectionCaBundle;
}

/** The step's registry: the output's, and the inputs' unless an input says otherwise. */
export interface InjectionRegistry extends InjectionConnection {
  /** Secret whose keys become env of the runtime containers (ORAS_USER, ORAS_PASS, …). */
  readonly envSecret?: string;
}

/** Where a CA bundle is: exactly one of the ConfigMap and the Secret. */
export interface InjectionCaBundle {
  readonly configMapName?: string;
  readonly secretName?: string;
  readonly key: string;
}

export interface InjectionInput {
  /** Full artifact reference. */
  readonly reference: string;
  /** Directory in the app container; inputs that share a path share one directory. */
  readonly path: string;
  /**
   * How to reach the input's registry. Default: the step's registry when the
   * reference names its host, else HTTPS verified with the system's CAs and
   * no credentials.
   */
  readonly registry?: InjectionConnection;
}

export interface InjectionOutput {
  /** Full artifact reference to push to after exit code 0. */
  readonly reference: string;
  /** Directory in the app container whose entries are pushed; it may be an input's directory too. */
  readonly path: string;
  /** Push directories with the unpack annotation (default true). */
  readonly unpack?: boolean;
  /** Where a failed command's output goes; unset means a failed command pushes nothing. */
  readonly failureReference?: string;
  /** File that receives the command's stdout (also kept in the logs): a name in the output directory, or an absolute path. */
  readonly stdoutFile?: string;
  /** Annotations of the pushed manifest (provenance). */
  readonly annotations?: Record<string, string>;
}

/**
 * - 'mount' (typed steps): volumes are mounted at the input and output
 *   paths, which are absolute. Nothing is copied, but a volume hides what
 *   the image has at that path.
 * - 'copy' (the webhook, as the operator prototype did): the paths may be
 *   relative to the directory the container runs in, which is known only
 *   then. The wrapper copies the staged inputs in before the command and
 *   the output out after it, so nothing the image keeps is hidden. The
 *   output may be a file or a directory, pushed under its own name (its
 *   contents for `.`), and the stdout file is relative to the working dir.
 */
export type Placement = 'mount' | 'copy';

export interface InjectionSettings {
  /** The oras-runtime image. */
  readonly runtimeImage: string;
  readonly registry: InjectionRegistry;
  readonly inputs: readonly InjectionInput[];
  readonly output?: InjectionOutput;
  /**
   * The app containers, each wrapped; default the first container. With
   * several, the inputs reach each of them, and the output (theirs merged)
   * is pushed only when every one of them exits 0.
   */
  readonly containers?: readonly string[];
  /** How the inputs and the output reach the app containers; default 'mount'. */
  readonly placement?: Placement;
  /** How long oras-pull waits for each input to exist. */
  readonly inputTimeoutSeconds: number;
  /** How long oras-push waits for the app container to start, and the wrapper for oras-pull. */
  readonly startTimeoutSeconds: number;
  /** Log the resolved settings from the runtime containers. */
  readonly debug?: boolean;
  /**
   * Which shell runs the wrapper in the app containers: 'image' is the
   * image's /bin/sh (the operator prototype's way); 'runtime' is a static
   * busybox that an init container copies from the runtime image, so that
   * images without a shell (distroless, scratch) work, and the wrapper's
   * tools (sleep, cp, mkfifo, tee) are busybox's. Default 'image'.
   */
  readonly shell?: 'image' | 'runtime';
  /**
   * The Jobs this step moves on (they start suspended): after a success
   * oras-push resumes each dependent whose inputs now all exist; after a
   * failure it labels every Job downstream as blocked. oras-push then gets
   * the pod's service account token, which no other container sees.
   */
  readonly advance?: InjectionAdvance;
  /**
   * Memoize the output: the hex digest of what defines the command (image,
   * argv, env, paths). oras-pull adds the inputs' content to it, and reuses
   * an output made for the same key instead of running the command.
   * Needs an output; default: not memoized.
   */
  readonly memoKey?: string;
}

/** The Jobs a step resumes or blocks when it ends. */
export interface InjectionAdvance {
  /** Each direct dependent's Job name, and every in-workflow input it needs. */
  readonly resume: readonly { readonly job: string; readonly needs: readonly string[] }[];
  /** Every Job downstream, to label as blocked when this step fails. */
  readonly block: readonly string[];
}

export const PULL_CONTAINER = 'oras-pull';
/** The projected service account token, CA and namespace of oras-push, where the Kubernetes client looks for them. */
export const KUBE_API_VOLUME = 'oras-kube-api';
const KUBE_API_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';
/** The init container that copies the runtime's static shell into the pod (InjectionSettings.shell 'runtime'). */
export const SHELL_CONTAINER = 'oras-shell';
export const SHELL_VOLUME = 'oras-shell';
export const PUSH_CONTAINER = 'oras-push';
/** The emptyDir the runtime containers and the wrapper share their state in. */
export const RUNTIME_VOLUME = 'oras-runtime';
export const OUTPUT_VOLUME = 'oras-output';
/** Volumes `<prefix>-<n>`: one per credentials Secret. */
export const AUTH_VOLUME = 'oras-registry-auth';
export const SCRATCH_VOLUME = 'oras-scratch';
/** Volumes `<prefix>-<n>`: one per CA bundle. */
export const CA_VOLUME = 'oras-ca';
/** Reserved for the runtime in every container: no input, output or stdout file may be under it. */
export { RUNTIME_MOUNT };
/**
 * Where RUNTIME_VOLUME is mounted: the state directory is the emptyDir itself,
 * which the kubelet makes writable by every uid (0777), whichever container starts first.
 */
export const STATE_DIR = `${RUNTIME_MOUNT}/state`;
/** What the wrapper is called (its `$0`). */
export const WRAPPER_NAME = 'oras-wrap';
/** The pod annotation that makes `kubectl logs` and `kubectl exec` pick the app container, not oras-pull, which comes first. */
export const DEFAULT_CONTAINER_ANNOTATION = 'kubectl.kubernetes.io/default-container';
/** Where oras-pull writes the inputs, one directory per input path. */
const PULL_MOUNT = '/oras-inputs';
/** Where oras-push reads the output. */
const PUSH_MOUNT = '/oras-output';
/** With placement 'copy': the one volume oras-pull stages the inputs in, and where the app containers see it. */
export const INPUTS_VOLUME = 'oras-inputs';
const INPUTS_MOUNT = `${RUNTIME_MOUNT}/inputs`;
/** With placement 'copy': where the app containers copy the output for oras-push, one directory each. */
const OUTPUT_STAGE = `${RUNTIME_MOUNT}/output`;
const AUTH_MOUNT = '/oras-registry-auth';
const CA_MOUNT = '/oras-ca';

/** The uid the runtime containers run as (the runtime image's user). */
export const RUNTIME_UID = 65532;

/** The longest input or start timeout: a year is "no deadline" for a Job, and it still renders as plain digits. */
export const MAX_TIMEOUT_SECONDS = 365 * 24 * 3600;

/** The setting an InjectionError is about, so that each caller can name it in its own terms. */
export type InjectionSetting = 'container' | 'registry' | 'inputPath' | 'outputPath' | 'stdoutFile' | 'inputTimeout' | 'startTimeout';

/** A pod or its settings cannot be prepared: the message says what to change. */
export class InjectionError extends Error {
  constructor(message: string, public readonly setting?: InjectionSetting) {
    super(message);
    this.name = 'InjectionError';
  }
}

/** Where the init container SHELL_CONTAINER puts the runtime's static busybox, for app images without a shell. */
const SHELL_DIR = `${RUNTIME_MOUNT}/bin`;
const STATIC_SHELL = `${SHELL_DIR}/busybox`;
/** The static busybox in the runtime image (runtime/Dockerfile). */
const RUNTIME_BUSYBOX = '/app/busybox';
const WRAPPED_COMMAND_MARK = ['/bin/sh', '-c', WRAPPER_SCRIPT_IN_SPEC, WRAPPER_NAME];
const STATIC_WRAPPED_COMMAND_MARK = [STATIC_SHELL, 'sh', '-c', WRAPPER_SCRIPT_IN_SPEC, WRAPPER_NAME];
const WRAPPED_MARKS = [WRAPPED_COMMAND_MARK, STATIC_WRAPPED_COMMAND_MARK];
/**
 * What earlier versions wrote: an init container that installed the wrapper as a file. Such a pod
 * (say one that a Job prepared by an earlier webhook creates now) is prepared too: it names the
 * earlier runtime image, and runs as it did.
 */
const LEGACY_PULL_ARGS_MARK = ['step', 'pull', '--state', STATE_DIR, '--wrapper', `${RUNTIME_MOUNT}/bin/oras-wrap`];
const LEGACY_COMMAND_MARK = ['/bin/sh', `${RUNTIME_MOUNT}/bin/oras-wrap`];

function hasPrefix(list: unknown[] | undefined, prefix: string[]): boolean {
  return list !== undefined && prefix.every((item, i) => list[i] === item);
}

/**
 * Whether the pod spec was already prepared (the transform is idempotent).
 * The mark is what injectOras writes, not a name alone: a container whose
 * command is this version's wrapper script, with the runtime volume mounted
 * at the state directory, and that volume (or what earlier versions wrote).
 * A user's container that merely borrows a reserved name is no mark.
 */
export function isInjected(spec: PodSpecJson): boolean {
  const mounts = (c: ContainerSpec, path: string) => (c.volumeMounts ?? []).some((m) => m.name === RUNTIME_VOLUME && m.mountPath === path);
  const legacyPull = (spec.initContainers ?? [])
    .find((c) => c.name === PULL_CONTAINER && hasPrefix(c.args, LEGACY_PULL_ARGS_MARK) && mounts(c, RUNTIME_MOUNT));
  return (spec.volumes ?? []).some((v) => v.name === RUNTIME_VOLUME)
    && spec.containers.some((c) => (WRAPPED_MARKS.some((mark) => hasPrefix(c.command, mark)) && mounts(c, STATE_DIR))
      || (legacyPull !== undefined && hasPrefix(c.command, LEGACY_COMMAND_MARK)));
}

/**
 * Returns a prepared copy of `spec`; the argument is not modified. A spec
 * that is already prepared is returned unchanged (as a copy).
 */
export function injectOras(spec: PodSpecJson, settings: InjectionSettings): PodSpecJson {
  const result: PodSpecJson = JSON.parse(JSON.stringify(spec));
  if (isInjected(result)) return result;
  validate(result, settings);

  const copy = settings.placement === 'copy';
  const launchers = appContainers(result, settings.containers);
  const several = launchers.length > 1;
  const memo = settings.memoKey !== undefined && settings.output !== undefined;
  // A memoized step's oras-pull may store the output's manifest again: it reaches the output's registry too.
  const pullTargets = [...settings.inputs, ...(memo ? [{ reference: settings.output!.reference, registry: settings.registry }] : [])];
  const access = new RegistryAccess(pullConnections(pullTargets, settings.registry), settings.output ? settings.registry : undefined);
  const debugArgs = settings.debug ? ['--debug'] : [];

  // Inputs that share a path share one directory; with volumes, an output in an input's directory uses that volume too.
  const key = (path: string) => (copy ? normalizeAnywhere(path) : normalize(path));
  const paths = [...new Set(settings.inputs.map((i) => key(i.path)))];
  const inputVolume = (path: string) => (copy ? INPUTS_VOLUME : `oras-input-${paths.indexOf(key(path))}`);
  const output = settings.output;
  const sharedOutput = !copy && output !== undefined && paths.includes(normalize(output.path));
  const outputVolume = sharedOutput ? inputVolume(output.path) : OUTPUT_VOLUME;
  const runtimeContainers = paths.length > 0 || output !== undefined;
  const staged = (index: number) => `${INPUTS_MOUNT}/${index}`;

  const volumes = [
    { name: RUNTIME_VOLUME, emptyDir: {} },
    // The runtime containers have a read-only root: tarballs and temporary files go here.
    ...(runtimeContainers ? [{ name: SCRATCH_VOLUME, emptyDir: {} }] : []),
    ...[...new Set(paths.map(inputVolume))].map((name) => ({ name, emptyDir: {} })),
    ...(output && !sharedOutput ? [{ name: OUTPUT_VOLUME, emptyDir: {} }] : []),
    ...access.volumes(),
  ];
  result.volumes = [...(result.volumes ?? []), ...volumes];

  const runtimeMounts = [{ name: SCRATCH_VOLUME, mountPath: '/tmp' }];
  const runtimeBase = (name: string): ContainerSpec => ({
    name,
    image: settings.runtimeImage,
    imagePullPolicy: 'IfNotPresent',
    ...(settings.registry.envSecret ? { envFrom: [{ secretRef: { name: settings.registry.envSecret } }] } : {}),
    securityContext: hardenedSecurityContext({ user: RUNTIME_UID, group: RUNTIME_UID }),
    resources: {
      requests: { cpu: '50m', memory: '64Mi' },
      limits: { cpu: '1', memory: '512Mi' },
    },
  });

  const pull: ContainerSpec | undefined = paths.length === 0 && !memo ? undefined : {
    ...runtimeBase(PULL_CONTAINER),
    args: [
      'step', 'pull',
      '--state', STATE_DIR,
      '--timeout', `${settings.inputTimeoutSeconds}s`,
      ...settings.inputs.flatMap((input) => ['--input', `${input.reference}=${PULL_MOUNT}/${paths.indexOf(key(input.path))}`]),
      ...(memo ? [
        '--memo-key', settings.memoKey!,
        '--memo-to', settings.output!.reference,
        ...Object.entries(settings.output!.annotations ?? {}).flatMap(([k, value]) => ['--annotation', `${k}=${value}`]),
      ] : []),
      ...access.args('pull'),
      ...debugArgs,
    ],
    volumeMounts: [
      { name: RUNTIME_VOLUME, mountPath: STATE_DIR },
      ...(copy
        ? [{ name: INPUTS_VOLUME, mountPath: PULL_MOUNT }]
        : paths.map((path) => ({ name: inputVolume(path), mountPath: `${PULL_MOUNT}/${paths.indexOf(path)}` }))),
      ...runtimeMounts,
      ...access.mounts('pull'),
    ],
  };
  // First: the kubelet starts containers in order, so the pull (and Node's start) runs while the app container is created.
  if (pull) result.containers.unshift(pull);
  // A restarted app container would run the command twice and confuse oras-push.
  result.restartPolicy = 'Never';

  const staticShell = settings.shell === 'runtime';
  if (staticShell) {
    result.volumes.push({ name: SHELL_VOLUME, emptyDir: {} });
    result.initContainers = [...(result.initContainers ?? []), {
      ...runtimeBase(SHELL_CONTAINER),
      command: [RUNTIME_BUSYBOX, 'cp', RUNTIME_BUSYBOX, STATIC_SHELL],
      resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { cpu: '100m', memory: '32Mi' } },
      volumeMounts: [{ name: SHELL_VOLUME, mountPath: SHELL_DIR }],
    }];
  }

  for (const app of launchers) {
    const argv = [...(app.command ?? []), ...(app.args ?? [])];
    const stdoutFile = output?.stdoutFile;
    app.command = [
      ...(staticShell ? STATIC_WRAPPED_COMMAND_MARK : WRAPPED_COMMAND_MARK),
      '--state', STATE_DIR,
      ...(several ? ['--id', app.name] : []),
      ...(stdoutFile ? ['--stdout', copy ? stdoutFile : normalize(stdoutFile.startsWith('/') ? stdoutFile : `${output!.path}/${stdoutFile}`)] : []),
      ...(pull ? ['--await-pull', `${settings.startTimeoutSeconds}`] : []),
      ...(copy ? paths.flatMap((path, index) => ['--copy-in', `${staged(index)}=${path}`]) : []),
      ...(copy && output ? ['--copy-out', `${output.path}=${OUTPUT_STAGE}/${app.name}`] : []),
      '--',
      ...argv,
    ];
    delete app.args;
    app.volumeMounts = [
      ...(app.volumeMounts ?? []),
      { name: RUNTIME_VOLUME, mountPath: STATE_DIR },
      ...(staticShell ? [{ name: SHELL_VOLUME, mountPath: SHELL_DIR, readOnly: true }] : []),
      ...(copy
        ? [
          ...(paths.length > 0 ? [{ name: INPUTS_VOLUME, mountPath: INPUTS_MOUNT, readOnly: true }] : []),
          ...(output ? [{ name: OUTPUT_VOLUME, mountPath: OUTPUT_STAGE }] : []),
        ]
        : [
          ...paths.map((path) => ({ name: inputVolume(path), mountPath: path, readOnly: !(sharedOutput && path === normalize(output!.path)) })),
          ...(output && !sharedOutput ? [{ name: OUTPUT_VOLUME, mountPath: normalize(output.path) }] : []),
        ]),
    ];
  }
  // The wrapper watches oras-pull's process, and oras-push the wrapper's, to notice one that died without a word.
  if (runtimeContainers) result.shareProcessNamespace = true;

  if (!output) return result;
  const advancing = settings.advance !== undefined && (settings.advance.resume.length > 0 || settings.advance.block.length > 0);
  const outputDirs = copy ? launchers.map((app) => `${PUSH_MOUNT}/${app.name}`) : [PUSH_MOUNT];
  result.containers.push({
    ...runtimeBase(PUSH_CONTAINER),
    args: [
      'step', 'push',
      '--state', STATE_DIR,
      '--start-timeout', `${settings.startTimeoutSeconds}s`,
      ...outputDirs.flatMap((dir) => ['--dir', dir]),
      ...(several ? launchers.flatMap((app) => ['--launcher', app.name]) : []),
      '--to', output.reference,
      ...(output.failureReference ? ['--failure-to', output.failureReference] : []),
      ...(output.unpack === false ? ['--no-unpack'] : []),
      ...(memo ? ['--memoize'] : []),
      ...(advancing ? [
        ...settings.advance!.resume.flatMap((d) => ['--resume', `${d.job}=${d.needs.join(',')}`]),
        ...settings.advance!.block.flatMap((job) => ['--block', job]),
      ] : []),
      ...Object.entries(output.annotations ?? {}).flatMap(([k, value]) => ['--annotation', `${k}=${value}`]),
      ...access.args('push'),
      ...debugArgs,
    ],
    volumeMounts: [
      { name: RUNTIME_VOLUME, mountPath: STATE_DIR, readOnly: true },
      { name: outputVolume, mountPath: PUSH_MOUNT, readOnly: true },
      ...runtimeMounts,
      ...access.mounts('push'),
      ...(advancing ? [{ name: KUBE_API_VOLUME, mountPath: KUBE_API_MOUNT, readOnly: true }] : []),
    ],
  });
  if (advancing) {
    result.volumes.push({
      name: KUBE_API_VOLUME,
      projected: {
        sources: [
          { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
          { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
          { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
        ],
      },
    });
  }
  return result;
}

/** An absolute path with ".", ".." and extra slashes resolved, as the container runtime resolves a mount path. */
function normalize(path: string): string {
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '..') parts.pop();
    else if (part !== '' && part !== '.') parts.push(part);
  }
  return `/${parts.join('/')}`;
}

function isRuntimePath(path: string): boolean {
  const resolved = normalize(path);
  return resolved === RUNTIME_MOUNT || resolved.startsWith(`${RUNTIME_MOUNT}/`);
}

/** The path as the user wrote it, and what it resolves to when that differs. */
function quote(path: string): string {
  const plain = path.length > 1 ? path.replace(/\/+$/, '') : path;
  return normalize(path) === plain ? `"${path}"` : `"${path}" (that is "${normalize(path)}")`;
}

/** Each registry oras-pull reaches, by host: the input's own settings, else the step's registry for its host, else HTTPS with no credentials. */
function pullConnections(targets: readonly Pick<InjectionInput, 'reference' | 'registry'>[], step: InjectionConnection): InjectionConnection[] {
  const byHost = new Map<string, { reference: string; connection: InjectionConnection }>();
  for (const input of targets) {
    const host = referenceHost(input.reference);
    const connection = input.registry ?? (host === step.host ? step : { host, plainHttp: false, insecure: false });
    const known = byHost.get(host);
    if (known && !sameConnection(known.connection, connection)) {
      throw new InjectionError(`${known.reference} and ${input.reference} come from one host, but with different connection settings `
        + 'or credentials. Take both from one OrasRegistry.', 'registry');
    }
    byHost.set(host, known ?? { reference: input.reference, connection });
  }
  return [...byHost.values()].map((known) => known.connection);
}

/** The registry host of a full reference: its first path segment. */
function referenceHost(reference: string): string {
  return reference.split('/')[0];
}

function sameConnection(a: InjectionConnection, b: InjectionConnection): boolean {
  return a.plainHttp === b.plainHttp && a.insecure === b.insecure && a.credentialsSecret === b.credentialsSecret
    && bundleKey(a.caBundle) === bundleKey(b.caBundle);
}

/** What identifies a CA bundle: its source and key. */
function bundleKey(bundle: InjectionCaBundle | undefined): string {
  return JSON.stringify([bundle?.configMapName, bundle?.secretName, bundle?.key]);
}

/**
 * What the runtime containers need to reach their registries: a volume per
 * credentials Secret and per CA bundle, and for each container the mounts
 * and flags of the registries it talks to (oras-pull the inputs', oras-push
 * the output's). Settings are per host, so one pod may read an HTTPS
 * registry and write to a plain-HTTP one; credentials are files, never arguments.
 */
class RegistryAccess {
  private readonly secrets: string[];
  /** One per distinct bundle, by bundleKey. */
  private readonly bundles: Map<string, InjectionCaBundle>;

  constructor(private readonly pull: InjectionConnection[], private readonly push: InjectionConnection | undefined) {
    const all = [...pull, ...(push ? [push] : [])];
    this.secrets = [...new Set(all.flatMap((c) => (c.credentialsSecret ? [c.credentialsSecret] : [])))];
    this.bundles = new Map(all.flatMap((c) => (c.caBundle ? [[bundleKey(c.caBundle), c.caBundle] as const] : [])));
  }

  public volumes(): { name: string; [key: string]: unknown }[] {
    return [
      ...this.secrets.map((secretName, i) => ({ name: `${AUTH_VOLUME}-${i}`, secret: { secretName, items: [{ key: '.dockerconfigjson', path: 'config.json' }] } })),
      ...[...this.bundles.values()].map((bundle, i) => ({ name: `${CA_VOLUME}-${i}`, ...caVolumeSource(bundle) })),
    ];
  }

  public mounts(container: 'pull' | 'push'): { name: string; mountPath: string; readOnly: boolean }[] {
    const { secrets, bundles } = this.used(container);
    return [
      ...secrets.map((i) => ({ name: `${AUTH_VOLUME}-${i}`, mountPath: `${AUTH_MOUNT}/${i}`, readOnly: true })),
      ...bundles.map((i) => ({ name: `${CA_VOLUME}-${i}`, mountPath: `${CA_MOUNT}/${i}`, readOnly: true })),
    ];
  }

  public args(container: 'pull' | 'push'): string[] {
    const { connections, secrets, bundles } = this.used(container);
    return [
      ...connections.flatMap((c) => [...(c.plainHttp ? ['--plain-http-host', c.host] : []), ...(c.insecure ? ['--insecure-host', c.host] : [])]),
      ...secrets.flatMap((i) => ['--registry-config', `${AUTH_MOUNT}/${i}/config.json`]),
      ...bundles.flatMap((i) => ['--ca-file', `${CA_MOUNT}/${i}/ca.crt`]),
    ];
  }

  /** The connections of one container, and the indexes of the Secrets and bundles they use. */
  private used(container: 'pull' | 'push') {
    const connections = container === 'pull' ? this.pull : (this.push ? [this.push] : []);
    const secrets = [...new Set(connections.flatMap((c) => (c.credentialsSecret ? [this.secrets.indexOf(c.credentialsSecret)] : [])))];
    const keys = [...this.bundles.keys()];
    const bundles = [...new Set(connections.flatMap((c) => (c.caBundle ? [keys.indexOf(bundleKey(c.caBundle))] : [])))];
    return { connections, secrets, bundles };
  }
}

/** The volume source of a CA bundle: its one key as ca.crt. */
export function caVolumeSource(ca: InjectionCaBundle): Record<string, unknown> {
  const items = [{ key: ca.key, path: 'ca.crt' }];
  return ca.secretName !== undefined ? { secret: { secretName: ca.secretName, items } } : { configMap: { name: ca.configMapName, items } };
}

/**
 * A relative or absolute path with ".", ".." (where it can be resolved) and
 * extra slashes resolved, so that two spellings of one input path share a
 * directory: "inputs/", "./inputs" and "inputs" are "inputs"; "" is ".".
 */
function normalizeAnywhere(path: string): string {
  if (path.startsWith('/')) return normalize(path);
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '..' && parts.length > 0 && parts[parts.length - 1] !== '..') parts.pop();
    else if (part !== '' && part !== '.') parts.push(part);
  }
  return parts.join('/') || '.';
}

function appContainers(spec: PodSpecJson, names: readonly string[] | undefined): ContainerSpec[] {
  if (names === undefined || names.length === 0) {
    if (spec.containers.length !== 1) {
      throw new InjectionError(`the pod has ${spec.containers.length} containers (${spec.containers.map((c) => `"${c.name}"`).join(', ')}); `
        + 'say which one runs the command with the container setting.', 'container');
    }
    return [spec.containers[0]];
  }
  const repeated = names.find((name, i) => names.indexOf(name) !== i);
  if (repeated !== undefined) throw new InjectionError(`the container "${repeated}" is named twice in the container setting; name each once`, 'container');
  return names.map((name) => {
    const found = spec.containers.find((c) => c.name === name);
    if (!found) {
      throw new InjectionError(`there is no container "${name}" to wrap; the pod has ${spec.containers.map((c) => `"${c.name}"`).join(', ')}. `
        + 'Name one of them in the container setting.', 'container');
    }
    return found;
  });
}

function validate(spec: PodSpecJson, settings: InjectionSettings): void {
  if (!spec.containers || spec.containers.length === 0) throw new InjectionError('the pod has no containers');
  const apps = appContainers(spec, settings.containers);
  for (const app of apps) {
    if (!app.command || app.command.length === 0) {
      throw new InjectionError(`container "${app.name}" has no command. The wrapper must know the full argv, and an image's ENTRYPOINT `
        + 'cannot be read when the pod is prepared: set command (and args) explicitly.');
    }
  }
  const taken = new Set([...spec.containers, ...(spec.initContainers ?? [])].map((c) => c.name));
  for (const reserved of [PULL_CONTAINER, PUSH_CONTAINER, SHELL_CONTAINER]) {
    if (taken.has(reserved)) throw new InjectionError(`the container name "${reserved}" is reserved for cdk8s-oras; rename that container`);
  }
  for (const volume of spec.volumes ?? []) {
    if (volume.name.startsWith('oras-')) throw new InjectionError(`the volume name "${volume.name}" uses the prefix "oras-", which cdk8s-oras reserves; rename it`);
  }
  for (const connection of [settings.registry, ...settings.inputs.flatMap((i) => (i.registry ? [i.registry] : []))]) checkConnection(connection);
  const copy = settings.placement === 'copy';
  const check = (path: string, what: 'input' | 'output') => {
    const setting = what === 'input' ? 'inputPath' : 'outputPath';
    if (path === '' || /[\n\r]/.test(path)) throw new InjectionError(`the ${what} path ${JSON.stringify(path)} must be a non-empty path on one line`, setting);
    if (copy) {
      // Copied in and out by the wrapper: relative paths resolve in the working dir, and the image's files stay visible.
      if (path.startsWith('/') && (isRuntimePath(path) || (what === 'output' && normalize(path) === '/'))) {
        throw new InjectionError(`the ${what} path ${quote(path)} is reserved (${what === 'output' ? 'the root, and ' : ''}${RUNTIME_MOUNT} for the runtime); pick another path`, setting);
      }
      return;
    }
    if (!path.startsWith('/')) throw new InjectionError(`the ${what} path "${path}" must be absolute`, setting);
    if (normalize(path) === '/' || isRuntimePath(path)) {
      throw new InjectionError(`the ${what} path ${quote(path)} is reserved (the root, and ${RUNTIME_MOUNT} for the runtime); pick another directory`, setting);
    }
    for (const app of apps) {
      if ((app.volumeMounts ?? []).some((m) => normalize(m.mountPath) === normalize(path))) {
        throw new InjectionError(`the ${what} path ${quote(path)} is already a volume mount of container "${app.name}"; pick another directory`, setting);
      }
    }
  };
  for (const input of settings.inputs) check(input.path, 'input');
  if (settings.output) {
    check(settings.output.path, 'output');
    const file = settings.output.stdoutFile;
    if (file !== undefined) checkStdoutFile(file, copy);
  }
  checkTimeout(settings.inputTimeoutSeconds, 'input', 'inputTimeout');
  checkTimeout(settings.startTimeoutSeconds, 'start', 'startTimeout');
}

function checkConnection(connection: InjectionConnection): void {
  const { host, plainHttp, insecure, caBundle: ca } = connection;
  if (plainHttp && insecure) {
    throw new InjectionError(`${host}: plain HTTP and insecure (HTTPS without verifying the certificate) exclude each other; `
      + 'keep plain HTTP for a registry without TLS, or insecure for one with an unverifiable certificate', 'registry');
  }
  if (ca && (ca.configMapName === undefined) === (ca.secretName === undefined)) {
    throw new InjectionError(`${host}: a CA bundle comes from one ConfigMap or one Secret; name exactly one of them`, 'registry');
  }
  if (ca && (plainHttp || insecure)) {
    throw new InjectionError(`${host}: a CA bundle verifies the registry's HTTPS certificate, but the registry is set to ${plainHttp ? 'plain HTTP' : 'insecure (no verification)'}; `
      + 'remove that setting, or the CA bundle', 'registry');
  }
}

function checkStdoutFile(file: string, copy: boolean): void {
  const absolute = file.startsWith('/') && !file.split('/').includes('..') && !file.endsWith('/');
  if (copy) {
    // Relative to the working dir, as a shell redirection resolves it.
    if (file === '' || /[\n\r]/.test(file) || file.endsWith('/') || file === '.' || file === '..') {
      throw new InjectionError(`the stdout file ${JSON.stringify(file)} must name a file, relative to the working directory or absolute`, 'stdoutFile');
    }
  } else {
    const plainName = file !== '' && !file.includes('/') && file !== '.' && file !== '..';
    if (!plainName && !absolute) {
      throw new InjectionError(`the stdout file "${file}" must be a file name in the output directory, or an absolute path`, 'stdoutFile');
    }
  }
  if (file.startsWith('/') && isRuntimePath(file)) {
    throw new InjectionError(`the stdout file ${quote(file)} is inside ${RUNTIME_MOUNT}, where the runtime keeps its state (the stdout FIFO, the exit code); `
      + 'write stdout to a file name in the output directory or to an absolute path elsewhere', 'stdoutFile');
  }
}

function checkTimeout(seconds: number, what: string, setting: InjectionSetting): void {
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > MAX_TIMEOUT_SECONDS) {
    throw new InjectionError(`the ${what} timeout of ${seconds} seconds must be a whole number of seconds from 1 to ${MAX_TIMEOUT_SECONDS} (365 days)`, setting);
  }
}
