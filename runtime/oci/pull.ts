import { FileHandle, mkdir, open, realpath, rm, rmdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Transform, TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, ZlibOptions } from 'node:zlib';
import { DOWNLOAD_AHEAD, STREAM_AHEAD, STREAM_CHUNK } from './chunks';
import { forEachLimited } from './concurrency';
import { DeadlineOptions, withDeadline } from './deadline';
import { VerifyingStream } from './digest';
import { asDiskFull, ContentMismatchError, DiskFullError, InvalidTarError, LimitError } from './errors';
import { Annotation, Descriptor, isIndex, Manifest, MediaType } from './media-types';
import { assertNoSymlinkParents, assertSafeTitle, lstatOrUndefined } from './paths';
import { formatBytes, Reporter, SilentReporter } from './progress';
import { Reference } from './reference';
import { FetchedManifest, RegistryClient } from './registry-client';
import { retry } from './retry';
import { checkMerge, checkPlace, mergeInto, removeTree, Staging } from './staging';
import { extractTar, ExtractResult } from './tar';

const MAX_INDEX_DEPTH = 4;

/** Defaults of the limits a pull enforces; PullOptions overrides each. */
export const PULL_LIMITS = {
  /** Distinct manifests in an artifact, an index and its children together. */
  manifests: 256,
  /** Layer descriptors across all of them. */
  layers: 10_000,
  /** A directory layer may unpack to this many times its compressed size... */
  unpackRatio: 100,
  /** ...and always to at least this (1 GiB), so small layers of zero-filled files still pass. */
  unpackFloorBytes: 1024 ** 3,
} as const;

export interface PullOptions extends DeadlineOptions {
  /** Parallel blob downloads. Default 3. */
  readonly concurrency?: number;
  /** Unpack directory layers (the default); false keeps each tarball as a file named by its title. */
  readonly unpack?: boolean;
  /** Keep only layers of these media types. Default: all. */
  readonly mediaTypes?: string[];
  readonly reporter?: Reporter;
  /** Largest size (bytes) one directory layer may unpack to. Default: 100 times its compressed size, at least 1 GiB. */
  readonly maxUnpackedBytes?: number;
  /** Distinct manifests in the artifact, an index and its children together. Default 256. */
  readonly maxManifests?: number;
  /** Layers across all manifests. Default 10 000. */
  readonly maxLayers?: number;
  /** Called with the layers the pull writes, once its manifests are read and before anything is written (a cache makes room here). */
  readonly beforeTransfer?: (layers: Descriptor[]) => Promise<void>;
  /** The reference's manifest, when the caller fetched (and so verified) it already: it is not fetched again. */
  readonly manifest?: FetchedManifest;
}

export interface PulledLayer {
  readonly title: string;
  readonly path: string;
  readonly descriptor: Descriptor;
  readonly unpacked: boolean;
}

export interface PullResult {
  /** Digest of the manifest (or index) the reference resolved to. */
  readonly digest: string;
  readonly manifest: Manifest;
  readonly layers: PulledLayer[];
}

/** One layer on its way: where it is staged and where it goes. */
interface Job extends PulledLayer {
  readonly staged: string;
}

/**
 * Pulls an ORAS artifact into `outputDir`: every titled layer of the manifest (or of every manifest of
 * an index) becomes a file, or a directory merged into what is there as `oras pull` does, named by its
 * title. Everything is downloaded and verified in a staging directory first and moves to its final
 * name only once every layer passed; a failed or cancelled pull leaves nothing behind.
 */
export function pull(client: RegistryClient, reference: Reference, outputDir: string, options: PullOptions = {}): Promise<PullResult> {
  return withDeadline(`pull ${reference.text}`, options, (signal) => new Puller(client, reference, options, signal).run(outputDir));
}

class Puller {
  private readonly reporter: Reporter;
  /** Aborts the transfers still running once one layer failed. */
  private readonly failed = new AbortController();
  private readonly signal: AbortSignal;

  constructor(
    private readonly client: RegistryClient,
    private readonly reference: Reference,
    private readonly options: PullOptions,
    signal: AbortSignal | undefined,
  ) {
    this.reporter = options.reporter ?? new SilentReporter();
    this.signal = signal ? AbortSignal.any([signal, this.failed.signal]) : this.failed.signal;
  }

