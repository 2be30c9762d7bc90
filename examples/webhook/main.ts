// The admission webhook for Pods, Jobs and JobSets annotated the oras-operator way.
// It runs in its own namespace (oras-system); label a namespace to opt in:
//   kubectl label namespace my-workflows oras.converged-computing.github.io/webhook=enabled
// In your own project, import from 'cdk8s-oras' instead of '../../src'.
import { ApiObject, App, Chart, ChartProps, YamlOutputType } from 'cdk8s';
import { Construct } from 'constructs';
import { OrasWebhook } from '../../src';

export class WebhookExample extends Chart {
  public readonly webhook: OrasWebhook;

  constructor(scope: Construct, id: string, props: ChartProps = {}) {
    super(scope, id, { namespace: 'oras-system', ...props });
    new ApiObject(this, 'Namespace', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: this.namespace!, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } },
    });
    // Self-managed TLS by default; WebhookTls.certManager({ issuerName }) hands it to cert-manager.
    this.webhook = new OrasWebhook(this, 'Webhook');
  }
}

if (require.main === module) {
  const app = new App({ outputFileExtension: '.yaml', yamlOutputType: YamlOutputType.FILE_PER_CHART });
  new WebhookExample(app, 'oras-webhook');
  app.synth();
}
