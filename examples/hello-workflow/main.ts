// Three steps with a fan-in: "hello" and "world" each push an artifact, and
// "combine" waits for both, reads them and pushes the message. Apply the
// registry bundle first (dist/oras-registry.yaml), then this one, in the same
// namespace. "combine" starts as a suspended Job: the second of "hello" and
// "world" to push its output resumes it (with the Role hello-advance).
// In your own project, import from 'cdk8s-oras' instead of '../../src'.
import { App, Chart, ChartProps, Duration, YamlOutputType } from 'cdk8s';
import { Construct } from 'constructs';
import { IOrasRegistry, OrasRegistry, OrasRuntimeImage, OrasWorkflow, OrasWorkflowStep } from '../../src';

export interface HelloWorkflowProps extends ChartProps {
  /** Where the steps exchange artifacts. Default: the `oras` registry of dist/oras-registry.yaml. */
  readonly registry?: IOrasRegistry;
  /** Image of the steps; it only needs busybox sh. */
  readonly image?: string;
  /** Fixed here (r0example) so that dist/ is reproducible and a rerun can replace it with sed; leave it out to get a new id per synth. */
  readonly runId?: string;
  readonly runtimeImage?: OrasRuntimeImage;
  readonly inputTimeout?: Duration;
}

export class HelloWorkflow extends Chart {
  public readonly workflow: OrasWorkflow;
  public readonly hello: OrasWorkflowStep;
  public readonly world: OrasWorkflowStep;
  public readonly combine: OrasWorkflowStep;

  constructor(scope: Construct, id: string, props: HelloWorkflowProps = {}) {
    super(scope, id, props);
    const image = props.image ?? 'docker.io/library/busybox:1.36.1';
    const ttlAfterFinished = Duration.hours(24);
    this.workflow = new OrasWorkflow(this, 'Workflow', {
      name: 'hello',
      registry: props.registry ?? OrasRegistry.fromHost('oras:5000', { plainHttp: true }),
      runId: props.runId ?? 'r0example',
      runtimeImage: props.runtimeImage,
      inputTimeout: props.inputTimeout ?? Duration.minutes(10),
    });
    this.hello = this.workflow.addStep('greeting', {
      image,
      command: ['sh', '-c', 'echo "hello" > /out/greeting.txt'],
      output: { path: '/out' },
      ttlAfterFinished,
    });
    this.world = this.workflow.addStep('subject', {
      image,
      command: ['sh', '-c', 'mkdir -p /out/names && echo "world" > /out/names/subject.txt'],
      output: { path: '/out' },
      ttlAfterFinished,
    });
    this.combine = this.workflow.addStep('combine', {
      image,
      command: ['sh', '-c', 'echo "$(cat /in/greeting/greeting.txt), $(cat /in/subject/names/subject.txt)!" | tee /out/message.txt'],
      inputs: [
        { artifact: this.hello.output, path: '/in/greeting' },
        { artifact: this.world.output, path: '/in/subject' },
      ],
      output: { path: '/out', tag: 'message' },
      outputPipe: 'combine.log',
      ttlAfterFinished,
    });
  }
}

if (require.main === module) {
  const app = new App({ outputFileExtension: '.yaml', yamlOutputType: YamlOutputType.FILE_PER_CHART });
  new HelloWorkflow(app, 'oras-hello-workflow');
  app.synth();
}
