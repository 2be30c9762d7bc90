import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { SelfManagedTls } from './self-managed-tls';
import { WebhookServer } from './server';
import { MAX_TIMEOUT_SECONDS } from '../../src/injection';
import { UsageError } from '../cli/command';
import { durationFlag, parseFlags, positiveInteger } from '../cli/registry-flags';
import { RUNTIME_VERSION } from '../cli/version';
import { defaultReporter } from '../oci/progress';

/**
 * The webhook command. It is bundled apart (oras-runtime-webhook.cjs) so
 * that the Kubernetes client it needs does not slow down every step container.
 */
export async function runWebhook(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args,
    options: {
      'port': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'runtime-image': { type: 'string' },
      'input-timeout': { type: 'string' },
      'start-timeout': { type: 'string' },
      'secret': { type: 'string' },
      'webhook-config': { type: 'string' },
      'service': { type: 'string' },
      'namespace': { type: 'string' },
      'tls-san': { type: 'string', multiple: true },
      'kubeconfig': { type: 'string' },
    },
  });
  const fileTls = values['tls-cert'] !== undefined || values['tls-key'] !== undefined;
  if (fileTls && (!values['tls-cert'] || !values['tls-key'])) throw new UsageError('--tls-cert and --tls-key go together');
  const seconds = (value: string | undefined, flag: string, fallback: string) => {
    const result = Math.round(durationFlag(value, flag, fallback) / 1000);
    // Checked here, or every pod would be denied for a flag of the webhook.
    if (result < 1 || result > MAX_TIMEOUT_SECONDS) throw new UsageError(`${flag} must be from 1s to ${MAX_TIMEOUT_SECONDS}s (365 days), not "${value}"`);
    return result;
  };
  const defaults = {
    runtimeImage: values['runtime-image'] ?? `ghcr.io/cdk8s-oras/oras-runtime:${RUNTIME_VERSION}`,
    inputTimeoutSeconds: seconds(values['input-timeout'], '--input-timeout', '30m'),
    startTimeoutSeconds: seconds(values['start-timeout'], '--start-timeout', '10m'),
  };
  const reporter = defaultReporter();
  let tls: { cert: string | Buffer; key: string | Buffer };
  let managed: SelfManagedTls | undefined;
  if (fileTls) {
    tls = { cert: await readFile(values['tls-cert']!), key: await readFile(values['tls-key']!) };
  } else {
    const namespace = values.namespace ?? process.env.POD_NAMESPACE;
    const missing = [['--secret', values.secret], ['--webhook-config', values['webhook-config']], ['--service', values.service], ['--namespace', namespace]]
      .filter(([, v]) => !v).map(([flag]) => flag);
    if (missing.length > 0) {
      throw new UsageError(`self-managed TLS needs ${missing.join(', ')} (or give --tls-cert and --tls-key)`);
    }
    const kubeConfig = new KubeConfig();
    if (values.kubeconfig) kubeConfig.loadFromFile(values.kubeconfig);
    else kubeConfig.loadFromDefault();
    const sans = values['tls-san'] ?? [];
    const service = values.service!;
    managed = new SelfManagedTls(kubeConfig, {
      namespace: namespace!,
      secretName: values.secret!,
      webhookConfigName: values['webhook-config']!,
      identity: {
        dnsNames: [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`, ...sans.filter((s) => !isIP(s))],
        ipAddresses: sans.filter((s) => isIP(s)),
      },
      reporter,
    });
    tls = await managed.ensure();
  }
  const server = new WebhookServer({
    port: positiveInteger(values.port, '--port', 8443),
    cert: tls.cert,
    key: tls.key,
    reporter,
    defaults,
  });
  const port = await server.listen();
  managed?.watch(tls as { cert: string; key: string; caCert: string; caKey: string }, 60 * 60 * 1000, (set) => {
    server.setCertificate(set.cert, set.key);
    reporter.event('certificate', { message: 'serving a renewed certificate' });
  });
  reporter.event('listening', { port, version: RUNTIME_VERSION, tls: managed ? 'self-managed' : 'files' });
  await new Promise<void>((resolve) => {
    const stop = () => {
      reporter.event('stopping', { message: 'finishing requests in flight' });
      managed?.stop();
      void server.stop().then(resolve);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return 0;
}
