import * as http from 'node:http';
import * as https from 'node:https';
import { Readable } from 'node:stream';

/** How requests reach a registry. */
export interface TransportOptions {
  /** Speak HTTP instead of HTTPS. */
  readonly plainHttp?: boolean;
  /** HTTPS without certificate verification. */
  readonly insecure?: boolean;
  /** Idle time on a socket before the request fails (ms). Default 60 s. */
  readonly idleTimeoutMs?: number;
  /** Attempts for a request that meets a 5xx, 429 or connection error. Default 5. */
  readonly attempts?: number;
  /** First retry delay (ms), doubled each time with jitter. Default 250. */
  readonly retryBaseMs?: number;
  /** Parallel connections per registry. Default 8. */
  readonly maxSockets?: number;
  readonly userAgent?: string;
}

export interface HttpRequest {
  readonly method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  readonly url: URL;
  readonly headers?: Record<string, string>;
  /** The body, or a factory that makes it anew for each attempt. */
  readonly body?: Buffer | (() => Readable);
  /** Attempts for this request; 1 for requests that must not be repeated blindly. Default: the transport's. */
  readonly attempts?: number;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  /** The final URL after redirects. */
  readonly url: URL;
  readonly body: http.IncomingMessage;
}

const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
const RETRY_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ERR_STREAM_PREMATURE_CLOSE', 'ORAS_TIMEOUT']);
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

/** A request that failed before any response: names the method, URL and cause. */
export class TransportError extends Error {
  constructor(request: HttpRequest, public readonly cause: Error & { code?: string }, attempts: number) {
    // Origin and path only: a query may hold presigned credentials.
    super(`${request.method} ${request.url.origin}${request.url.pathname}: ${cause.message}${attempts > 1 ? ` (after ${attempts} attempts)` : ''}`);
    this.name = 'TransportError';
  }
}

export function isRetryableError(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code !== undefined && RETRY_CODES.has(code);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reads a small response body whole (error bodies, manifests, tokens), refusing more than `limit` bytes. */
export async function readBody(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      throw new Error(`response body exceeds ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** HTTP with retries, backoff, timeouts and redirects for one registry. */
export class Transport {
  public readonly scheme: 'http' | 'https';
  private readonly agent: http.Agent;
  private readonly attempts: number;
  private readonly retryBaseMs: number;
  private readonly idleTimeoutMs: number;
  private readonly userAgent: string;

  constructor(options: TransportOptions = {}) {
    this.scheme = options.plainHttp ? 'http' : 'https';
    const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 8 };
    this.agent = options.plainHttp
      ? new http.Agent(agentOptions)
      : new https.Agent({ ...agentOptions, rejectUnauthorized: !options.insecure });
    this.attempts = Math.max(1, options.attempts ?? 5);
    this.retryBaseMs = options.retryBaseMs ?? 250;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.userAgent = options.userAgent ?? 'oras-runtime';
  }

  /**
   * Sends a request. Connection errors and 5xx/429 answers are retried with
   * backoff while the body can be made again; redirects are followed for GET
   * and HEAD, without Authorization once the host changes.
   */
  public async send(request: HttpRequest): Promise<HttpResponse> {
    let current = request;
    for (let redirects = 0; ; redirects++) {
      const response = await this.sendWithRetries(current);
      if (!REDIRECT_STATUS.has(response.status) || !response.headers.location || (current.method !== 'GET' && current.method !== 'HEAD')) {
        return response;
      }
      response.body.resume();
      if (redirects >= MAX_REDIRECTS) throw new TransportError(request, new Error(`more than ${MAX_REDIRECTS} redirects`), 1);
      const next = new URL(response.headers.location, current.url);
      const headers = { ...current.headers };
      if (next.host !== current.url.host || next.protocol !== current.url.protocol) delete headers.Authorization;
      current = { ...current, url: next, headers };
    }
  }

  private async sendWithRetries(request: HttpRequest): Promise<HttpResponse> {
    const replayable = request.body === undefined || Buffer.isBuffer(request.body) || typeof request.body === 'function';
    const attempts = request.attempts ?? this.attempts;
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= attempts || !replayable;
      try {
        const response = await this.once(request);
        if (!RETRY_STATUS.has(response.status) || last) return response;
        response.body.resume();
        await sleep(this.backoff(attempt, response.headers['retry-after']));
      } catch (err) {
        if (!isRetryableError(err) || last) throw new TransportError(request, err as Error, attempt);
        await sleep(this.backoff(attempt));
      }
    }
  }

  private backoff(attempt: number, retryAfter?: string): number {
    const seconds = retryAfter !== undefined ? Number(retryAfter) : NaN;
    if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds * 1000, 30_000);
    const base = this.retryBaseMs * 2 ** (attempt - 1);
    return Math.min(base / 2 + Math.random() * base, 10_000);
  }

  private once(request: HttpRequest): Promise<HttpResponse> {
    const transport = request.url.protocol === 'http:' ? http : https;
    const agent = request.url.protocol === `${this.scheme}:` ? this.agent : undefined;
    return new Promise((resolve, reject) => {
      const req = transport.request(request.url, {
        method: request.method,
        agent,
        headers: { 'User-Agent': this.userAgent, ...request.headers },
      }, (res) => {
        res.setTimeout(this.idleTimeoutMs, () => {
          res.destroy(Object.assign(new Error(`no data for ${this.idleTimeoutMs} ms`), { code: 'ORAS_TIMEOUT' }));
        });
        resolve({ status: res.statusCode ?? 0, headers: res.headers, url: request.url, body: res });
      });
      req.setTimeout(this.idleTimeoutMs, () => {
        req.destroy(Object.assign(new Error(`no response for ${this.idleTimeoutMs} ms`), { code: 'ORAS_TIMEOUT' }));
      });
      req.on('error', reject);
      const body = request.body;
      if (body === undefined) {
        req.end();
      } else if (Buffer.isBuffer(body)) {
        req.end(body);
      } else {
        const stream = body();
        stream.on('error', (err) => req.destroy(err));
        stream.pipe(req);
      }
    });
  }

  public close(): void {
    this.agent.destroy();
  }
}