  async run(outputDir: string): Promise<PullResult> {
    const root = this.options.manifest
      ?? await this.client.fetchManifest(this.reference.repository, this.reference.manifestReference, undefined, { signal: this.signal });
    const plan = planLayers(await this.collectLayers(root), this.options.mediaTypes, this.reporter);
    await this.options.beforeTransfer?.(plan.map((layer) => layer.descriptor));
    const created = await mkdir(outputDir, { recursive: true });
    try {
      const layers = await this.fill(await realpath(outputDir), plan);
      return { digest: root.descriptor.digest, manifest: root.manifest, layers };
    } catch (err) {
      // An output directory this pull created goes again if it stayed empty.
      if (created) await rmdir(outputDir).catch(() => undefined);
      throw err;
    }
  }

  /** Stages and verifies every layer, then moves them into `out`; the staging directory goes in any case. */
  private async fill(out: string, plan: { title: string; descriptor: Descriptor }[]): Promise<PulledLayer[]> {
    const staging = await Staging.create(out);
    try {
      const unpackAll = this.options.unpack ?? true;
      const jobs: Job[] = plan.map(({ title, descriptor }, i) => ({
        title,
        descriptor,
        path: join(out, ...title.split('/')),
        unpacked: unpackAll && descriptor.annotations?.[Annotation.UNPACK] === 'true',
        staged: staging.path(String(i)),
      }));
      for (const job of jobs) {
        await assertNoSymlinkParents(out, job.path);
        checkPlace(job.unpacked, await lstatOrUndefined(job.path), job.title);
      }
      await ensureSpace(out, jobs);
      const concurrency = this.options.concurrency ?? 3;
      // Each file download's share of DOWNLOAD_AHEAD.
      const files = jobs.filter((job) => !job.unpacked).length;
      const writeAhead = Math.max(STREAM_AHEAD, Math.floor(DOWNLOAD_AHEAD / Math.max(1, Math.min(concurrency, files))));
      const fetch = (job: Job) => (job.unpacked ? this.fetchDirectory(job) : this.download(job, job.staged, writeAhead));
      await forEachLimited(jobs, concurrency, (job) => fetch(job).catch((err) => {
        this.failed.abort(err);
        throw err;
      }));
      // Everything is verified: check every place again (time passed), then move in.
      for (const job of jobs) {
        await assertNoSymlinkParents(out, job.path);
        await checkMerge(job.staged, job.path, job.title);
      }
      for (const job of jobs) {
        await mergeInto(job.staged, job.path);
        this.reporter.event('pulled', { title: job.title, digest: job.descriptor.digest, size: job.descriptor.size });
      }
      return jobs.map(({ staged: _, ...layer }) => layer);
    } finally {
      await staging.remove();
    }
  }

  /** The layers of the manifest, or of each distinct manifest an index leads to, within the limits. */
  private async collectLayers(root: FetchedManifest): Promise<Descriptor[]> {
    const maxManifests = this.options.maxManifests ?? PULL_LIMITS.manifests;
    const maxLayers = this.options.maxLayers ?? PULL_LIMITS.layers;
    const seen = new Set([root.descriptor.digest]);
    const layers: Descriptor[] = [];
    const visit = async ({ manifest, descriptor }: FetchedManifest, depth: number): Promise<void> => {
      if (!isIndex(manifest.mediaType ?? descriptor.mediaType) && !manifest.manifests) {
        const own = manifest.layers ?? manifest.blobs ?? [];
        if (layers.length + own.length > maxLayers) {
          throw new LimitError(`the artifact ${this.reference.text}`, 'layers', maxLayers, 'raise maxLayers if it is trusted');
        }
        layers.push(...own);
        return;
      }
      if (depth >= MAX_INDEX_DEPTH) throw new LimitError(`the index ${descriptor.digest}`, 'levels of nesting', MAX_INDEX_DEPTH, 'an index may not nest deeper');
      for (const child of manifest.manifests ?? []) {
        if (seen.has(child.digest)) continue;
        seen.add(child.digest);
        if (seen.size > maxManifests) {
          throw new LimitError(`the index of ${this.reference.text}`, 'manifests', maxManifests, 'raise maxManifests if it is trusted');
        }
        await visit(await this.client.fetchManifest(this.reference.repository, child.digest, child, { signal: this.signal }), depth + 1);
      }
    };
    await visit(root, 0);
    return layers;
  }

