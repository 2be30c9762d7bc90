import { loadBundled } from './bundled';
import { Command } from './command';

export const webhookCommand: Command = {
  name: 'webhook',
  summary: 'serve the mutating admission webhook (AdmissionReview v1 over HTTPS)',
  usage: [
    'Usage: oras-runtime webhook --port <n> --tls-cert <file> --tls-key <file> [options]',
    '       oras-runtime webhook --port <n> --secret <name> --webhook-config <name> --service <name> [options]',
    '',
    'Prepares annotated Pods, Jobs and JobSets (oras.converged-computing.github.io/*) with the same injection',
    'that OrasWorkflowStep uses at synth time. Serves POST /mutate, GET /healthz, /readyz and /metrics.',
    'SIGTERM stops accepting, lets requests in flight finish, then exits.',
    '',
    '  --port <n>                 HTTPS port (default 8443)',
    '  --tls-cert, --tls-key      PEM files of the serving certificate (for example from cert-manager)',
    'Without them, TLS is self-managed: a CA and a serving certificate are kept in a Secret, the CA is written',
    'into the caBundle of the MutatingWebhookConfiguration, and the certificate is renewed 30 days before expiry.',
    '  --secret <name>            Secret for the certificates (in --namespace)',
    '  --webhook-config <name>    MutatingWebhookConfiguration whose caBundle to keep current',
    '  --service <name>           Service the API server calls; its DNS names go into the certificate',
    '  --namespace <ns>           default $POD_NAMESPACE',
    '  --tls-san <name|ip>        another name or address for the certificate (repeatable)',
    '  --kubeconfig <file>        default: in-cluster, else $KUBECONFIG',
    '  --runtime-image <image>    image of the injected containers (default: this runtime\'s own image)',
    '  --input-timeout <d>        default wait for inputs (default 30m, at most 365 days)',
    '  --start-timeout <d>        how long oras-push waits for the app to start (default 10m)',
  ].join('\n'),
  run(args) {
    return loadBundled<{ runWebhook(a: string[]): Promise<number> }>('oras-runtime-webhook.cjs', '../webhook/run').runWebhook(args);
  },
};
