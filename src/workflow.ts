import { createHash, randomBytes } from 'crypto';
import { Chart, Duration, Lazy, Names } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct, IConstruct } from 'constructs';
import { IOrasRegistry } from './registry';
import { OrasRuntimeImage } from './runtime-image';
import { patchable } from './typed';
import { OrasWorkflowStep, OrasWorkflowStepProps } from './workflow-step';

/**
 * Properties of an `OrasWorkflow`.
 */
export interface OrasWorkflowProps {
  /** The registry the steps exchange their artifacts through. */
  readonly registry: IOrasRegistry;

  /**
   * Prefix of every output tag (`<runId>-<tag>`), so that a rerun never reads
   * the outputs of an earlier run. Letters, digits, "_", "." and "-".
   *
   * @default - generated at synth time: a new id each time you synthesize
   */
  readonly runId?: string;

  /**
   * Name of the workflow: the prefix of the Job names and labels.
   *
   * @default - a DNS label derived from the construct path
   */
  readonly name?: string;

  /**
   * Repository prefix of the outputs: `<prefix>/<step id>`.
   *
   * @default - the workflow name
   */
  readonly repositoryPrefix?: string;

  /**
   * Namespace of the Jobs.
   *
   * @default - the chart's namespace
   */
  readonly namespace?: string;

  /**
   * The oras-runtime image of every step.
   *
   * @default OrasRuntimeImage.default()
   */
  readonly runtimeImage?: OrasRuntimeImage;

  /**
   * How long a step waits for its inputs, unless the step says otherwise.
   *
   * @default Duration.minutes(30)
   */
  readonly inputTimeout?: Duration;

  /**
   * Delete each finished Job (and its pod) after this long, unless the step
   * says otherwise. Every run has its own Jobs (their names carry the run
   * id), so this is what keeps earlier runs from piling up. Outputs stay in
   * the registry either way (see the registry's retention).
   *
   * @default Duration.days(1)
   */
  readonly ttlAfterFinished?: Duration;

  /**
   * Start every step that reads another step's output as a suspended Job,
   * resumed by its producers once all its inputs exist, so that no pod of a
   * step waits (and holds its CPU and memory) for an input that is not there
   * yet. A workflow larger than the cluster then runs in any apply order, a
   * few steps at a time. oras-push of a producer resumes the Jobs and, when
   * the producer fails, labels every Job downstream `oras.land/blocked-by`.
   * This needs a ServiceAccount `<name>-steps`, and a Role `<name>-advance`
   * (get and patch on Jobs) bound to it; only oras-push gets its token.
   *
   * With false, every step's pod starts at once and waits for its inputs (up
   * to `inputTimeout`), and the workflow needs no Role; a workflow that does
   * not fit the cluster can then deadlock.
   *
   * @default true
   */
  readonly suspendUntilInputsExist?: boolean;

  /**
   * Write the step graph (Mermaid) into a ConfigMap `<name>-graph`, key `workflow.mmd`.
   *
   * @default true
   */
  readonly graph?: boolean;
}

/** The step graph: the producer of each output, and each step's producers and dependents. */
interface WorkflowGraph {
  /** `steps/inputs`: the graph only grows, so equal counts mean an equal graph. */
  readonly shape: string;
  readonly byOutput: Map<string, OrasWorkflowStep>;
  readonly producers: Map<OrasWorkflowStep, OrasWorkflowStep[]>;
  readonly dependents: Map<OrasWorkflowStep, { step: OrasWorkflowStep; needs: string[] }[]>;
}

/** An edge of the step graph: `to` reads what `from` pushes. */
interface Edge {
  readonly from: OrasWorkflowStep;
  readonly to: OrasWorkflowStep;
  readonly reference: string;
}

/**
 * A set of steps that exchange artifacts through a registry: a DAG that runs
 * without a workflow engine. Apply every Job at once, in any order: the order
 * comes from the data. A step that reads another step's output starts as a
 * suspended Job; the last of its producers to push resumes it (see
 * `suspendUntilInputsExist`).
 *
 * Each synth is a run: Job names end with the run id (`<name>-<step>-<run>`)
 * and output tags start with it, so the next synth applies next to the last
 * one with a plain `kubectl apply`, and finished Jobs go after
 * `ttlAfterFinished`.
 *
 * At synth time it checks that every input has a producer (or is marked
 * external), that no two steps push the same artifact, and that there is no
 * cycle; every error names the steps involved.
 *
 * @example
 * const registry = OrasRegistry.fromHost('oras:5000', { plainHttp: true });
 * const workflow = new OrasWorkflow(chart, 'Workflow', { name: 'hello', registry });
 * const greeting = workflow.addStep('greeting', {
 *   image: 'docker.io/library/busybox:1.36.1',
 *   command: ['sh', '-c', 'echo hello > /out/greeting.txt'],
 *   output: { path: '/out' },
 * });
 * workflow.addStep('shout', {
 *   image: 'docker.io/library/busybox:1.36.1',
 *   command: ['sh', '-c', 'tr a-z A-Z < /in/greeting.txt > /out/shout.txt'],
 *   inputs: [{ artifact: greeting.output, path: '/in' }],
 *   output: { path: '/out' },
 * });
 */