  /** Downloads one blob to `file`, verified against its descriptor; transient failures start it over. `writeAhead`: bytes held for the writes. */
  private download(job: Job, file: string, writeAhead: number): Promise<void> {
    let handle: FileHandle | undefined;
    return this.transfer(job, file, async () => {
      await rm(file, { force: true });
      // Opened before the request: a lazily opened write stream could create the file after the cleanup.
      handle = await open(file, 'wx', 0o644);
      return handle.createWriteStream({ highWaterMark: writeAhead });
    }, async () => handle?.close().catch(() => undefined));
  }

  /**
   * Downloads a directory layer and unpacks it into its staging directory while it arrives, so that
   * download, gunzip and file writes overlap. Nothing staged is visible before every layer verified.
   * When unpacking fails, the rest is still downloaded: a digest mismatch then names the real cause
   * (and is retried if the transfer broke); content that verified is refused for what it holds.
   */
  private fetchDirectory(job: Job): Promise<void> {
    const { descriptor, title, staged } = job;
    const limit = this.options.maxUnpackedBytes ?? Math.max(PULL_LIMITS.unpackFloorBytes, PULL_LIMITS.unpackRatio * descriptor.size);
    const tooLarge = () => new LimitError(`directory layer "${title}" unpacked`, 'bytes', limit,
      'raise it with --max-unpacked-size (maxUnpackedBytes) if the artifact is trusted');
    let unpacked: Promise<ExtractResult> | undefined;
    return this.transfer(job, job.path, async () => {
      // An earlier attempt's unpacking stops with its input; wait for it before clearing its files.
      await unpacked?.catch(() => undefined);
      // It may have made directories read-only already (their modes are set once the tar ends).
      await removeTree(staged);
      // Room for gunzip to run ahead of the extractor on the thread pool: the two overlap.
      const gunzip = descriptor.mediaType === MediaType.LAYER_TAR ? new PassThrough({ highWaterMark: STREAM_AHEAD })
        : createGunzip({ chunkSize: STREAM_CHUNK, highWaterMark: STREAM_AHEAD } as ZlibOptions);
      const bounded = gunzip.pipe(new ByteLimit(limit, tooLarge, STREAM_AHEAD));
      gunzip.on('error', (err) => bounded.destroy(err));
      unpacked = extractTar(bounded, staged, { stripPrefix: title });
      unpacked.catch(() => undefined);
      return new Forward(gunzip, unpacked);
    }).catch(async (err: unknown) => {
      // The extractor stops with its input; nothing may still write when the caller removes the staging directory.
      await unpacked?.catch(() => undefined);
      throw err;
    }).then(async () => {
      const result = await unpacked!.catch((err: unknown) => {
        const code = (err as NodeJS.ErrnoException).code;
        if (typeof code === 'string' && code.startsWith('Z_')) throw new InvalidTarError(`directory layer "${title}" is not valid gzip: ${(err as Error).message}`);
        throw asDiskFull(err, job.path);
      });
      const expected = descriptor.annotations?.[Annotation.CONTENT_DIGEST];
      if (expected && expected !== result.digest) {
        throw new ContentMismatchError(`directory "${title}" (uncompressed tar)`, { digest: expected }, { digest: result.digest, size: result.size });
      }
    });
  }

  /**
   * One blob's transfer, verified against its descriptor, into the sink `openSink` makes anew for each
   * attempt (clearing what an earlier one left). Transient failures start it over. `where` names the
   * place a full disk is reported for.
   */
  private transfer({ descriptor, title }: Job, where: string, openSink: () => Promise<Writable>, close?: () => Promise<unknown>): Promise<void> {
    const what = `blob "${title}" (${descriptor.digest})`;
    return retry(async () => {
      const sink = await openSink();
      const verifier = new VerifyingStream(what, descriptor);
      try {
        const response = await this.client.fetchBlob(this.reference.repository, descriptor.digest, { signal: this.signal });
        if (Number(response.headers['content-length']) > descriptor.size) {
          response.body.destroy();
          throw new ContentMismatchError(what, descriptor, { size: Number(response.headers['content-length']) });
        }
        const tracker = this.reporter.track(descriptor.digest, title, descriptor.size);
        await pipeline(response.body, tracker, verifier, sink);
      } catch (err) {
        // The sink may not be piped yet; its error is the one thrown here.
        sink.on('error', () => undefined).destroy(err as Error);
        throw brokenTransfer(err, what, descriptor, verifier.size, where);
      } finally {
        await close?.();
      }
    }, {
      policy: this.client.retryPolicy,
      signal: this.signal,
      onRetry: (err) => this.reporter.event('retry', { title, message: (err as Error).message }),
    });
  }
}

