import { randomBytes } from 'node:crypto';
import { close as fsClose, createReadStream, open as fsOpen, write as fsWrite } from 'node:fs';
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, ZlibOptions } from 'node:zlib';
import { STREAM_AHEAD, STREAM_CHUNK } from './chunks';
import { forEachLimited } from './concurrency';
import { DeadlineOptions, withDeadline } from './deadline';
import { DigestStream } from './digest';
import { RegistryError } from './errors';
import { Annotation, Descriptor, EMPTY_CONFIG, Manifest, MediaType } from './media-types';
import { titleForPath } from './paths';
import { Reporter, SilentReporter } from './progress';
import { Reference } from './reference';
import { RegistryClient, UploadSession } from './registry-client';
import { tarDirectory } from './tar';

/** What a registry answers to a manifest whose blobs it does not have. */
const BLOB_UNKNOWN = new Set(['MANIFEST_BLOB_UNKNOWN', 'BLOB_UNKNOWN']);

/** One file or directory to push, with an optional media type (`path[:type]` on the command line). */
export interface PushItem {
  readonly path: string;
  readonly mediaType?: string;
}

/** Annotations as the oras `--annotation-file` holds them: `$manifest`, `$config`, and one key per title. */
export type AnnotationMap = Record<string, Record<string, string>>;

export interface PushOptions extends DeadlineOptions {
  /** Default `application/vnd.unknown.artifact.v1`. */
  readonly artifactType?: string;
  readonly annotations?: AnnotationMap;
  /** Parallel blob uploads. Default 3. */
  readonly concurrency?: number;
  /** Push directories without the unpack annotation, so that pullers keep the tarball. Default true. */
  readonly unpack?: boolean;
  readonly reporter?: Reporter;
  /** Resolves paths given relative; default the process working directory. */
  readonly cwd?: string;
  /** More tags to store the manifest under, after the reference's own. */
  readonly alsoTags?: readonly string[];
}

export interface PushResult {
  readonly digest: string;
  readonly size: number;
  readonly manifest: Manifest;
  /** The manifest's bytes as stored (what `--export-manifest` writes). */
  readonly raw: Buffer;
}

interface Layer {
  readonly descriptor: Descriptor;
  readonly open: () => Readable;
  /** Sent while it was being packed (a chunked upload): nothing is left to upload. */
  readonly uploaded?: boolean;
}

/**
 * A directory layer starts uploading in parts of this size while it is still being packed, once its first
 * part is ready. Smaller ones go whole, after a HEAD that skips what the registry has. 8 MiB is above
 * the smallest part registries accept (5 MiB at some).
 */
export const UPLOAD_PART = 8 * 1024 * 1024;

/** Splits `path[:mediaType]` at the last colon, as the oras CLI does. */
export function parsePushItem(argument: string): PushItem {
  const colon = argument.lastIndexOf(':');
  if (colon <= 0) return { path: argument };
  return { path: argument.slice(0, colon), mediaType: argument.slice(colon + 1) || undefined };
}

/**
 * Pushes files and directories as an ORAS artifact: files as raw layers
 * titled with their path, directories as tar+gzip layers with the content
 * digest of the uncompressed tar, the empty config, then the manifest.
 */
export function push(client: RegistryClient, reference: Reference, items: PushItem[], options: PushOptions = {}): Promise<PushResult> {
  return withDeadline(`push ${reference.text}`, options, (signal) => pushWithin(client, reference, items, options, signal));
}

