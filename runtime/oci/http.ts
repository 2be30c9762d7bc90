import * as http from 'node:http';
import * as https from 'node:https';
import { Readable } from 'node:stream';
import * as tls from 'node:tls';
import { LimitError, requestLabel, StalledError, TransportError } from './errors';

/** The slowest transfer we wait for: fewer than `bytes` in any `windowMs` while a body moves is a stall. */
export interface MinRate {
  readonly bytes: number;
  readonly windowMs: number;
}

/** 32 KiB in 30 s (about 1 KiB/s): a link slower than that is broken, not slow. */
export const DEFAULT_MIN_RATE: MinRate = { bytes: 32 * 1024, windowMs: 30_000 };

/** How requests reach a registry. */
export interface TransportOptions {
  /** Speak HTTP instead of HTTPS. */
  readonly plainHttp?: boolean;
  /** HTTPS without certificate verification. */
  readonly insecure?: boolean;
  /** PEM certificates trusted in addition to the system's (a private CA), as the oras CLI's `--ca-file`. */
  readonly ca?: string;
  /** Time without an answer, or without any traffic on the socket, before a request fails (ms). Default 60 s. */
  readonly idleTimeoutMs?: number;
  /** A request or response body slower than this fails with a StalledError. Default DEFAULT_MIN_RATE; bytes 0 turns it off. */
  readonly minRate?: MinRate;
  /** Parallel connections per registry. Default 8. */
  readonly maxSockets?: number;
  readonly userAgent?: string;
  /** Told of every response as it arrives (`--debug`): method, URL without its query, status and milliseconds. */
  readonly onResponse?: (method: string, url: URL, status: number, ms: number) => void;
  /**
   * A keep-alive agent from `createAgent` that several clients share (its connections outlive each
   * client; credentials travel per request, never with a connection). Default: one of the transport's own.
   */
  readonly agent?: http.Agent;
}

/** A keep-alive agent for a registry as `options` reach it (scheme, TLS verification, extra CAs, connections). */
export function createAgent(options: Pick<TransportOptions, 'plainHttp' | 'insecure' | 'ca' | 'maxSockets'>): http.Agent {
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 8 };
  return options.plainHttp
    ? new http.Agent(agentOptions)
    : new https.Agent({
      ...agentOptions,
      rejectUnauthorized: !options.insecure,
      // Besides the system's CAs, never instead of them.
      ...(options.ca ? { ca: [...tls.rootCertificates, options.ca] } : {}),
    });
}

export interface HttpRequest {
  readonly method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  readonly url: URL;
  readonly headers?: Record<string, string>;
  /** The body, or a factory that makes it anew for each attempt. */
  readonly body?: Buffer | (() => Readable);
  /** Aborts the request and its response body with the signal's reason. */
  readonly signal?: AbortSignal;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  /** The final URL after redirects. */
  readonly url: URL;
  readonly body: http.IncomingMessage;
}

const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

