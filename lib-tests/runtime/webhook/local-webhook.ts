import { PassThrough } from 'stream';
import { connect } from 'tls';
import { PREFIX, WebhookDefaults } from '../../../runtime/webhook/annotations';
import { issueCertificates } from '../../../runtime/webhook/certificates';
import { WebhookServer } from '../../../runtime/webhook/server';
import { request } from '../../util/http';

export const DEFAULTS: WebhookDefaults = { runtimeImage: 'ghcr.io/cdk8s-oras/oras-runtime:9.9.9', inputTimeoutSeconds: 1800, startTimeoutSeconds: 600 };

/** The operator's annotations, named without their prefix. */
export function annotations(values: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [PREFIX + k, v]));
}

/** An annotated Pod with one container that can be prepared. */
export function annotatedPod(values: Record<string, string>, spec: Record<string, unknown> = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', annotations: annotations(values) },
    spec: { containers: [{ name: 'app', image: 'busybox:1.36.1', command: ['sh', '-c', 'date > /work/date.txt'], workingDir: '/work' }], ...spec },
  };
}

/** The AdmissionReview the API server sends for creating `object`. */
export function reviewOf(object: any, uid: unknown = 'u-1') {
  const kind = object?.kind === 'Job' ? 'Job' : 'Pod';
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid, kind: { group: kind === 'Job' ? 'batch' : '', version: 'v1', kind }, operation: 'CREATE', namespace: 'team', object },
  };
}

export interface RawExchange {
  /** What the server sent before the connection ended. */
  readonly answer: string;
  /** The connection failed (for example it was reset) rather than ended. */
  readonly error?: Error;
}

/** The webhook server in this process (so that coverage sees it), on loopback, with a certificate of its own CA. */
export class LocalWebhook {
  public static async start(): Promise<LocalWebhook> {
    const set = issueCertificates({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const events: { name: string; fields: Record<string, unknown> }[] = [];
    const server = new WebhookServer({
      port: 0,
      host: '127.0.0.1',
      cert: set.cert,
      key: set.key,
      defaults: DEFAULTS,
      reporter: { event: (name, fields) => events.push({ name, fields }), track: () => new PassThrough() },
    });
    const port = await server.listen();
    return new LocalWebhook(server, port, set.caCert, events);
  }

  private constructor(
    public readonly server: WebhookServer,
    public readonly port: number,
    public readonly ca: string,
    public readonly events: { name: string; fields: Record<string, unknown> }[],
  ) {}

  public get(path: string) {
    return request(`https://127.0.0.1:${this.port}${path}`, { ca: this.ca });
  }

  public post(body: string | Buffer) {
    return request(`https://127.0.0.1:${this.port}/mutate`, { method: 'POST', ca: this.ca, headers: { 'Content-Type': 'application/json' }, body });
  }

  /** The count of requests with this outcome in /metrics (0 when absent). */
  public async count(outcome: string): Promise<number> {
    const text = (await this.get('/metrics')).body.toString();
    return Number(new RegExp(`^oras_webhook_requests_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  }

  /** How many requests the latency histogram holds. */
  public async timed(): Promise<number> {
    const text = (await this.get('/metrics')).body.toString();
    return Number(/^oras_webhook_request_duration_seconds_count (\d+)$/m.exec(text)![1]);
  }

  /**
   * Writes `parts` over TLS, waiting `pauseMs` before each; then, with
   * `abort`, waits once more and drops the connection, else waits for the server to end it.
   */
  public raw(parts: (string | Buffer)[], options: { pauseMs?: number; abort?: boolean } = {}): Promise<RawExchange> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      const answer = () => Buffer.concat(chunks).toString('utf8');
      const pause = () => new Promise((r) => setTimeout(r, options.pauseMs ?? 0));
      const socket = connect({ host: '127.0.0.1', port: this.port, ca: this.ca }, async () => {
        for (const part of parts) {
          await pause();
          if (socket.destroyed) return;
          socket.write(part);
        }
        if (options.abort) {
          await pause();
          socket.destroy();
          resolve({ answer: answer() });
        }
      });
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.on('end', () => { socket.end(); resolve({ answer: answer() }); });
      socket.on('close', () => resolve({ answer: answer() }));
      socket.on('error', (error) => resolve({ answer: answer(), error }));
    });
  }

  public stop(): Promise<void> {
    return this.server.stop();
  }
}
