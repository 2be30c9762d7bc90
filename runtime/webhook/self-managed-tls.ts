import { AdmissionregistrationV1Api, CoreV1Api, KubeConfig, V1Secret } from '@kubernetes/client-node';
import { CertificateSet, issueCertificates, problemWith, ServingIdentity } from './certificates';
import { Reporter } from '../oci/progress';
import { retry, RetryPolicy } from '../oci/retry';

const DAY = 24 * 60 * 60 * 1000;

export interface SelfManagedTlsOptions {
  readonly namespace: string;
  /** Secret that holds ca.crt, ca.key, tls.crt and tls.key, shared by every replica. */
  readonly secretName: string;
  /** MutatingWebhookConfiguration whose caBundle this keeps current. */
  readonly webhookConfigName: string;
  readonly identity: ServingIdentity;
  /** Renew this long before expiry. */
  readonly renewBeforeMs?: number;
  readonly reporter: Reporter;
}

function statusOf(err: unknown): number | undefined {
  const e = err as { code?: number; statusCode?: number; response?: { statusCode?: number } };
  return e.code ?? e.statusCode ?? e.response?.statusCode;
}

/** Another writer changed the object between our read and our write (409): read it again. */
class UpdateConflict extends Error {
  public override name = 'UpdateConflict';
}

/** Read-modify-write races between replicas settle within a few quick attempts. */
const CONFLICT_POLICY: RetryPolicy = { attempts: 5, baseMs: 100, maxMs: 2_000 };

async function untilNoConflict<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await retry(work, { policy: CONFLICT_POLICY, retryable: (err) => err instanceof UpdateConflict });
  } catch (err) {
    if (err instanceof UpdateConflict) throw new Error(`${what} kept changing under us; giving up after ${CONFLICT_POLICY.attempts} attempts`);
    throw err;
  }
}

function decode(secret: V1Secret | undefined): Partial<CertificateSet> {
  const data = secret?.data ?? {};
  const get = (key: string) => (data[key] ? Buffer.from(data[key], 'base64').toString('utf8') : undefined);
  return { caCert: get('ca.crt'), caKey: get('ca.key'), cert: get('tls.crt'), key: get('tls.key') };
}

function encode(set: CertificateSet): Record<string, string> {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return { 'ca.crt': b64(set.caCert), 'ca.key': b64(set.caKey), 'tls.crt': b64(set.cert), 'tls.key': b64(set.key) };
}

/**
 * The webhook's own TLS: a CA and a serving certificate kept in a Secret
 * (replicas agree through the Secret's resourceVersion), the CA written into
 * the caBundle of the webhook's MutatingWebhookConfiguration, and renewal
 * well before expiry.
 */
export class SelfManagedTls {
  private readonly core: CoreV1Api;
  private readonly admission: AdmissionregistrationV1Api;
  private timer?: NodeJS.Timeout;

  constructor(kubeConfig: KubeConfig, private readonly options: SelfManagedTlsOptions) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.admission = kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  }

  /** Makes sure a valid certificate is stored and trusted; resolves to it. */
  public async ensure(): Promise<CertificateSet> {
    const { namespace, secretName } = this.options;
    return untilNoConflict(`Secret ${namespace}/${secretName}`, () => this.ensureOnce());
  }

  private async ensureOnce(): Promise<CertificateSet> {
    const { namespace, secretName } = this.options;
    const secret = await this.core.readNamespacedSecret({ name: secretName, namespace }).catch((err) => {
      if (statusOf(err) === 404) return undefined;
      throw new Error(`cannot read Secret ${namespace}/${secretName}: ${(err as Error).message}. The webhook's Role must allow get on it.`);
    });
    const stored = decode(secret);
    const until = new Date(Date.now() + (this.options.renewBeforeMs ?? 30 * DAY));
    const problem = problemWith(stored, this.options.identity, until);
    if (!problem) {
      await this.trust(stored.caCert!);
      return stored as CertificateSet;
    }
    const next = issueCertificates(this.options.identity, problem.caUsable ? { cert: stored.caCert!, key: stored.caKey! } : undefined);
    this.options.reporter.event('certificate', { message: `issuing a serving certificate: ${problem.message}` });
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: secretName, namespace, resourceVersion: secret?.metadata?.resourceVersion, labels: { 'app.kubernetes.io/part-of': 'cdk8s-oras' } },
      data: encode(next),
    };
    try {
      if (secret) await this.core.replaceNamespacedSecret({ name: secretName, namespace, body });
      else await this.core.createNamespacedSecret({ namespace, body });
    } catch (err) {
      // Another replica won the race: read what it stored.
      if (statusOf(err) === 409) throw new UpdateConflict();
      throw new Error(`cannot store Secret ${namespace}/${secretName}: ${(err as Error).message}. The webhook's Role must allow create and update on it.`);
    }
    await this.trust(next.caCert, problem.caUsable ? undefined : stored.caCert);
    return next;
  }

  /** Writes the CA (and, during a CA change, the previous one too) into every webhook's caBundle. */
  private async trust(caCert: string, previousCa?: string): Promise<void> {
    const name = this.options.webhookConfigName;
    const bundle = Buffer.from(previousCa ? `${caCert}${previousCa}` : caCert).toString('base64');
    const singleCa = Buffer.from(caCert).toString('base64');
    await untilNoConflict(`MutatingWebhookConfiguration ${name}`, async () => {
      const config = await this.admission.readMutatingWebhookConfiguration({ name }).catch((err) => {
        throw new Error(`cannot read MutatingWebhookConfiguration ${name}: ${(err as Error).message}. The webhook's ClusterRole must allow get on it.`);
      });
      const current = config.webhooks ?? [];
      if (current.every((w) => w.clientConfig.caBundle === bundle || (!previousCa && w.clientConfig.caBundle === singleCa))) return;
      for (const webhook of current) webhook.clientConfig.caBundle = bundle;
      try {
        await this.admission.replaceMutatingWebhookConfiguration({ name, body: config });
      } catch (err) {
        if (statusOf(err) === 409) throw new UpdateConflict();
        throw new Error(`cannot update MutatingWebhookConfiguration ${name}: ${(err as Error).message}. The webhook's ClusterRole must allow update on it.`);
      }
      this.options.reporter.event('ca-bundle', { message: `caBundle of ${name} updated` });
    });
  }

  /** Re-checks every `intervalMs`; calls `onChange` when the serving certificate changed (renewed here or by another replica). */
  public watch(current: CertificateSet, intervalMs: number, onChange: (set: CertificateSet) => void): void {
    let serving = current.cert;
    this.timer = setInterval(() => {
      this.ensure().then((set) => {
        if (set.cert !== serving) {
          serving = set.cert;
          onChange(set);
        }
      }, (err) => this.options.reporter.event('certificate-error', { message: (err as Error).message }));
    }, intervalMs);
    this.timer.unref();
  }

  public stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
