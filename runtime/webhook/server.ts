import { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, Server } from 'node:https';
import { WebhookDefaults } from './annotations';
import { WebhookMetrics } from './metrics';
import { review } from './mutate';
import { Reporter } from '../oci/progress';

const MAX_BODY = 3 * 1024 * 1024;

export interface WebhookServerOptions {
  readonly port: number;
  readonly host?: string;
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  readonly defaults: WebhookDefaults;
  readonly reporter: Reporter;
}

function send(res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new Error(`the request body exceeds ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new Error('the request body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

/**
 * The admission webhook: POST /mutate (AdmissionReview v1 for Pods and Jobs),
 * GET /healthz, /readyz and /metrics. A malformed request gets 400 and the
 * server keeps serving. `stop()` stops accepting, lets requests in flight
 * finish, and resolves when the server is closed.
 */
export class WebhookServer {
  public readonly metrics = new WebhookMetrics();
  private readonly server: Server;
  private ready = false;

  constructor(private readonly options: WebhookServerOptions) {
    this.server = createServer({ cert: options.cert, key: options.key, minVersion: 'TLSv1.2' }, (req, res) => {
      this.handle(req, res).catch((err) => send(res, 500, { error: (err as Error).message }));
    });
    this.server.keepAliveTimeout = 30_000;
  }

  /** Replaces the serving certificate (after a rotation) for new connections. */
  public setCertificate(cert: string | Buffer, key: string | Buffer): void {
    this.server.setSecureContext({ cert, key });
  }

  public listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host ?? '0.0.0.0', () => {
        this.ready = true;
        const address = this.server.address();
        resolve(typeof address === 'object' && address ? address.port : this.options.port);
      });
    });
  }

  public async stop(): Promise<void> {
    this.ready = false;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') return send(res, 200, 'ok', 'text/plain');
    if (req.method === 'GET' && path === '/readyz') return send(res, this.ready ? 200 : 503, this.ready ? 'ok' : 'shutting down', 'text/plain');
    if (req.method === 'GET' && path === '/metrics') return send(res, 200, this.metrics.render(), 'text/plain; version=0.0.4');
    if (path !== '/mutate') return send(res, 404, { error: `no route ${path}; the webhook serves POST /mutate` });
    if (req.method !== 'POST') return send(res, 405, { error: 'use POST for /mutate' });

    const started = process.hrtime.bigint();
    let body: unknown;
    try {
      body = await readJson(req);
    } catch (err) {
      this.metrics.observe('malformed', Number(process.hrtime.bigint() - started) / 1e9);
      return send(res, 400, { error: (err as Error).message });
    }
    const result = review(body, this.options.defaults);
    this.metrics.observe(result.outcome, Number(process.hrtime.bigint() - started) / 1e9);
    if (result.outcome === 'denied' || result.outcome === 'malformed') {
      this.options.reporter.event(result.outcome, { body: result.body });
    }
    send(res, result.status, result.body);
  }
}
