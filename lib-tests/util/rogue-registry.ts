import { createHash } from 'crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'http';
import { AddressInfo, Socket } from 'net';
import { RawLayer, rawDescriptor, rawManifest } from './raw-artifact';

/** How the registry misbehaves when it serves one blob or manifest; undefined serves it honestly. */
export type Misbehaviour =
  /** Sends `bytes` bytes every `everyMs` ms. */
  | { kind: 'drip'; bytes: number; everyMs: number }
  /** Accepts the request and never answers. */
  | { kind: 'hang' }
  /** Sends the headers and the first `afterBytes` bytes, then nothing more, keeping the connection open. */
  | { kind: 'stall'; afterBytes: number }
  /** Sends the content, then zeros without end (no Content-Length). */
  | { kind: 'endless' };

export interface Served {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

interface Entry {
  readonly content: Buffer;
  readonly mediaType: string;
  misbehaviour?: Misbehaviour;
}

/** One layer of `RogueRegistry.artifact()`. */
export interface RogueLayer extends RawLayer {
  /** The size the manifest declares, when it should lie. Default: the true size. */
  readonly declaredSize?: number | string;
  readonly misbehaviour?: Misbehaviour;
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A registry of our own on loopback that serves whatever it is given, as badly as it is told to:
 * sizes that lie, bodies that drip, never end or hang, gzip bombs, indexes no registry would store.
 * Read-only: GET and HEAD of manifests (by tag or digest) and blobs. Every request is recorded.
 */
export class RogueRegistry {
  public static async start(): Promise<RogueRegistry> {
    const registry = new RogueRegistry();
    await new Promise<void>((resolve) => registry.server.listen(0, '127.0.0.1', resolve));
    return registry;
  }

  /** `METHOD path` of every request, in order. */
  public readonly requests: string[] = [];
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly blobs = new Map<string, Entry>();
  private readonly manifests = new Map<string, Entry>();

  private constructor() {
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  /** `127.0.0.1:<port>` */
  public get host(): string {
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Serves a blob by its digest; returns its descriptor. */
  public blob(content: Buffer, mediaType = 'application/octet-stream', misbehaviour?: Misbehaviour): Served {
    const digest = `sha256:${sha256(content)}`;
    this.blobs.set(digest, { content, mediaType, misbehaviour });
    return { mediaType, digest, size: content.length };
  }

  /** Serves a manifest (any JSON, valid or not) by its digest and, if given, by `tag`. */
  public manifest(repository: string, document: unknown, tag?: string, misbehaviour?: Misbehaviour): Served {
    const content = Buffer.isBuffer(document) ? document : Buffer.from(JSON.stringify(document));
    const mediaType = (document as { mediaType?: string }).mediaType ?? OCI_MANIFEST;
    const digest = `sha256:${sha256(content)}`;
    const entry = { content, mediaType, misbehaviour };
    this.manifests.set(`${repository}@${digest}`, entry);
    if (tag) this.manifests.set(`${repository}:${tag}`, entry);
    return { mediaType, digest, size: content.length };
  }

  /** An ORAS artifact of these layers under `repository:tag`; returns its reference. */
  public artifact(repository: string, tag: string, layers: RogueLayer[]): string {
    const descriptors = layers.map((layer) => {
      this.blob(layer.content, layer.mediaType, layer.misbehaviour);
      return { ...rawDescriptor(layer), size: layer.declaredSize ?? layer.content.length };
    });
    const manifest = rawManifest(descriptors);
    this.blob(Buffer.from('{}'), manifest.config!.mediaType);
    this.manifest(repository, manifest, tag);
    return `${this.host}/${repository}:${tag}`;
  }

  /** Changes how an already served blob or manifest (by digest) behaves. */
  public misbehave(digest: string, misbehaviour: Misbehaviour | undefined): void {
    for (const [key, entry] of [...this.blobs, ...this.manifests]) {
      if (key === digest || key.endsWith(`@${digest}`)) entry.misbehaviour = misbehaviour;
    }
  }

  public async stop(): Promise<void> {
    this.timers.forEach((timer) => clearInterval(timer));
    this.sockets.forEach((socket) => socket.destroy());
    await new Promise((resolve) => this.server.close(resolve));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push(`${req.method} ${req.url}`);
    req.resume();
    const match = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(req.url ?? '');
    const entry = !match ? undefined : match[2] === 'blobs'
      ? this.blobs.get(match[3])
      : this.manifests.get(`${match[1]}${match[3].startsWith('sha256:') ? '@' : ':'}${match[3]}`);
    if (!match || !entry || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'NOT_FOUND', message: 'not served by the rogue registry' }] }));
      return;
    }
    const digest = `sha256:${sha256(entry.content)}`;
    const misbehaviour = entry.misbehaviour;
    if (misbehaviour?.kind === 'hang') return;
    const headers: Record<string, string | number> = { 'Content-Type': entry.mediaType, 'Docker-Content-Digest': digest };
    if (misbehaviour?.kind !== 'endless') headers['Content-Length'] = entry.content.length;
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
    } else if (misbehaviour?.kind === 'drip') {
      this.drip(res, entry.content, misbehaviour.bytes, misbehaviour.everyMs);
    } else if (misbehaviour?.kind === 'stall') {
      res.write(entry.content.subarray(0, misbehaviour.afterBytes));
    } else if (misbehaviour?.kind === 'endless') {
      res.write(entry.content);
      this.drip(res, undefined, 64 * 1024, 1);
    } else {
      res.end(entry.content);
    }
  }

  /** Writes `content` (or zeros without end) `bytes` at a time. */
  private drip(res: ServerResponse, content: Buffer | undefined, bytes: number, everyMs: number): void {
    let at = 0;
    const timer = setInterval(() => {
      if (res.destroyed || (content && at >= content.length)) {
        clearInterval(timer);
        this.timers.delete(timer);
        if (!res.destroyed) res.end();
        return;
      }
      res.write(content ? content.subarray(at, at + bytes) : Buffer.alloc(bytes));
      at += bytes;
    }, everyMs);
    this.timers.add(timer);
    res.on('close', () => {
      clearInterval(timer);
      this.timers.delete(timer);
    });
  }
}
