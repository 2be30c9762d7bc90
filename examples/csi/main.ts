// The ORAS CSI driver: pods mount artifacts read-only from a node-local cache.
// It runs in a namespace of its own (oras-csi), which must allow privileged
// pods: the node plugin bind-mounts into the kubelet's pod directories. The
// webhook's namespace (oras-system) stays restricted. Pods of any namespace
// use the driver, in three ways, each shown here in `default`:
// - a CSI inline volume: the demo pod;
// - a PersistentVolumeClaim of the StorageClass `oras-artifacts`, whose
//   annotation names the artifact: the provisioner checks it exists and
//   creates the PersistentVolume; the two replicas of `oras-csi-readers` share it;
// - a static PersistentVolume and the claim bound to it (`models-static`),
//   which needs no provisioner; the readers mount it too.
// All three mount oras.default.svc:5000/models/demo:v1. Apply
// dist/oras-registry.yaml to `default` and push a file there first:
//   kubectl port-forward -n default service/oras 5000:5000 &
//   oras push --plain-http localhost:5000/models/demo:v1 model.bin
// Delete the claims before the driver (kubectl delete pvc -n default models
// models-static): the provisioner deletes the PersistentVolumes it made.
// In your own project, import from 'cdk8s-oras' instead of '../../src'.
import { ApiObject, App, Chart, ChartProps, JsonPatch, Size, YamlOutputType } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { OrasCsiDriver, OrasRegistry, OrasStorageClass } from '../../src';

/** The demo containers' resources and securityContext: small, non-root, read-only. */
const SMALL_HARDENED: Pick<kplus.ContainerProps, 'resources' | 'securityContext'> = {
  resources: {
    cpu: { request: kplus.Cpu.millis(10), limit: kplus.Cpu.millis(100) },
    memory: { request: Size.mebibytes(16), limit: Size.mebibytes(64) },
  },
  securityContext: {
    user: 65532, group: 65532, ensureNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false,
  },
};

export class CsiExample extends Chart {
  public readonly driver: OrasCsiDriver;
  public readonly pod: kplus.Pod;
  public readonly storageClass: OrasStorageClass;
  public readonly readers: kplus.Deployment;

  constructor(scope: Construct, id: string, props: ChartProps = {}) {
    super(scope, id, { namespace: 'oras-csi', ...props });
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
        // Ends at once on SIGTERM, so that its volume is unpublished while the driver still serves.
        command: ['sh', '-c', 'ls -R /models || exit 1; trap "exit 0" TERM; sleep 3600 & wait'],
        volumeMounts: [{ path: '/models', volume: models, readOnly: true }],
        ...SMALL_HARDENED,
      }],
    });
    // cdk8s-plus-27 has no "ALL" capability nor seccompProfile; both are plain Kubernetes fields.
    ApiObject.of(this.pod).addJsonPatch(
      JsonPatch.add('/spec/securityContext/seccompProfile', { type: 'RuntimeDefault' }),
      JsonPatch.add('/spec/containers/0/securityContext/capabilities', { drop: ['ALL'] }),
    );

    // Persistent volumes: a StorageClass whose claims name their artifacts (registry gives the transport), one claim of it,
    // and a static PersistentVolume with its claim.
    const artifact = registry.artifact('models/demo', 'v1');
    this.storageClass = this.driver.addStorageClass('Artifacts', { name: 'oras-artifacts', registry });
    const claim = this.storageClass.claim(this, 'ModelsClaim', { name: 'models', namespace: 'default', artifact });
    const pinned = this.driver.persistentVolume(this, 'StaticModels', artifact, { name: 'oras-models-static', claimName: 'models-static', namespace: 'default' });
    this.readers = new kplus.Deployment(this, 'Readers', {
      metadata: { name: 'oras-csi-readers', namespace: 'default' },
      replicas: 2,
      automountServiceAccountToken: false,
      securityContext: { user: 65532, group: 65532, ensureNonRoot: true },
      containers: [{
        name: 'main',
        image: 'docker.io/library/busybox:1.36.1',
        imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
        command: ['sh', '-c', 'ls -R /models /static || exit 1; trap "exit 0" TERM; sleep 3600 & wait'],
        volumeMounts: [
          { path: '/models', volume: kplus.Volume.fromPersistentVolumeClaim(this, 'ClaimedModels', kplus.PersistentVolumeClaim.fromClaimName(this, 'ClaimedModelsRef', claim.name), { readOnly: true }), readOnly: true },
          { path: '/static', volume: pinned.volume(this, 'Static'), readOnly: true },
        ],
        ...SMALL_HARDENED,
      }],
    });
    this.readers.podMetadata.addLabel('app.kubernetes.io/name', 'oras-csi-readers');
    // Preferably on different nodes: each node's plugin serves its replica from its own cache.
    this.readers.scheduling.spread({ topology: kplus.Topology.HOSTNAME, weight: 100 });
    ApiObject.of(this.readers).addJsonPatch(
      JsonPatch.add('/spec/template/spec/securityContext/seccompProfile', { type: 'RuntimeDefault' }),
      JsonPatch.add('/spec/template/spec/containers/0/securityContext/capabilities', { drop: ['ALL'] }),
    );
  }
}

if (require.main === module) {
  const app = new App({ outputFileExtension: '.yaml', yamlOutputType: YamlOutputType.FILE_PER_CHART });
  new CsiExample(app, 'oras-csi-driver');
  app.synth();
}
