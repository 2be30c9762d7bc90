import { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, Server } from 'node:https';
import { WebhookDefaults } from './annotations';
import { WebhookMetrics } from './metrics';
import { review, ReviewResult } from './mutate';
import { Reporter } from '../oci/progress';

/** The largest body read: the API server's own limit on a request is 3 MiB. */
const MAX_BODY = 3 * 1024 * 1024;
/** How much more of a larger body is read and dropped, so that its client gets the 413 rather than a reset. */
const MAX_DISCARD = 64 * 1024 * 1024;
/** The API server waits 30 s at most for an answer; a request still arriving after that is dropped. */
const REQUEST_TIMEOUT_MS = 30_000;

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

type Body =
  | { readonly kind: 'complete'; readonly bytes: Buffer }
  | { readonly kind: 'too-large'; readonly size: number }
  | { readonly kind: 'aborted' };

/** Reads the body up to MAX_BODY; a larger one is read on and dropped. Never rejects. */
function readBody(req: IncomingMessage): Promise<Body> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
      else chunks.length = 0;
      // Past this, answer now: the client will see its connection closed while it still sends.
      if (size > MAX_BODY + MAX_DISCARD) resolve({ kind: 'too-large', size });
    });
    req.on('end', () => resolve(size > MAX_BODY ? { kind: 'too-large', size } : { kind: 'complete', bytes: Buffer.concat(chunks) }));
    // The first of these settles the promise: 'close' after 'end' changes nothing.
    req.on('close', () => resolve({ kind: 'aborted' }));
    req.on('error', () => resolve({ kind: 'aborted' }));
  });
}

/**
 * The admission webhook: POST /mutate (AdmissionReview v1 for Pods, Jobs and JobSets),
 * GET /healthz, /readyz and /metrics. A malformed request gets 400 and the
 * server keeps serving. `stop()` stops accepting, lets requests in flight
 * finish, and resolves when the server is closed.
 */
export class WebhookServer {
  public readonly metrics = new WebhookMetrics();
  private readonly server: Server;
  private ready = false;

  constructor(private readonly options: WebhookServerOptions) {
    this.server = createServer({
      cert: options.cert,
      key: options.key,
      minVersion: 'TLSv1.2',
      requestTimeout: REQUEST_TIMEOUT_MS,
      headersTimeout: REQUEST_TIMEOUT_MS / 3,
    }, (req, res) => {
      this.handle(req, res).catch((err) => {
        // A fault of ours, never of the input.
        options.reporter.event('error', { message: (err as Error).message });
        if (!res.headersSent) send(res, 500, { error: (err as Error).message });
      });
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
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    /** Answers, records the outcome's latency, and logs what was denied or malformed. */
    const finish = (result: ReviewResult) => {
      this.metrics.observe(result.outcome, seconds());
      if (result.outcome === 'denied' || result.outcome === 'malformed') {
        this.options.reporter.event(result.outcome, { body: result.body });
      }
      send(res, result.status, result.body);
    };
    const malformed = (status: number, error: string): ReviewResult => ({ status, outcome: 'malformed', body: { error } });
    const body = await readBody(req);
    if (body.kind === 'aborted') {
      this.metrics.count('aborted');
      this.options.reporter.event('aborted', { message: 'the client closed the connection before the request body ended', seconds: seconds() });
      return;
    }
    if (body.kind === 'too-large') {
      res.setHeader('Connection', 'close');
      return finish(malformed(413, `the request body has more than ${MAX_BODY} bytes (3 MiB), the most the API server sends; send a smaller AdmissionReview`));
    }
    let json: unknown;
    try {
      json = JSON.parse(body.bytes.toString('utf8'));
    } catch {
      return finish(malformed(400, 'the request body is not JSON; send an admission.k8s.io/v1 AdmissionReview'));
    }
    finish(review(json, this.options.defaults));
  }
}