async function pushWithin(
  client: RegistryClient, reference: Reference, items: PushItem[], options: PushOptions, signal?: AbortSignal,
): Promise<PushResult> {
  const reporter = options.reporter ?? new SilentReporter();
  const annotations = options.annotations ?? {};
  const scratch = await mkdtemp(join(tmpdir(), 'oras-push-'));
  try {
    const layers: Layer[] = [];
    const titles = new Set<string>();
    for (const item of items) {
      const title = titleForPath(item.path);
      if (titles.has(title)) throw new Error(`"${title}" is given twice; every file needs its own title`);
      titles.add(title);
      const extra = annotations[title] ?? {};
      const source = join(options.cwd ?? process.cwd(), item.path);
      const info = await lstat(source).catch(() => {
        throw new Error(`"${item.path}" does not exist`);
      });
      if (info.isDirectory()) {
        const early = new EarlyUpload(client, reference.repository, title, reporter, signal);
        layers.push(await packDirectoryLayer(source, title, scratch, item.mediaType, extra, options.unpack ?? true, early, signal));
      } else if (info.isFile()) {
        layers.push(await fileLayer(source, title, item.mediaType, extra));
      } else {
        throw new Error(`"${item.path}" is neither a file nor a directory; only files and directories can be pushed`);
      }
    }
    for (const key of Object.keys(annotations)) {
      if (key !== '$manifest' && key !== '$config' && !titles.has(key)) {
        throw new Error(`the annotation file names "${key}", which is not among the files pushed (${[...titles].join(', ') || 'none'})`);
      }
    }

    const config: Descriptor = annotations.$config ? { ...EMPTY_CONFIG, annotations: annotations.$config } : { ...EMPTY_CONFIG };
    const configBytes = Buffer.from(EMPTY_CONFIG.data, 'base64');
    const uploads: Layer[] = [{ descriptor: config, open: () => Readable.from([configBytes]) }, ...layers];
    const upload = (again = false) => forEachLimited(uploads, options.concurrency ?? 3, async (layer) => {
      const title = layer.descriptor.annotations?.[Annotation.TITLE] ?? '(config)';
      const { digest, size } = layer.descriptor;
      if (layer.uploaded && !again) {
        reporter.event('uploaded', { title, digest, size });
        return;
      }
      const open = () => layer.open().pipe(reporter.track(digest, title, size));
      const result = await client.pushBlob(reference.repository, layer.descriptor, open, { signal });
      reporter.event(result === 'exists' ? 'exists' : 'uploaded', { title, digest: layer.descriptor.digest, size: layer.descriptor.size });
    });
    await upload();

    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MediaType.OCI_MANIFEST,
      artifactType: options.artifactType ?? MediaType.DEFAULT_ARTIFACT_TYPE,
      config,
      layers: layers.map((l) => l.descriptor),
      annotations: { [Annotation.CREATED]: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'), ...annotations.$manifest },
    };
    const raw = Buffer.from(JSON.stringify(manifest));
    const digest = await client.pushManifest(reference.repository, reference.manifestReference, raw, MediaType.OCI_MANIFEST, { signal })
      .catch(async (err: unknown) => {
        // The registry lost blobs between upload and manifest (a garbage collection at its restart): upload what is missing, once.
        if (!(err instanceof RegistryError && err.codes.some((code) => BLOB_UNKNOWN.has(code)))) throw err;
        reporter.event('retrying', { reference: reference.text, message: `${err.message}; uploading the missing blobs again` });
        await upload(true);
        return client.pushManifest(reference.repository, reference.manifestReference, raw, MediaType.OCI_MANIFEST, { signal });
      });
    if (reference.digest && reference.digest !== digest) {
      throw new Error(`the manifest's digest is ${digest}, not ${reference.digest} as the reference demands`);
    }
    for (const tag of options.alsoTags ?? []) await client.pushManifest(reference.repository, tag, raw, MediaType.OCI_MANIFEST, { signal });
    reporter.event('pushed', { reference: reference.text, digest, size: raw.length, ...(options.alsoTags?.length ? { tags: options.alsoTags } : {}) });
    return { digest, size: raw.length, manifest, raw };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function fileLayer(path: string, title: string, mediaType: string | undefined, extra: Record<string, string>): Promise<Layer> {
  const hasher = new DigestStream();
  await pipeline(createReadStream(path, { highWaterMark: STREAM_CHUNK }), hasher, new NullSink());
  return {
    descriptor: {
      mediaType: mediaType ?? MediaType.LAYER_TAR,
      digest: hasher.digest(),
      size: hasher.size,
      annotations: { ...extra, [Annotation.TITLE]: title },
    },
    open: () => createReadStream(path, { highWaterMark: STREAM_CHUNK }),
  };
}

async function packDirectoryLayer(path: string, title: string, scratch: string, mediaType: string | undefined,
  extra: Record<string, string>, unpack: boolean, early: EarlyUpload, signal?: AbortSignal): Promise<Layer> {
  const file = join(scratch, `${randomBytes(8).toString('hex')}.tar.gz`);
  const tarHash = new DigestStream();
  const gzHash = new DigestStream();
  const sink = new FileSink(file);
  sink.on('progress', (written: number) => early.offer(file, written));
  // Room for the walk and the reads to run ahead while gzip compresses on the thread pool.
  const gzip = createGzip({ chunkSize: STREAM_CHUNK, writableHighWaterMark: STREAM_AHEAD } as ZlibOptions);
  try {
    await pipeline(tarDirectory(path, title), tarHash, gzip, gzHash, sink, { signal });
  } catch (err) {
    await early.stop();
    throw err;
  }
  const annotations: Record<string, string> = { ...extra, [Annotation.TITLE]: title, [Annotation.CONTENT_DIGEST]: tarHash.digest() };
  if (unpack) annotations[Annotation.UNPACK] = 'true';
  const descriptor = { mediaType: mediaType ?? MediaType.LAYER_TAR_GZIP, digest: gzHash.digest(), size: gzHash.size, annotations };
  return {
    descriptor,
    open: () => createReadStream(file, { highWaterMark: STREAM_CHUNK }),
    uploaded: await early.finish(file, descriptor),
  };
}

/**
 * Uploads a directory layer in parts while gzip is still writing it, so that the upload overlaps the
 * packing. The digest is known only at the end, and the closing PUT names it. If anything fails, the
 * chunked upload is abandoned and `finish` says so: the layer is then pushed whole, with retries.
 */
class EarlyUpload {
  private session: UploadSession | undefined;
  private sent = 0;
  private written = 0;
  private sending: Promise<void> | undefined;
  private failure: unknown;
  /** Set once the layer is pushed whole after all (packing failed): parts in flight are cut off, no more start. */
  private stopped = false;
  private readonly stopping = new AbortController();

  constructor(private readonly client: RegistryClient, private readonly repository: string, private readonly title: string,
    private readonly reporter: Reporter, private readonly signal?: AbortSignal) {}

  /** `written` bytes of `file` are on disk: sends every whole part not yet sent. */
  offer(file: string, written: number): void {
    this.written = written;
    if (this.stopped) return;
    this.sending ??= this.sendParts(file).finally(() => {
      this.sending = undefined;
    });
  }

  /** Sends the rest and closes the upload; false when there was no upload, or it failed. */
  async finish(file: string, descriptor: Descriptor): Promise<boolean> {
    await this.sending;
    if (!this.session || this.failure) return this.abandon();
    const start = this.sent;
    try {
      const rest = () => readRange(file, start, descriptor.size);
      await this.client.finishUpload(this.session, descriptor.digest, rest, descriptor.size - start, { signal: this.signal });
      return true;
    } catch (err) {
      this.failure = err;
      return this.abandon();
    }
  }

  /** Gives up the upload for a push of the whole layer; says why if it failed. */
  async abandon(): Promise<false> {
    await this.stop();
    if (this.failure && !this.signal?.aborted) {
      this.reporter.event('retrying', { title: this.title, message: `the upload in parts failed (${(this.failure as Error).message}); pushing the layer whole` });
    }
    return false;
  }

  /** Cuts off the part in flight and starts no other (the registry discards an unfinished session). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    await this.sending;
    this.session = undefined;
  }

  private async sendParts(file: string): Promise<void> {
    const signal = this.signal ? AbortSignal.any([this.signal, this.stopping.signal]) : this.stopping.signal;
    try {
      while (!this.failure && !this.stopped && this.written - this.sent >= UPLOAD_PART) {
        this.session ??= await this.client.startUpload(this.repository, { signal });
        const start = this.sent;
        await this.client.uploadChunk(this.session, () => readRange(file, start, start + UPLOAD_PART), UPLOAD_PART, { signal });
        this.sent += UPLOAD_PART;
      }
    } catch (err) {
      if (!this.stopped) this.failure = err;
    }
  }
}

/** Bytes [start, end) of a file. */
function readRange(file: string, start: number, end: number): Readable {
  return createReadStream(file, { start, end: end - 1, highWaterMark: STREAM_CHUNK });
}

/** Writes to a new file (never over one) and emits `progress` with the bytes on disk after each write. */
class FileSink extends Writable {
  private fd: number | undefined;
  private written = 0;
  /** The write on the thread pool, if one is: the file is closed only after it. */
  private writing: Promise<void> | undefined;

  constructor(private readonly file: string) {
    super({ highWaterMark: STREAM_CHUNK });
  }

  public override _construct(callback: (error?: Error | null) => void): void {
    fsOpen(this.file, 'wx', 0o600, (err, fd) => {
      this.fd = fd;
      callback(err);
    });
  }

  public override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let done!: () => void;
    this.writing = new Promise((resolve) => { done = resolve; });
    const next = (at: number): void => {
      if (at === chunk.length) {
        this.written += chunk.length;
        this.emit('progress', this.written);
        done();
        return callback();
      }
      fsWrite(this.fd!, chunk, at, chunk.length - at, null, (err, n) => {
        if (!err) return next(at + n);
        done();
        callback(err);
      });
    };
    next(0);
  }

  public override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const fd = this.fd;
    if (fd === undefined) return callback(err);
    this.fd = undefined;
    void (this.writing ?? Promise.resolve()).then(() => fsClose(fd, (closeErr) => callback(err ?? closeErr)));
  }
}

/** Discards what it is given (for hashing a file without keeping it). */
class NullSink extends Writable {
  public override _write(_chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    callback();
  }
}