export class OrasWorkflow extends Construct {
  /** The workflow a construct belongs to, if any. */
  public static of(construct: IConstruct): OrasWorkflow | undefined {
    for (let current: IConstruct | undefined = construct; current; current = current.node.scope) {
      if (current instanceof OrasWorkflow) return current;
    }
    return undefined;
  }

  public readonly registry: IOrasRegistry;
  /** The run id that prefixes every output tag. */
  public readonly runId: string;
  /** Prefix of Job names and value of the `oras.land/workflow` label. */
  public readonly name: string;
  public readonly repositoryPrefix: string;
  public readonly runtimeImage: OrasRuntimeImage;
  public readonly inputTimeout?: Duration;
  /** How long finished Jobs stay, unless a step says otherwise. */
  public readonly ttlAfterFinished: Duration;
  public readonly namespace?: string;
  /** The run id as a DNS label part: the suffix of every Job name. */
  public readonly runSuffix: string;
  /** Whether steps with inputs from other steps start suspended (see OrasWorkflowProps). */
  public readonly suspendUntilInputsExist: boolean;
  /** The service account of the steps' pods, unless a step names its own; set when steps start suspended. */
  public readonly serviceAccount?: kplus.ServiceAccount;
  private readonly stepList: OrasWorkflowStep[] = [];
  private graphCache?: WorkflowGraph;

