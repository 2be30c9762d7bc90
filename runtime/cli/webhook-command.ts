import { readFile } from 'node:fs/promises';
import { Command, UsageError } from './command';
import { parseDuration } from './duration';
import { parseFlags, positiveInteger } from './registry-flags';
import { RUNTIME_VERSION } from './version';
import { defaultReporter } from '../oci/progress';
import { WebhookServer } from '../webhook/server';

export const webhookCommand: Command = {
  name: 'webhook',
  summary: 'serve the mutating admission webhook (AdmissionReview v1 over HTTPS)',
  usage: [
    'Usage: oras-runtime webhook --port <n> --tls-cert <file> --tls-key <file> [options]',
    '',
    'Prepares annotated Pods and Jobs (oras.converged-computing.github.io/*) with the same injection',
    'that OrasWorkflowStep uses at synth time. Serves POST /mutate, GET /healthz, /readyz and /metrics.',
    'SIGTERM stops accepting, lets requests in flight finish, then exits.',
    '',
    '  --port <n>                 HTTPS port (default 8443)',
    '  --tls-cert, --tls-key      PEM files of the serving certificate (for example from cert-manager)',
    '  --runtime-image <image>    image of the injected containers (default: this runtime\'s own image)',
    '  --input-timeout <d>        default wait for inputs (default 30m)',
    '  --start-timeout <d>        how long oras-push waits for the app to start (default 10m)',
  ].join('\n'),
  async run(args) {
    const { values } = parseFlags({
      args,
      options: {
        'port': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'runtime-image': { type: 'string' },
        'input-timeout': { type: 'string' },
        'start-timeout': { type: 'string' },
      },
    });
    if (!values['tls-cert'] || !values['tls-key']) {
      throw new UsageError('--tls-cert and --tls-key are required: this build serves a certificate you provide (cert-manager or a Secret)');
    }
    const seconds = (value: string | undefined, flag: string, fallback: string) => {
      try {
        return Math.round(parseDuration(value ?? fallback) / 1000);
      } catch (err) {
        throw new UsageError(`${flag}: ${(err as Error).message}`);
      }
    };
    const reporter = defaultReporter();
    const server = new WebhookServer({
      port: positiveInteger(values.port, '--port', 8443),
      cert: await readFile(values['tls-cert']),
      key: await readFile(values['tls-key']),
      reporter,
      defaults: {
        runtimeImage: values['runtime-image'] ?? `ghcr.io/cdk8s-oras/oras-runtime:${RUNTIME_VERSION}`,
        inputTimeoutSeconds: seconds(values['input-timeout'], '--input-timeout', '30m'),
        startTimeoutSeconds: seconds(values['start-timeout'], '--start-timeout', '10m'),
      },
    });
    const port = await server.listen();
    reporter.event('listening', { port, version: RUNTIME_VERSION });
    await new Promise<void>((resolve) => {
      const stop = () => {
        reporter.event('stopping', { message: 'finishing requests in flight' });
        void server.stop().then(resolve);
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
    return 0;
  },
};
