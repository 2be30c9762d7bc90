// An ORAS artifact cache for `kubectl apply -f dist/oras-registry.yaml`.
// In your own project, import from 'cdk8s-oras' instead of '../../src'.
import { App, Chart, Size, YamlOutputType } from 'cdk8s';
import { Construct } from 'constructs';
import { OrasRegistry, RegistryStorage } from '../../src';

/**
 * A registry named `oras`, so that pods annotated `oras-cache: oras` find it
 * at oras:5000 in the namespace it is applied to. Its blobs live in an
 * emptyDir of up to 20 GiB; use RegistryStorage.persistentVolumeClaim to keep
 * them across pod restarts.
 */
export class RegistryExample extends Chart {
  public readonly registry: OrasRegistry;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.registry = new OrasRegistry(this, 'Registry', {
      name: 'oras',
      storage: RegistryStorage.emptyDir({ sizeLimit: Size.gibibytes(20) }),
    });
  }
}

if (require.main === module) {
  const app = new App({ outputFileExtension: '.yaml', yamlOutputType: YamlOutputType.FILE_PER_CHART });
  new RegistryExample(app, 'oras-registry');
  app.synth();
}