/**
 * Writes what it receives into `target` with its backpressure, and ends it at the end. Once
 * `done` settles early (the reader failed), it only discards, so that the source still reaches its end.
 */
class Forward extends Writable {
  private stopped = false;

  constructor(private readonly target: Writable, done: Promise<unknown>) {
    super();
    const stop = () => {
      this.stopped = true;
      this.emit('stopped');
    };
    done.then(stop, () => {
      stop();
      target.destroy();
    });
  }

  public override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.stopped || this.target.write(chunk)) return callback();
    const go = () => {
      this.target.off('drain', go);
      this.off('stopped', go);
      callback();
    };
    this.target.on('drain', go);
    this.on('stopped', go);
  }

  public override _final(callback: (error?: Error | null) => void): void {
    if (!this.stopped) this.target.end();
    callback();
  }

  /** A transfer that failed takes the reader down with it. */
  public override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (err) this.target.destroy(err);
    callback(err);
  }
}

/**
 * What a failed download means: a full disk, content that is wrong, or (for any other error before
 * the declared size arrived) a transfer that broke short, which is worth another attempt.
 */
function brokenTransfer(err: unknown, what: string, descriptor: Descriptor, received: number, file: string): unknown {
  const full = asDiskFull(err, file);
  if (full !== err) return full;
  const systemError = typeof (err as NodeJS.ErrnoException).code === 'string';
  return systemError && received < descriptor.size ? new ContentMismatchError(what, descriptor, { size: received }, err as Error) : err;
}

/** Passes at most `limit` bytes; one more fails the stream with `error()`. */
class ByteLimit extends Transform {
  private bytes = 0;

  constructor(private readonly limit: number, private readonly error: () => Error, highWaterMark?: number) {
    super({ highWaterMark });
  }

  public override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    callback(this.bytes > this.limit ? this.error() : null, chunk);
  }
}

/**
 * Fails early with a DiskFullError when the file system cannot hold the download: every file layer, and
 * for a directory layer at least its compressed size (it unpacks while it downloads; its unpacked size is
 * known only once unpacked).
 */
async function ensureSpace(out: string, jobs: Job[]): Promise<void> {
  const needed = jobs.reduce((sum, job) => sum + job.descriptor.size, 0);
  const { bavail, bsize } = await statfs(out);
  const free = bavail * bsize;
  if (needed > free) throw new DiskFullError(out, `the layers need at least ${formatBytes(needed)}, and ${formatBytes(free)} are free`);
}

/** Titled layers, each title once; validated before anything is written. */
function planLayers(descriptors: Descriptor[], mediaTypes: string[] | undefined, reporter: Reporter): { title: string; descriptor: Descriptor }[] {
  const byTitle = new Map<string, Descriptor>();
  for (const descriptor of descriptors) {
    if (mediaTypes && !mediaTypes.includes(descriptor.mediaType)) {
      reporter.event('skip', { digest: descriptor.digest, message: `media type ${descriptor.mediaType} is filtered out` });
      continue;
    }
    const title = descriptor.annotations?.[Annotation.TITLE];
    if (!title) {
      reporter.event('skip', { digest: descriptor.digest, message: 'layer has no title' });
      continue;
    }
    assertSafeTitle(title);
    const seen = byTitle.get(title);
    if (seen && seen.digest !== descriptor.digest) {
      throw new Error(`two layers are titled "${title}" with different content (${seen.digest} and ${descriptor.digest}); cannot write both`);
    }
    byTitle.set(title, descriptor);
  }
  const titles = [...byTitle.keys()];
  for (const title of titles) {
    const clash = titles.find((other) => other !== title && other.startsWith(title + '/'));
    if (clash) throw new Error(`layer "${clash}" would be written inside layer "${title}"; the artifact's titles overlap`);
  }
  return [...byTitle].map(([title, descriptor]) => ({ title, descriptor }));
}
