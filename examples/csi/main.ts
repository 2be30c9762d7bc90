// The ORAS CSI driver: pods mount artifacts read-only from a node-local cache
// with a CSI inline volume. It runs in its own namespace (oras-system), which
// must allow privileged pods: the node plugin bind-mounts into the kubelet's
// pod directories. Pods of any namespace use it.
// The demo pod in `default` mounts oras.default.svc:5000/models/demo:v1; with
// dist/oras-registry.yaml applied to `default`, push something there first:
//   oras push --plain-http oras.default.svc:5000/models/demo:v1 ./model.bin
// In your own project, import from 'cdk8s-oras' instead of '../../src'.
import { ApiObject, App, Chart, ChartProps, JsonPatch, Size, YamlOutputType } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { OrasCsiDriver, OrasRegistry } from '../../src';

export class CsiExample extends Chart {
  public readonly driver: OrasCsiDriver;
  public readonly pod: kplus.Pod;

  constructor(scope: Construct, id: string, props: ChartProps = {}) {
    super(scope, id, { namespace: 'oras-system', ...props });
    new ApiObject(this, 'Namespace', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: this.namespace!, labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } },
    });
    this.driver = new OrasCsiDriver(this, 'Driver');

    // A pod that lists the artifact's files. Inline CSI volumes are allowed under the restricted Pod Security profile.
    const registry = OrasRegistry.fromHost('oras.default.svc:5000', { plainHttp: true });
    const models = this.driver.volume(this, 'Models', registry.artifact('models/demo', 'v1'), { name: 'models' });
    this.pod = new kplus.Pod(this, 'Demo', {
      metadata: { name: 'oras-csi-demo', namespace: 'default' },
      automountServiceAccountToken: false,
      securityContext: { user: 65532, group: 65532, ensureNonRoot: true },
      containers: [{
        name: 'main',
        image: 'docker.io/library/busybox:1.36.1',
        imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
        command: ['sh', '-c', 'ls -R /models && sleep 3600'],
        volumeMounts: [{ path: '/models', volume: models, readOnly: true }],
        resources: {
          cpu: { request: kplus.Cpu.millis(10), limit: kplus.Cpu.millis(100) },
          memory: { request: Size.mebibytes(16), limit: Size.mebibytes(64) },
        },
        securityContext: {
          user: 65532,
          group: 65532,
          ensureNonRoot: true,
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          privileged: false,
        },
      }],
    });
    // cdk8s-plus-27 has no "ALL" capability nor seccompProfile; both are plain Kubernetes fields.
    ApiObject.of(this.pod).addJsonPatch(
      JsonPatch.add('/spec/securityContext/seccompProfile', { type: 'RuntimeDefault' }),
      JsonPatch.add('/spec/containers/0/securityContext/capabilities', { drop: ['ALL'] }),
    );
  }
}

if (require.main === module) {
  const app = new App({ outputFileExtension: '.yaml', yamlOutputType: YamlOutputType.FILE_PER_CHART });
  new CsiExample(app, 'oras-csi-driver');
  app.synth();
}