  constructor(scope: Construct, id: string, props: OrasWorkflowProps) {
    super(scope, id);
    const where = `OrasWorkflow "${this.node.path}"`;
    this.registry = props.registry;
    this.name = props.name ?? Names.toDnsLabel(this, { maxLen: 40 });
    if (!/^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$/.test(this.name)) {
      throw new Error(`${where}: name "${this.name}" must be a DNS label of at most 40 characters, so that Job names stay within 63.`);
    }
    this.runId = props.runId ?? `r${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(this.runId)) {
      throw new Error(`${where}: runId "${this.runId}" must be 1 to 64 characters of letters, digits, "_", "." and "-", not starting with "." or "-".`);
    }
    this.runSuffix = runSuffix(this.runId);
    this.repositoryPrefix = props.repositoryPrefix ?? this.name;
    this.ttlAfterFinished = props.ttlAfterFinished ?? Duration.days(1);
    this.runtimeImage = props.runtimeImage ?? OrasRuntimeImage.default();
    this.inputTimeout = props.inputTimeout;
    this.namespace = props.namespace ?? Chart.of(this).namespace;

    this.suspendUntilInputsExist = props.suspendUntilInputsExist ?? true;
    if (this.suspendUntilInputsExist) this.serviceAccount = this.advanceAccess();

    this.node.addValidation({ validate: () => this.problems() });
    if (props.graph ?? true) {
      patchable(new kplus.k8s.KubeConfigMap(this, 'Graph', {
        metadata: {
          name: `${this.name}-graph`,
          namespace: this.namespace,
          labels: { 'app.kubernetes.io/part-of': 'cdk8s-oras', 'oras.land/workflow': this.name, 'oras.land/run-id': this.runSuffix },
        },
        data: { 'workflow.mmd': Lazy.any({ produce: () => this.toMermaid() }) },
      }));
    }
  }

  /** Adds a step to this workflow. */
  public addStep(id: string, props: OrasWorkflowStepProps): OrasWorkflowStep {
    return new OrasWorkflowStep(this, id, props);
  }

  /** The steps, in the order they were added. */
  public get steps(): OrasWorkflowStep[] {
    return [...this.stepList];
  }

  /**
   * Called by each step of this workflow.
   * @internal
   */
  public _register(step: OrasWorkflowStep): void {
    this.stepList.push(step);
  }

  /**
   * The steps whose outputs `step` reads.
   * @internal
   */
  public _producersOf(step: OrasWorkflowStep): OrasWorkflowStep[] {
    return this.graph().producers.get(step) ?? [];
  }

  /**
   * The steps that read `step`'s output, each with every input it reads from steps of this workflow.
   * @internal
   */
  public _dependentsOf(step: OrasWorkflowStep): { step: OrasWorkflowStep; needs: string[] }[] {
    return this.graph().dependents.get(step) ?? [];
  }

  /**
   * Every step downstream of `step`, nearest first.
   * @internal
   */
  public _downstreamOf(step: OrasWorkflowStep): OrasWorkflowStep[] {
    const found: OrasWorkflowStep[] = [];
    for (let frontier = [step]; frontier.length > 0;) {
      frontier = frontier.flatMap((s) => this._dependentsOf(s).map((d) => d.step)).filter((s) => s !== step && !found.includes(s));
      frontier = [...new Set(frontier)];
      found.push(...frontier);
    }
    return found;
  }

  /**
   * Who produces what, who reads whom: built once per shape of the graph
   * (steps and inputs are only ever added), not once per question, since
   * every step asks about its producers, dependents and everything downstream.
   */
  private graph(): WorkflowGraph {
    const shape = `${this.stepList.length}/${this.stepList.reduce((n, s) => n + s.inputs.length, 0)}`;
    if (this.graphCache?.shape === shape) return this.graphCache;
    const byOutput = new Map<string, OrasWorkflowStep>();
    for (const step of this.stepList) {
      if (step.hasOutput && !byOutput.has(step.output.reference)) byOutput.set(step.output.reference, step);
    }
    const producers = new Map<OrasWorkflowStep, OrasWorkflowStep[]>();
    const dependents = new Map<OrasWorkflowStep, { step: OrasWorkflowStep; needs: string[] }[]>();
    for (const step of this.stepList) {
      const needs = step.inputs.map((input) => input.artifact.reference).filter((reference) => byOutput.has(reference));
      const mine = [...new Set(needs.map((reference) => byOutput.get(reference)!))];
      producers.set(step, mine);
      for (const producer of mine) dependents.set(producer, [...dependents.get(producer) ?? [], { step, needs }]);
    }
    this.graphCache = { shape, byOutput, producers, dependents };
    return this.graphCache;
  }

  /** The step graph as a Mermaid flowchart. */
  public toMermaid(): string {
    const id = (step: OrasWorkflowStep) => `s${this.stepList.indexOf(step)}`;
    const lines = ['flowchart LR'];
    if (this.suspendUntilInputsExist) {
      lines.push('  %% A step with inputs from other steps starts as a suspended Job (dashed border); the last of its producers');
      lines.push('  %% to push resumes it, and a producer that fails labels every Job downstream oras.land/blocked-by.');
      lines.push('  classDef suspended stroke-dasharray: 5 5');
    }
    for (const step of this.stepList) lines.push(`  ${id(step)}["${step.stepName}"]`);
    const suspended = this.suspendUntilInputsExist ? this.stepList.filter((s) => this._producersOf(s).length > 0) : [];
    if (suspended.length > 0) lines.push(`  class ${suspended.map(id).join(',')} suspended`);
    for (const step of this.stepList) {
      for (const input of step.inputs) {
        const producer = this.producerOf(input.artifact.reference);
        if (producer) {
          lines.push(`  ${id(producer)} -->|"${input.artifact.repository}:${input.artifact.tag ?? input.artifact.digest}"| ${id(step)}`);
        } else {
          const external = `x${this.stepList.indexOf(step)}_${step.inputs.indexOf(input)}`;
          lines.push(`  ${external}[("${input.artifact.reference}")] -.-> ${id(step)}`);
        }
      }
    }
    return lines.join('\n') + '\n';
  }

  /**
   * The ServiceAccount of the steps, and a Role that may get and patch Jobs
   * (resume them, label them blocked), bound to it and to every service
   * account a step names instead.
   */
  private advanceAccess(): kplus.ServiceAccount {
    const metadata = { namespace: this.namespace, labels: { 'app.kubernetes.io/part-of': 'cdk8s-oras', 'oras.land/workflow': this.name } };
    const account = new kplus.ServiceAccount(this, 'ServiceAccount', { metadata: { ...metadata, name: `${this.name}-steps` }, automountToken: false });
    const role = new kplus.Role(this, 'AdvanceRole', { metadata: { ...metadata, name: `${this.name}-advance` } });
    role.allow(['get', 'patch'], kplus.ApiResource.JOBS);
    const accounts = () => [...new Set([account.name, ...this.stepList.flatMap((s) => s._serviceAccountName() ?? [])])];
    patchable(new kplus.k8s.KubeRoleBinding(this, 'AdvanceRoleBinding', {
      metadata: { ...metadata, name: `${this.name}-advance` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.name },
      // Lazy: steps added later may name their own service accounts. The typed return keeps the subjects checked.
      subjects: Lazy.any({
        produce: (): kplus.k8s.Subject[] => accounts().map((name) => ({ kind: 'ServiceAccount', name, ...(this.namespace ? { namespace: this.namespace } : {}) })),
      }),
    }));
    return account;
  }

  /** The step of another workflow in this app that pushes `reference`, if any. */
  private producerElsewhere(reference: string): { workflow: OrasWorkflow; step: OrasWorkflowStep } | undefined {
    for (const construct of this.node.root.node.findAll()) {
      if (!(construct instanceof OrasWorkflow) || construct === this) continue;
      const step = construct.producerOf(reference);
      if (step) return { workflow: construct, step };
    }
    return undefined;
  }

  private producerOf(reference: string): OrasWorkflowStep | undefined {
    return this.graph().byOutput.get(reference);
  }

  /** Every problem of the graph, each naming the steps involved. */
  private problems(): string[] {
    const problems: string[] = [];
    const where = `OrasWorkflow "${this.node.path}"`;
    const byName = new Map<string, OrasWorkflowStep>();
    for (const step of this.stepList) {
      const other = byName.get(step.name);
      if (other) {
        // Ids become lowercase DNS labels: "Prepare" and "prepare" name one Job.
        const caseOnly = other.node.id !== step.node.id && other.node.id.toLowerCase() === step.node.id.toLowerCase();
        problems.push(`${where}: steps "${other.node.path}" and "${step.node.path}" both get the Job name "${step.name}"`
          + `${caseOnly ? ' (their ids differ only in case, and Job names are lowercase)' : ''}, so one Job would replace the other. `
          + 'Give one of them another id or an explicit name.');
      }
      byName.set(step.name, step);
    }
    const byOutput = new Map<string, OrasWorkflowStep>();
    for (const step of this.stepList.filter((s) => s.hasOutput)) {
      const other = byOutput.get(step.output.reference);
      if (other) {
        problems.push(`${where}: steps "${other.stepName}" and "${step.stepName}" both push ${step.output.reference}. Give one of them another repository or tag.`);
      }
      byOutput.set(step.output.reference, step);
    }
    const edges: Edge[] = [];
    for (const step of this.stepList) {
      for (const input of step.inputs) {
        const producer = byOutput.get(input.artifact.reference);
        if (producer) {
          edges.push({ from: producer, to: step, reference: input.artifact.reference });
        } else if (!input.external) {
          const elsewhere = this.producerElsewhere(input.artifact.reference);
          problems.push(elsewhere
            ? `${where}: step "${step.stepName}" reads ${input.artifact.reference}, which step "${elsewhere.step.stepName}" of another workflow, `
              + `"${elsewhere.workflow.node.path}", produces; a workflow orders only its own steps. Move the two steps into one workflow, `
              + 'or mark the input external: { artifact, path, external: true } to wait for it up to inputTimeout.'
            : `${where}: step "${step.stepName}" reads ${input.artifact.reference}, which no step of this workflow produces. `
              + 'Pass another step\'s output, or mark the input external: { artifact, path, external: true }.');
        }
      }
    }
    const cycle = findCycle(this.stepList, edges);
    if (cycle) problems.push(`${where}: the steps form a cycle: ${cycle.map((s) => `"${s.stepName}"`).join(' -> ')}. A step cannot wait for its own output.`);
    return problems;
  }
}

/**
 * The run id in a Job name: itself when it is a short DNS label part,
 * else `r` and 10 hex digits of its sha256, so that two runs never share a Job name.
 */
function runSuffix(runId: string): string {
  if (/^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$/.test(runId)) return runId;
  return `r${createHash('sha256').update(runId).digest('hex').slice(0, 10)}`;
}

/** A cycle of the graph as a list of steps (first repeated last), or undefined. */
function findCycle(steps: OrasWorkflowStep[], edges: Edge[]): OrasWorkflowStep[] | undefined {
  const next = new Map(steps.map((s) => [s, edges.filter((e) => e.from === s).map((e) => e.to)]));
  const state = new Map<OrasWorkflowStep, 'visiting' | 'done'>();
  const path: OrasWorkflowStep[] = [];
  const visit = (step: OrasWorkflowStep): OrasWorkflowStep[] | undefined => {
    if (state.get(step) === 'done') return undefined;
    if (state.get(step) === 'visiting') return [...path.slice(path.indexOf(step)), step];
    state.set(step, 'visiting');
    path.push(step);
    for (const to of next.get(step) ?? []) {
      const found = visit(to);
      if (found) return found;
    }
    path.pop();
    state.set(step, 'done');
    return undefined;
  };
  for (const step of steps) {
    const found = visit(step);
    if (found) return found;
  }
  return undefined;
}
