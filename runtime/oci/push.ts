import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { STREAM_CHUNK } from './chunks';
import { forEachLimited } from './concurrency';
import { DeadlineOptions, withDeadline } from './deadline';
import { DigestStream } from './digest';
import { RegistryError } from './errors';
import { Annotation, Descriptor, EMPTY_CONFIG, Manifest, MediaType } from './media-types';
import { titleForPath } from './paths';
import { Reporter, SilentReporter } from './progress';
import { Reference } from './reference';
import { RegistryClient } from './registry-client';
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
}

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
        layers.push(await packDirectoryLayer(source, title, scratch, item.mediaType, extra, options.unpack ?? true, signal));
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
    const upload = () => forEachLimited(uploads, options.concurrency ?? 3, async (layer) => {
      const title = layer.descriptor.annotations?.[Annotation.TITLE] ?? '(config)';
      const { digest, size } = layer.descriptor;
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
        await upload();
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
  extra: Record<string, string>, unpack: boolean, signal?: AbortSignal): Promise<Layer> {
  const file = join(scratch, `${randomBytes(8).toString('hex')}.tar.gz`);
  const tarHash = new DigestStream();
  const gzHash = new DigestStream();
  await pipeline(tarDirectory(path, title), tarHash, createGzip({ chunkSize: STREAM_CHUNK }), gzHash,
    createWriteStream(file, { flags: 'wx', highWaterMark: STREAM_CHUNK }), { signal });
  const annotations: Record<string, string> = { ...extra, [Annotation.TITLE]: title, [Annotation.CONTENT_DIGEST]: tarHash.digest() };
  if (unpack) annotations[Annotation.UNPACK] = 'true';
  return {
    descriptor: { mediaType: mediaType ?? MediaType.LAYER_TAR_GZIP, digest: gzHash.digest(), size: gzHash.size, annotations },
    open: () => createReadStream(file, { highWaterMark: STREAM_CHUNK }),
  };
}

/** Discards what it is given (for hashing a file without keeping it). */
class NullSink extends Writable {
  public override _write(_chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    callback();
  }
}
