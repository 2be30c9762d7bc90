import { createHash } from 'crypto';
import { ApiObject, Duration, Lazy, Names, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { OrasArtifact } from './artifact';
import { hardenedSecurityContext } from './hardening';
import { ContainerSpec, DEFAULT_CONTAINER_ANNOTATION, injectOras, InjectionConnection, InjectionError, InjectionSettings, PodSpecJson, PROVENANCE, RUNTIME_UID } from './injection';
import { assertPinnedImage, IOrasRegistry } from './registry';
import { renderResources } from './resources';
import { OrasRuntimeImage } from './runtime-image';
import { OrasWorkflow } from './workflow';

/** The main container's resources when the step gives none. */
const MAIN_RESOURCES = {
  cpu: { request: kplus.Cpu.millis(100), limit: kplus.Cpu.units(1) },
  memory: { request: Size.mebibytes(128), limit: Size.gibibytes(1) },
};

/**
 * An artifact a step reads, and where it appears in the main container.
 */
export interface StepInput {
  /**
   * The artifact, usually another step's `output`.
   *
   * It is pulled with its own registry's settings: plain HTTP or not, TLS
   * verification, CA bundle and credentials (an artifact from
   * `OrasRegistry.fromHost(host, { credentials })` brings its Secret). A
   * reference without a registry (`OrasArtifact.fromReference`) on the step
   * registry's host uses the step's registry, else HTTPS with the system's
   * CAs and no credentials.
   */
  readonly artifact: OrasArtifact;

  /**
   * Absolute directory in the main container; the artifact's files appear in it.
   *
   * It is a volume mounted at that path (read-only unless the output shares
   * it), so nothing is copied and the command starts as soon as the pull
   * ends; what the image keeps at that path is hidden. Annotated pods of the
   * webhook copy instead, so that relative paths and the image's files work.
   */
  readonly path: string;

  /**
   * The artifact comes from outside the workflow, so no step must produce it.
   *
   * @default false - a step of the same workflow must produce it
   */
  readonly external?: boolean;
}

/**
 * What a step pushes after its command exits 0.
 */
export interface StepOutput {
  /**
   * Absolute directory in the main container; every entry in it is pushed (files as files, directories as tarballs).
   *
   * It is a volume mounted at that path, so the output is pushed from where
   * the command wrote it, with no copy; what the image keeps at that path is hidden.
   */
  readonly path: string;

  /**
   * Repository in the registry.
   *
   * @default - `<workflow repository prefix>/<step name>`
   */
  readonly repository?: string;

  /**
   * Tag. Inside a workflow it is prefixed with the run id: `<runId>-<tag>`.
   *
   * @default 'output'
   */
  readonly tag?: string;

  /**
   * Push directories with the unpack annotation, so pullers get directories back.
   *
   * @default true
   */
  readonly unpack?: boolean;
}

/**
 * A volume of your own in the main container, such as a Secret, a
 * ConfigMap or a shared PersistentVolumeClaim.
 */
export interface StepVolumeMount {
  /** The volume (`kplus.Volume.fromSecret(...)` and the like). Its name must not start with "oras-". */
  readonly volume: kplus.Volume;

  /** Absolute path in the main container. */
  readonly path: string;

  /**
   * Mount it read-only.
   *
   * @default false
   */
  readonly readOnly?: boolean;

  /**
   * A path inside the volume to mount instead of its root.
   *
   * @default - the volume's root
   */
  readonly subPath?: string;
}

/**
 * Security settings of the main container.
 */
export interface StepSecurityOptions {
  /**
   * The uid the command runs as.
   *
   * @default 65532 - the runtime's uid, so that oras-push can read the output
   */
  readonly user?: number;

  /**
   * The gid the command runs as.
   *
   * @default 65532
   */
  readonly group?: number;

  /**
   * Refuse to start as root.
   *
   * @default true
   */
  readonly ensureNonRoot?: boolean;

  /**
   * Mount the image read-only (an emptyDir is mounted at /tmp either way).
   *
   * @default true
   */
  readonly readOnlyRootFilesystem?: boolean;
}

/**
 * Properties of an `OrasWorkflowStep`.
 */
export interface OrasWorkflowStepProps {
  /** Image of the main container, pinned by tag or digest. It needs no shell: distroless and scratch images work. */
  readonly image: string;

  /** The command, run exactly as given (no shell unless you name one). */
  readonly command: string[];

  /**
   * Arguments after the command.
   *
   * @default - none
   */
  readonly args?: string[];

  /**
   * Environment of the main container.
   *
   * @default - none
   */
  readonly env?: { [name: string]: string };

  /**
   * More environment of the main container, from Secrets, ConfigMaps or
   * fields of the pod (`kplus.EnvValue.fromSecretValue(...)` and the like).
   * Memoization keys them by where they come from, not by value.
   *
   * @default - none
   */
  readonly envVariables?: { [name: string]: kplus.EnvValue };

  /**
   * Every key of these Secrets and ConfigMaps as environment of the main
   * container (`kplus.Env.fromSecret(...)`, `kplus.Env.fromConfigMap(...)`).
   *
   * @default - none
   */
  readonly envFrom?: kplus.EnvFrom[];

  /**
   * CPU, memory and ephemeral storage of the main container.
   *
   * @default - cpu 100m request / 1 limit, memory 128Mi request / 1Gi limit, no ephemeral-storage bound
   */
  readonly resources?: kplus.ContainerResources;

  /**
   * GPUs and other extended resources of the main container, by resource
   * name: `{ 'nvidia.com/gpu': '1' }`. They are written as limits, which
   * Kubernetes also takes as the requests.
   *
   * @default - none
   */
  readonly extendedResources?: { [name: string]: string };

  /**
   * Volumes of your own, mounted into the main container.
   *
   * @default - none
   */
  readonly volumes?: StepVolumeMount[];

  /**
   * Nodes the pod may run on, by label.
   *
   * @default - any node
   */
  readonly nodeSelector?: { [label: string]: string };

  /**
   * Taints the pod tolerates.
   *
   * @default - none
   */
  readonly tolerations?: kplus.k8s.Toleration[];

  /**
   * Node and pod affinity of the pod.
   *
   * @default - none
   */
  readonly affinity?: kplus.k8s.Affinity;

  /**
   * Secrets with the credentials to pull the step's images.
   *
   * @default - none: the node's credentials and the service account's
   */
  readonly imagePullSecrets?: kplus.ISecret[];

  /**
   * Labels of the Job and its pod, besides the ones cdk8s-oras sets
   * (`app.kubernetes.io/*` and `oras.land/*`, which cannot be replaced).
   *
   * @default - none
   */
  readonly labels?: { [key: string]: string };

  /**
   * Annotations of the Job and its pod.
   *
   * @default - none
   */
  readonly annotations?: { [key: string]: string };

  /**
   * PriorityClass of the pod.
   *
   * @default - the cluster's default priority
   */
  readonly priorityClassName?: string;

  /**
   * Working directory of the command.
   *
   * @default - the image's
   */
  readonly workingDir?: string;

  /**
   * Service account of the pod; its token is mounted only when one is given.
   * Inside a workflow whose steps start suspended, the workflow's Role that
   * resumes Jobs is bound to it too.
   *
   * @default - the workflow's `<name>-steps` account (whose token only oras-push sees), else the namespace's default account, without a token
   */
  readonly serviceAccount?: kplus.IServiceAccount;

  /**
   * Security settings of the main container.
   *
   * @default - uid/gid 65532, non-root, read-only root filesystem, no capabilities
   */
  readonly security?: StepSecurityOptions;

  /**
   * Artifacts pulled before the command starts, each into its own directory.
   *
   * @default - none
   */
  readonly inputs?: StepInput[];

  /**
   * What the step pushes after exit code 0.
   *
   * @default - the step pushes nothing
   */
  readonly output?: StepOutput;

  /**
   * Name of the step: the Job name, which inside a workflow gets the run id
   * appended (`<name>-<run>`, shortened to fit 63 characters).
   *
   * @default - `<workflow name>-<id>` inside a workflow, else a DNS label from the construct path
   */
  readonly name?: string;

  /**
   * Registry of the output and of inputs given by repository.
   *
   * @default - the workflow's registry; required outside a workflow
   */
  readonly registry?: IOrasRegistry;

  /**
   * The oras-runtime image of the injected containers.
   *
   * @default - the workflow's, else OrasRuntimeImage.default()
   */
  readonly runtimeImage?: OrasRuntimeImage;

  /**
   * Retries of the Job. Each retry runs the command again from fresh inputs.
   *
   * @default 0 - the command's exit code is the Job's outcome
   */
  readonly backoffLimit?: number;

  /**
   * Deadline of the whole Job, waiting for inputs included.
   *
   * @default - none
   */
  readonly activeDeadline?: Duration;

  /**
   * Delete the finished Job (and its pod) after this long.
   *
   * @default - the workflow's (one day), else finished Jobs are kept
   */
  readonly ttlAfterFinished?: Duration;

  /**
   * Reuse an earlier output instead of running the command again, when one
   * exists for the same key: the image, command, args, env, working
   * directory, input and output paths, and the content of every input.
   *
   * Before the command starts, oras-pull resolves the inputs, computes the
   * key and looks for the tag `memo-<key>` in the output repository. When it
   * is there, the step pulls nothing and runs nothing: that manifest is
   * stored again under this run's tag (its blobs are already in the
   * repository, so none is moved), with the annotation
   * `org.cdk8s-oras.step.memoized-from` naming the original, and the pod
   * succeeds. Otherwise the command runs, and its output is also tagged
   * `memo-<key>`.
   *
   * An input's content is its manifest without the manifest's own
   * annotations (which hold provenance and the creation time), so a
   * memoized producer leaves its consumers memoized too. Env values from
   * Secrets or ConfigMaps enter the key by name, not value, and an image
   * enters it as written: pin images by digest when a moved tag must rerun.
   * Turn it off for commands whose result depends on anything else (the
   * network, the clock).
   *
   * @default true - steps with an output are memoized
   */
  readonly memoize?: boolean;

  /**
   * How long the step waits for its inputs to exist: external inputs, and
   * every input when the workflow does not start steps suspended.
   *
   * @default - the workflow's, else Duration.minutes(30)
   */
  readonly inputTimeout?: Duration;

  /**
   * How long oras-push waits for the main container to start, and the main container for oras-pull (image pulls included).
   *
   * @default Duration.minutes(10)
   */
  readonly startTimeout?: Duration;

  /**
   * File name in the output directory that receives the command's stdout; it
   * stays in the container log too. Needs `output`.
   *
   * @default - stdout only goes to the log
   */
  readonly outputPipe?: string;

  /**
   * After a non-zero exit, push the output to `<tag>-failed` instead of nothing.
   *
   * @default false
   */
  readonly uploadOnFailure?: boolean;

  /**
   * Run the command wrapper with the image's own /bin/sh instead of the
   * runtime's static busybox. That saves the init container `oras-shell`
   * (0.85 s per step measured on one node: the kubelet notices an ended init
   * container at its next relist), but the image then needs /bin/sh.
   *
   * @default false - the runtime's shell: any image works, distroless and scratch included
   */
  readonly useImageShell?: boolean;

  /**
   * Log the resolved settings from the injected containers.
   *
   * @default false
   */
  readonly debug?: boolean;
}

const MAIN_CONTAINER = 'main';

/**
 * A Job whose pod is already prepared: its inputs are pulled before the
 * command starts, and its output is pushed after the command exits 0.
 *
 * The command runs through a small POSIX sh wrapper that keeps the argv
 * exactly, forwards signals and passes the exit code on. A static busybox,
 * copied from the runtime image by the init container `oras-shell`, runs
 * it, so the image needs no shell of its own (distroless and scratch images
 * work); the command itself runs as given, never through a shell unless you name one.
 */
export class OrasWorkflowStep extends Construct {
  /** Name of the Job: inside a workflow, the step's name and the run id (`<workflow>-<id>-<run>`). */
  public readonly name: string;
  /** The step's name without the run id: the Job name outside a workflow, and the `oras.land/step` label. */
  public readonly stepName: string;
  /** The Job. */
  public readonly job: ApiObject;
  /** The registry of the output. */
  public readonly registry: IOrasRegistry;

  private readonly props: OrasWorkflowStepProps;
  private readonly inputList: StepInput[] = [];
  private readonly outputArtifact?: OrasArtifact;
  private readonly failureArtifact?: OrasArtifact;
  private readonly context?: OrasWorkflow;
  private readonly runtimeImage: OrasRuntimeImage;

  constructor(scope: Construct, id: string, props: OrasWorkflowStepProps) {
    super(scope, id);
    this.props = props;
    this.context = OrasWorkflow.of(scope);
    const where = `OrasWorkflowStep "${this.node.path}"`;
    const fail = (why: string): never => {
      throw new Error(`${where}: ${why}`);
    };

    const registry = props.registry ?? this.context?.registry
      ?? fail('it has no registry. Create it inside an OrasWorkflow, or pass registry (for example OrasRegistry.fromHost(...)).');
    this.registry = registry;
    this.stepName = props.name ?? (this.context ? truncateLabel(`${this.context.name}-${dnsPart(id)}`, 63) : Names.toDnsLabel(this));
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(this.stepName)) {
      fail(`the name "${this.stepName}" must be a DNS label (lowercase letters, digits and "-", at most 63 characters).`);
    }
    // Each run has its own Jobs: a Job's pod template cannot change, so a rerun needs new names.
    const suffix = this.context?.runSuffix;
    this.name = suffix ? `${truncateLabel(this.stepName, 62 - suffix.length)}-${suffix}` : this.stepName;
    if (!props.command || props.command.length === 0) {
      fail('it has no command. Give the full argv, for example command: ["sh", "-c", "make all"]; the image\'s ENTRYPOINT cannot be wrapped.');
    }
    assertPinnedImage(props.image, where);
    this.runtimeImage = props.runtimeImage ?? this.context?.runtimeImage ?? OrasRuntimeImage.default();
    if (props.outputPipe !== undefined && !props.output) fail('outputPipe writes into the output directory, but the step has no output. Add output: { path }.');
    if (props.backoffLimit !== undefined && (!Number.isInteger(props.backoffLimit) || props.backoffLimit < 0)) {
      fail(`backoffLimit must be a whole number of at least 0, not ${props.backoffLimit}.`);
    }
    const reserved = Object.keys(props.labels ?? {}).filter((key) => /^(app\.kubernetes\.io|oras\.land)\//.test(key));
    if (reserved.length > 0) fail(`the labels ${reserved.join(', ')} are set by cdk8s-oras (selectors and kubectl rely on them); use other keys.`);
    const twice = Object.keys(props.envVariables ?? {}).filter((name) => props.env?.[name] !== undefined);
    if (twice.length > 0) fail(`the env variables ${twice.join(', ')} are given in both env and envVariables; give each once.`);
    for (const [name, quantity] of Object.entries(props.extendedResources ?? {})) {
      if (!/^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(name) || ['cpu', 'memory', 'ephemeral-storage'].includes(name)) {
        fail(`"${name}" is no extended resource name (such as nvidia.com/gpu); cpu, memory and ephemeral storage go in resources.`);
      }
      if (!/^[1-9][0-9]*$/.test(quantity)) fail(`the extended resource ${name} needs a whole number of at least 1, not "${quantity}".`);
    }
    for (const mount of props.volumes ?? []) {
      if (!mount.path.startsWith('/')) fail(`the volume path "${mount.path}" must be absolute.`);
    }

    if (props.output) {
      const tag = props.output.tag ?? 'output';
      const finalTag = this.context ? `${this.context.runId}-${tag}` : tag;
      const repository = props.output.repository ?? `${this.context?.repositoryPrefix ?? 'oras-steps'}/${dnsPart(id)}`;
      try {
        this.outputArtifact = OrasArtifact.fromRegistry(registry, repository, { tag: finalTag });
        if (props.uploadOnFailure) this.failureArtifact = this.outputArtifact.withTag(`${finalTag}-failed`);
      } catch (err) {
        fail(`its output is not a valid artifact: ${(err as Error).message}`);
      }
    }
    for (const input of props.inputs ?? []) this.addInput(input);

    this.job = new StepJob(this, 'Resource', {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        name: this.name,
        namespace: this.context?.namespace,
        labels: this.labels(),
        ...(props.annotations ? { annotations: { ...props.annotations } } : {}),
      },
      spec: Lazy.any({ produce: () => this.renderJobSpec() }),
    });
    // Fail at construction for what can be checked now (paths, pipe, reserved names).
    this.renderPodSpec();
    this.context?._register(this);
  }

  /**
   * The artifact this step pushes; give it to other steps as an input.
   *
   * @throws if the step has no output
   */
  public get output(): OrasArtifact {
    if (!this.outputArtifact) {
      throw new Error(`OrasWorkflowStep "${this.node.path}" has no output to read. Add output: { path } to its props.`);
    }
    return this.outputArtifact;
  }

  /** Whether the step pushes an output. */
  public get hasOutput(): boolean {
    return this.outputArtifact !== undefined;
  }

  /** The inputs, in order. */
  public get inputs(): StepInput[] {
    return [...this.inputList];
  }

  /** Adds an input after construction. */
  public addInput(input: StepInput): void {
    if (!input.path.startsWith('/')) throw new Error(`OrasWorkflowStep "${this.node.path}": the input path "${input.path}" must be absolute.`);
    const clash = this.inputList.find((i) => i.path.replace(/\/+$/, '') === input.path.replace(/\/+$/, ''));
    if (clash) {
      throw new Error(`OrasWorkflowStep "${this.node.path}": two inputs (${clash.artifact.reference} and ${input.artifact.reference}) `
        + `go to "${input.path}". Give each input its own path.`);
    }
    this.inputList.push(input);
  }

  private labels(): Record<string, string> {
    return {
      ...this.props.labels,
      'app.kubernetes.io/name': 'oras-step',
      'app.kubernetes.io/part-of': 'cdk8s-oras',
      'app.kubernetes.io/instance': this.name,
      'oras.land/step': this.stepName,
      ...(this.context ? { 'oras.land/workflow': this.context.name, 'oras.land/run-id': this.context.runSuffix } : {}),
    };
  }

  /** Whether the Job starts suspended: it reads another step's output, and its producers resume it. */
  private get suspended(): boolean {
    return this.context !== undefined && this.context.suspendUntilInputsExist && this.context._producersOf(this).length > 0;
  }

  /**
   * The Jobs a suspended Job waits for (annotation `oras.land/waits-for`), known once every step is added.
   * @internal
   */
  public _waitsFor(): string[] {
    return this.suspended ? this.context!._producersOf(this).map((s) => s.name) : [];
  }

  /**
   * The service account the step's pod runs as, when the step names one.
   * @internal
   */
  public _serviceAccountName(): string | undefined {
    return this.props.serviceAccount?.name;
  }

  private renderJobSpec(): Record<string, unknown> {
    const ttl = this.props.ttlAfterFinished ?? this.context?.ttlAfterFinished;
    return {
      ...(this.suspended ? { suspend: true } : {}),
      backoffLimit: this.props.backoffLimit ?? 0,
      ...(this.props.activeDeadline ? { activeDeadlineSeconds: this.props.activeDeadline.toSeconds() } : {}),
      ...(ttl ? { ttlSecondsAfterFinished: ttl.toSeconds() } : {}),
      template: {
        // oras-pull comes first in the pod: kubectl logs and exec should pick the command's container.
        metadata: { labels: this.labels(), annotations: { ...this.props.annotations, [DEFAULT_CONTAINER_ANNOTATION]: MAIN_CONTAINER } },
        spec: this.renderPodSpec(),
      },
    };
  }

  /**
   * The pod before injection; tests use it to compare with the webhook.
   * @internal
   */
  public _basePodSpec(): PodSpecJson {
    const props = this.props;
    const security = props.security ?? {};
    const { env, envFrom } = this.renderEnv();
    const main: ContainerSpec = {
      name: MAIN_CONTAINER,
      image: props.image,
      imagePullPolicy: 'IfNotPresent',
      command: [...props.command],
      ...(props.args ? { args: [...props.args] } : {}),
      ...(props.workingDir ? { workingDir: props.workingDir } : {}),
      ...(env.length > 0 ? { env } : {}),
      ...(envFrom.length > 0 ? { envFrom } : {}),
      resources: withExtended(renderResources(props.resources, MAIN_RESOURCES), props.extendedResources),
      securityContext: hardenedSecurityContext({
        user: security.user ?? RUNTIME_UID,
        group: security.group ?? RUNTIME_UID,
        nonRoot: security.ensureNonRoot ?? true,
        readOnlyRootFilesystem: security.readOnlyRootFilesystem ?? true,
      }),
      volumeMounts: [
        { name: 'tmp', mountPath: '/tmp' },
        ...(props.volumes ?? []).map((m) => ({
          name: m.volume.name, mountPath: m.path, ...(m.readOnly ? { readOnly: true } : {}), ...(m.subPath ? { subPath: m.subPath } : {}),
        })),
      ],
    };
    const volumes = new Map<string, unknown>();
    for (const m of props.volumes ?? []) volumes.set(m.volume.name, m.volume._toKube());
    const base: PodSpecJson = {
      restartPolicy: 'Never',
      automountServiceAccountToken: props.serviceAccount !== undefined,
      // The workflow's account carries the Role that resumes Jobs; only oras-push gets its token.
      ...(props.serviceAccount || this.context?.serviceAccount
        ? { serviceAccountName: props.serviceAccount?.name ?? this.context!.serviceAccount!.name } : {}),
      ...(props.nodeSelector ? { nodeSelector: { ...props.nodeSelector } } : {}),
      ...(props.tolerations?.length ? { tolerations: props.tolerations.map((t) => kplus.k8s.toJson_Toleration(t)) } : {}),
      ...(props.affinity ? { affinity: kplus.k8s.toJson_Affinity(props.affinity) } : {}),
      ...(props.imagePullSecrets?.length ? { imagePullSecrets: props.imagePullSecrets.map((secret) => ({ name: secret.name })) } : {}),
      ...(props.priorityClassName ? { priorityClassName: props.priorityClassName } : {}),
      // The runtime containers set runAsNonRoot themselves; the pod follows the main container's choice.
      securityContext: { runAsNonRoot: security.ensureNonRoot ?? true, fsGroup: RUNTIME_UID, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [main],
      volumes: [{ name: 'tmp', emptyDir: {} }, ...volumes.values()] as PodSpecJson['volumes'],
    };
    return base;
  }

  /**
   * The settings this step's pod is prepared with; tests give them to the webhook's path too.
   * @internal
   */
  public _injectionSettings(): InjectionSettings {
    const props = this.props;
    const registry = this.registry;
    return {
      runtimeImage: this.runtimeImage.image,
      registry: injectionConnection(registry),
      // Each input reaches its own registry: settings per host, its own credentials and CA bundle.
      inputs: this.inputList.map((i) => ({ reference: i.artifact.reference, path: i.path, registry: connectionOf(i.artifact, registry) })),
      output: props.output && this.outputArtifact ? {
        reference: this.outputArtifact.reference,
        path: props.output.path,
        unpack: props.output.unpack ?? true,
        failureReference: this.failureArtifact?.reference,
        stdoutFile: props.outputPipe,
        annotations: {
          [PROVENANCE.STEP]: this.stepName,
          [PROVENANCE.IMAGE]: props.image,
          ...(this.context ? { [PROVENANCE.WORKFLOW]: this.context.name, [PROVENANCE.RUN_ID]: this.context.runId } : {}),
        },
      } : undefined,
      memoKey: props.output && (props.memoize ?? true) ? this.memoKey() : undefined,
      advance: this.context?.suspendUntilInputsExist ? {
        resume: this.context._dependentsOf(this).map((d) => ({ job: d.step.name, needs: d.needs })),
        block: this.context._downstreamOf(this).map((s) => s.name),
      } : undefined,
      containers: [MAIN_CONTAINER],
      // Volumes at the paths: nothing is copied, and the paths are absolute, so nothing is resolved at run time.
      placement: 'mount',
      // The runtime's static shell runs the wrapper unless asked otherwise: images without /bin/sh work too.
      shell: props.useImageShell ? 'image' : 'runtime',
      inputTimeoutSeconds: (props.inputTimeout ?? this.context?.inputTimeout ?? Duration.minutes(30)).toSeconds(),
      startTimeoutSeconds: (props.startTimeout ?? Duration.minutes(10)).toSeconds(),
      debug: props.debug,
    };
  }

  /**
   * What defines the command, as a hex sha256: oras-pull adds the inputs'
   * content to it. Volumes, resources and the pod's placement do not change
   * what the command computes, so they are not part of it.
   */
  private memoKey(): string {
    const props = this.props;
    const { env, envFrom } = this.renderEnv();
    const definition = {
      v: 1,
      image: props.image,
      command: props.command,
      args: props.args ?? [],
      // Secret and ConfigMap values by reference: the env as the pod spec carries it, in name order.
      env: [...env].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
      envFrom,
      workingDir: props.workingDir ?? null,
      user: [props.security?.user ?? RUNTIME_UID, props.security?.group ?? RUNTIME_UID],
      inputs: this.inputList.map((i) => i.path),
      output: { path: props.output?.path, unpack: props.output?.unpack ?? true, stdout: props.outputPipe ?? null },
    };
    return createHash('sha256').update(JSON.stringify(definition)).digest('hex');
  }

  /** The main container's env and envFrom as Kubernetes JSON: `env` first, then `envVariables`. */
  private renderEnv(): { env: { name: string; value?: string; valueFrom?: unknown }[]; envFrom: unknown[] } {
    const props = this.props;
    return {
      env: [
        ...Object.entries(props.env ?? {}).map(([name, value]) => ({ name, value })),
        ...Object.entries(props.envVariables ?? {})
          .map(([name, value]) => ({ name, ...(value.valueFrom !== undefined ? { valueFrom: value.valueFrom } : { value: value.value }) })),
      ],
      envFrom: (props.envFrom ?? []).map((from) => from._toKube()),
    };
  }

  /** The main container's pod, prepared by the shared injection. */
  private renderPodSpec(): PodSpecJson {
    try {
      return injectOras(this._basePodSpec(), this._injectionSettings());
    } catch (err) {
      if (err instanceof InjectionError) throw new Error(`OrasWorkflowStep "${this.node.path}": ${err.message}`);
      throw err;
    }
  }
}

/** A step's Job: `oras.land/waits-for` names the Jobs it waits for, which are known only once every step is added. */
class StepJob extends ApiObject {
  public override toJson(): any {
    const json = super.toJson();
    const waitsFor = (this.node.scope as OrasWorkflowStep)._waitsFor();
    if (waitsFor.length > 0) json.metadata.annotations = { ...json.metadata.annotations, 'oras.land/waits-for': waitsFor.join(',') };
    return json;
  }
}

/**
 * How an input's registry is reached: the artifact's own registry (given
 * through OrasRegistry or OrasArtifact.fromRegistry), else the step's when the
 * host is the same, else plain HTTPS with the system's CAs and no credentials.
 */
function connectionOf(artifact: OrasArtifact, stepRegistry: IOrasRegistry): InjectionConnection {
  const registry = artifact.registry ?? (artifact.host === stepRegistry.host ? stepRegistry : undefined);
  return registry ? injectionConnection(registry) : { host: artifact.host, plainHttp: false, insecure: false };
}

/** What the injection needs to reach a registry. */
function injectionConnection(registry: IOrasRegistry): InjectionConnection {
  return {
    host: registry.host,
    plainHttp: registry.plainHttp,
    insecure: registry.insecure,
    credentialsSecret: registry.credentials?.name,
    caBundle: registry.caBundle,
  };
}

/** Extended resources (GPUs) as limits: Kubernetes takes a limit without a request as both. */
function withExtended(resources: Record<string, Record<string, string>>, extended: { [name: string]: string } | undefined) {
  return extended ? { ...resources, limits: { ...resources.limits, ...extended } } : resources;
}

/** A construct id as a DNS label part. */
function dnsPart(id: string): string {
  return id.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '') || 'step';
}

function truncateLabel(label: string, max: number): string {
  return label.length <= max ? label : label.slice(0, max).replace(/-+$/, '');
}