/** Reads a small response body whole (error bodies, manifests, tokens); more than `limit` bytes fails with `tooLarge()`. */
export async function readBody(body: Readable, limit: number, tooLarge?: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      throw tooLarge?.() ?? new LimitError('the response body', 'bytes', limit, 'the registry sent more than a response of this kind may hold');
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * HTTP for one registry: timeouts, a minimum transfer rate, cancellation and redirects. One attempt per
 * call; RegistryClient retries with the client's policy.
 */
export class Transport {
  public readonly scheme: 'http' | 'https';
  private readonly agent: http.Agent;
  /** The agent is shared: close() leaves it open. */
  private readonly sharedAgent: boolean;
  private readonly idleTimeoutMs: number;
  private readonly minRate: MinRate;
  private readonly userAgent: string;
  private readonly onResponse?: TransportOptions['onResponse'];

  constructor(options: TransportOptions = {}) {
    this.scheme = options.plainHttp ? 'http' : 'https';
    this.sharedAgent = options.agent !== undefined;
    this.agent = options.agent ?? createAgent(options);
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.minRate = options.minRate ?? DEFAULT_MIN_RATE;
    this.userAgent = options.userAgent ?? 'oras-runtime';
    this.onResponse = options.onResponse;
  }

  /** Sends a request; redirects are followed for GET and HEAD, without Authorization once the origin changes. */
  public async send(request: HttpRequest): Promise<HttpResponse> {
    let current = request;
    for (let redirects = 0; ; redirects++) {
      const response = await this.once(current);
      if (!REDIRECT_STATUS.has(response.status) || !response.headers.location || (current.method !== 'GET' && current.method !== 'HEAD')) {
        return response;
      }
      response.body.resume();
      if (redirects >= MAX_REDIRECTS) throw new TransportError(request.method, request.url, new Error(`more than ${MAX_REDIRECTS} redirects`));
      const next = new URL(response.headers.location, current.url);
      const headers = { ...current.headers };
      if (next.host !== current.url.host || next.protocol !== current.url.protocol) delete headers.Authorization;
      current = { ...current, url: next, headers };
    }
  }

  private once(request: HttpRequest): Promise<HttpResponse> {
    const { signal, method, url } = request;
    const transport = url.protocol === 'http:' ? http : https;
    const agent = url.protocol === `${this.scheme}:` ? this.agent : undefined;
    const label = requestLabel(method, url);
    const started = Date.now();
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      let response: http.IncomingMessage | undefined;
      const stop = (err: Error) => {
        response?.destroy(err);
        req.destroy(err);
      };
      const req = transport.request(url, { method, agent, headers: { 'User-Agent': this.userAgent, ...request.headers } }, (res) => {
        response = res;
        this.onResponse?.(method, new URL(url.pathname, url.origin), res.statusCode ?? 0, Date.now() - started);
        res.setTimeout(this.idleTimeoutMs, () => stop(new StalledError(`${label}: no data for ${this.idleTimeoutMs} ms`)));
        resolve({ status: res.statusCode ?? 0, headers: res.headers, url, body: res });
      });
      req.setTimeout(this.idleTimeoutMs, () => stop(new StalledError(`${label}: no response for ${this.idleTimeoutMs} ms`)));
      req.on('error', (err) => reject(err === signal?.reason || err instanceof StalledError ? err : new TransportError(method, url, err)));
      const aborted = () => stop(signal!.reason);
      signal?.addEventListener('abort', aborted, { once: true });
      const unwatch = this.watchRate(req, () => response, label, request.body !== undefined, stop);
      req.once('close', () => {
        signal?.removeEventListener('abort', aborted);
        unwatch();
      });
      const body = request.body;
      if (body === undefined) {
        req.end();
      } else if (Buffer.isBuffer(body)) {
        req.end(body);
      } else {
        const stream = body();
        stream.on('error', (err) => req.destroy(err));
        req.once('close', () => stream.destroy());
        stream.pipe(req);
      }
    });
  }

  /**
   * Checks every window that a body moving in either direction (our upload, or the response while we
   * wait for it) moved at least the minimum; waiting for the answer itself is the idle timeout's job.
   */
  private watchRate(
    req: http.ClientRequest, response: () => http.IncomingMessage | undefined, label: string, uploads: boolean, stop: (err: Error) => void,
  ): () => void {
    const { bytes, windowMs } = this.minRate;
    if (bytes <= 0) return () => undefined;
    const moved = () => (req.socket ? req.socket.bytesRead + req.socket.bytesWritten : 0);
    let last = 0;
    req.once('socket', () => { last = moved(); });
    const timer = setInterval(() => {
      const res = response();
      const uploading = uploads && !req.writableFinished;
      // Unread data in the response means we are the slow side.
      const downloading = res !== undefined && !res.complete && res.readableLength === 0;
      const now = moved();
      if ((uploading || downloading) && now - last < bytes) {
        stop(new StalledError(`${label}: the transfer stalled (${now - last} bytes in ${windowMs} ms, the minimum is ${bytes})`));
      }
      last = now;
    }, windowMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  public close(): void {
    if (!this.sharedAgent) this.agent.destroy();
  }
}
