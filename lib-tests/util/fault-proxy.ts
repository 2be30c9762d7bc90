import { createServer, IncomingMessage, request as httpRequest, Server, ServerResponse } from 'http';
import { AddressInfo } from 'net';

/** What the proxy does to one request; undefined passes it through untouched. */
export type Fault =
  | { kind: 'status'; status: number; body?: string }
  | { kind: 'truncate'; afterBytes: number }
  | { kind: 'corrupt' }
  | { kind: 'drop' }
  | { kind: 'redirect'; location: string }
  | { kind: 'slow'; bytesPerSecond: number }
  /** Holds the request until `until` settles, then passes it on: the registry answers as it is then. */
  | { kind: 'hold'; until: Promise<unknown> };

/** Decides the fault for a request; `count` is how often the same method and path were seen before. */
export type FaultRule = (method: string, path: string, count: number) => Fault | undefined;

export interface ProxiedRequest {
  readonly method: string;
  readonly path: string;
  readonly fault?: Fault['kind'];
  readonly authorization?: string;
}

/**
 * A loopback HTTP proxy in front of a real registry that injects faults:
 * error statuses, truncated or corrupted bodies, dropped connections.
 * `rule` decides per request; every request is recorded.
 */
export class FaultProxy {
  public static async start(upstream: string, rule: FaultRule = () => undefined): Promise<FaultProxy> {
    const proxy = new FaultProxy(upstream, rule);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  public readonly requests: ProxiedRequest[] = [];
  /** Where Location headers of the upstream point instead of this proxy (another origin, in tests of credential scoping). */
  public locationHost?: string;
  private readonly server: Server;

  private constructor(private readonly upstream: string, public rule: FaultRule) {
    this.server = createServer((req, res) => this.handle(req, res));
  }

  /** `127.0.0.1:<port>` */
  public get host(): string {
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? '/';
    const count = this.requests.filter((r) => r.method === req.method && r.path === path).length;
    const fault = this.rule(req.method ?? 'GET', path, count);
    this.requests.push({ method: req.method ?? 'GET', path, fault: fault?.kind, authorization: req.headers.authorization });
    if (fault?.kind === 'status') {
      req.resume();
      res.writeHead(fault.status, { 'Content-Type': 'application/json' });
      res.end(fault.body ?? JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected fault' }] }));
      return;
    }
    if (fault?.kind === 'redirect') {
      req.resume();
      res.writeHead(307, { Location: fault.location });
      res.end();
      return;
    }
    if (fault?.kind === 'drop') {
      req.resume();
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'hold') {
      const forward = () => this.forward(req, res, path);
      fault.until.then(forward, forward);
      return;
    }
    this.forward(req, res, path, fault);
  }

  /** Sends the request on to the registry, and its answer back with `fault` applied to the body. */
  private forward(req: IncomingMessage, res: ServerResponse, path: string, fault?: Fault): void {
    const [host, port] = this.upstream.split(':');
    const headers = { ...req.headers, host: this.upstream };
    const upstream = httpRequest({ host, port: Number(port), method: req.method, path, headers }, (up) => {
      const responseHeaders = { ...up.headers };
      if (typeof responseHeaders.location === 'string') {
        const location = responseHeaders.location.replace(this.upstream, this.host);
        responseHeaders.location = this.locationHost && location.startsWith('/') ? `http://${this.locationHost}${location}` : location.replace(this.host, this.locationHost ?? this.host);
      }
      res.writeHead(up.statusCode ?? 502, responseHeaders);
      if (fault?.kind === 'truncate') {
        let sent = 0;
        up.on('data', (chunk: Buffer) => {
          const room = fault.afterBytes - sent;
          sent += chunk.length;
          if (room <= 0) return;
          const cut = sent >= fault.afterBytes;
          // Cut the connection only once the partial body is on the wire.
          res.write(chunk.subarray(0, room), () => {
            if (cut) {
              up.destroy();
              res.socket?.destroy();
            }
          });
        });
        up.on('end', () => res.end());
      } else if (fault?.kind === 'slow') {
        up.on('data', (chunk: Buffer) => {
          up.pause();
          res.write(chunk);
          setTimeout(() => up.resume(), (chunk.length / fault.bytesPerSecond) * 1000);
        });
        up.on('end', () => res.end());
      } else if (fault?.kind === 'corrupt') {
        let first = true;
        up.on('data', (chunk: Buffer) => {
          const copy = Buffer.from(chunk);
          if (first && copy.length > 0) copy[0] ^= 0xff;
          first = false;
          res.write(copy);
        });
        up.on('end', () => res.end());
      } else {
        up.pipe(res);
      }
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  }

  public async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
