import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, realpath, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { forEachLimited } from './concurrency';
import { assertDigest, ContentMismatchError, DigestStream, verifyContent } from './digest';
import { isRetryableError, sleep } from './http';
import { Annotation, Descriptor, isIndex, Manifest, MediaType } from './media-types';
import { assertNoSymlinkParents, assertSafeTitle } from './paths';
import { Reporter, SilentReporter } from './progress';
import { Reference } from './reference';
import { RegistryClient } from './registry-client';
import { extractTar } from './tar';

const BLOB_ATTEMPTS = 3;
const MAX_INDEX_DEPTH = 4;
/** Bytes buffered towards a file before backpressure: fewer, larger writes. */
const WRITE_BUFFER = 1024 * 1024;

export interface PullOptions {
  /** Parallel blob downloads. Default 3. */
  readonly concurrency?: number;
  /** Unpack directory layers (the default); false keeps each tarball as a file named by its title. */
  readonly unpack?: boolean;
  /** Keep only layers of these media types. Default: all. */
  readonly mediaTypes?: string[];
  readonly reporter?: Reporter;
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

/**
 * Pulls an ORAS artifact into `outputDir`: every titled layer of the manifest
 * (or of every manifest of an index) becomes a file or an unpacked directory
 * named by its title. Each blob goes to a temporary name first and appears
 * under its title only once its digest and size are verified.
 */
export async function pull(client: RegistryClient, reference: Reference, outputDir: string, options: PullOptions = {}): Promise<PullResult> {
  const reporter = options.reporter ?? new SilentReporter();
  const root = await client.fetchManifest(reference.repository, reference.manifestReference);
  const descriptors = await layersOf(client, reference.repository, root.manifest, root.descriptor, 0);
  const plan = planLayers(descriptors, options.mediaTypes, reporter);

  await mkdir(outputDir, { recursive: true });
  const out = await realpath(outputDir);
  const unpackAll = options.unpack ?? true;
  const layers: PulledLayer[] = [];
  await forEachLimited(plan, options.concurrency ?? 3, async ({ title, descriptor }) => {
    const target = join(out, ...title.split('/'));
    await assertNoSymlinkParents(out, target);
    await mkdir(dirname(target), { recursive: true });
    const unpacked = unpackAll && descriptor.annotations?.[Annotation.UNPACK] === 'true';
    const job: BlobJob = { client, repository: reference.repository, descriptor, title, target, reporter };
    await withRetries(reporter, title, () => unpacked ? fetchDirectory(job) : fetchFile(job));
    layers.push({ title, path: target, descriptor, unpacked });
    reporter.event('pulled', { title, digest: descriptor.digest, size: descriptor.size });
  });
  return { digest: root.descriptor.digest, manifest: root.manifest, layers };
}

async function layersOf(client: RegistryClient, repository: string, manifest: Manifest, descriptor: Descriptor, depth: number)
  : Promise<Descriptor[]> {
  if (!isIndex(manifest.mediaType ?? descriptor.mediaType) && !manifest.manifests) {
    return [...(manifest.layers ?? manifest.blobs ?? [])];
  }
  if (depth >= MAX_INDEX_DEPTH) throw new Error(`index ${descriptor.digest} nests deeper than ${MAX_INDEX_DEPTH} levels`);
  const all: Descriptor[] = [];
  for (const child of manifest.manifests ?? []) {
    const fetched = await client.fetchManifest(repository, child.digest, child);
    all.push(...await layersOf(client, repository, fetched.manifest, fetched.descriptor, depth + 1));
  }
  return all;
}

/** Titled layers, each title once; validated before anything is written. */
function planLayers(descriptors: Descriptor[], mediaTypes: string[] | undefined, reporter: Reporter): { title: string; descriptor: Descriptor }[] {
  const byTitle = new Map<string, Descriptor>();
  for (const descriptor of descriptors) {
    if (mediaTypes && !mediaTypes.includes(descriptor.mediaType)) {
      reporter.event('skip', { digest: descriptor.digest, message: `media type ${descriptor.mediaType} is filtered out` });
      continue;
    }
    assertDigest(descriptor.digest, `layer ${descriptor.annotations?.[Annotation.TITLE] ?? '(untitled)'}`);
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

async function withRetries(reporter: Reporter, title: string, attempt: () => Promise<void>): Promise<void> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      const truncated = err instanceof ContentMismatchError && /expected \d+ bytes, got \d+/.test(err.message);
      const retryable = isRetryableError((err as { cause?: unknown }).cause ?? err) || isRetryableError(err) || truncated;
      if (!retryable || n >= BLOB_ATTEMPTS) throw err;
      reporter.event('retry', { title, message: (err as Error).message });
      await sleep(250 * 2 ** n);
    }
  }
}

function temporaryName(target: string, kind: string): string {
  return join(dirname(target), `.${basename(target)}.oras-${kind}-${randomBytes(6).toString('hex')}`);
}

/** One layer to fetch to one place. */
interface BlobJob {
  readonly client: RegistryClient;
  readonly repository: string;
  readonly descriptor: Descriptor;
  readonly title: string;
  readonly target: string;
  readonly reporter: Reporter;
}

async function blobStream({ client, repository, descriptor, title, reporter }: BlobJob) {
  const what = `blob "${title}" (${descriptor.digest})`;
  const response = await client.fetchBlob(repository, descriptor.digest).catch((err: Error & { code?: string }) => {
    throw Object.assign(new Error(`${what}: ${err.message}`), { code: err.code, cause: (err as { cause?: unknown }).cause });
  });
  const hasher = new DigestStream(descriptor.digest.split(':')[0]);
  const body: Readable = response.body.pipe(reporter.track(descriptor.digest, title, descriptor.size));
  response.body.on('error', (err) => body.destroy(err));
  return {
    body,
    hasher,
    /** Frees the connection after a failure (the pipeline destroys only our streams). */
    abort: () => response.body.destroy(),
    verify: () => verifyContent(what, descriptor, { digest: hasher.digest(), size: hasher.size }),
    /** Names the blob and how far it got; keeps the code so that retries still apply. */
    explain: (err: Error & { code?: string }) => err instanceof ContentMismatchError ? err : Object.assign(
      new Error(`${what}: the transfer broke after ${hasher.size} of ${descriptor.size} bytes (${err.message}); nothing was written`),
      { code: err.code ?? 'ERR_STREAM_PREMATURE_CLOSE' },
    ),
  };
}

async function fetchFile(job: BlobJob): Promise<void> {
  const { title, target } = job;
  const existing = await lstat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw new Error(`"${title}" exists as a directory in the output directory; cannot replace it with a file`);
  const temporary = temporaryName(target, 'partial');
  try {
    // Open before the download starts: a write stream opens lazily and could create the file after
    // the cleanup below, and nothing may stand between the response and its pipeline.
    const handle = await open(temporary, 'wx', 0o644);
    let verify: () => void;
    try {
      const stream = await blobStream(job);
      verify = stream.verify;
      await pipeline(stream.body, stream.hasher, handle.createWriteStream({ highWaterMark: WRITE_BUFFER })).catch((err) => {
        stream.abort();
        throw stream.explain(err);
      });
    } finally {
      await handle.close().catch(() => undefined);
    }
    verify();
    await rename(temporary, target);
  } finally {
    await rm(temporary, { force: true });
  }
}

async function fetchDirectory(job: BlobJob): Promise<void> {
  const { descriptor, title, target } = job;
  const temporary = temporaryName(target, 'unpack');
  const retired = temporaryName(target, 'old');
  try {
    const { body, hasher, verify, explain, abort } = await blobStream(job);
    const tar: Readable = descriptor.mediaType === MediaType.LAYER_TAR ? body.pipe(hasher) : body.pipe(hasher).pipe(createGunzip());
    body.on('error', (err) => tar.destroy(err));
    hasher.on('error', (err) => tar.destroy(err));
    const result = await extractTar(tar, temporary, { stripPrefix: title }).catch((err) => {
      abort();
      throw hasher.size < descriptor.size && !/escape|outside|symlink/.test(err.message) ? explain(err) : err;
    });
    verify();
    const expected = descriptor.annotations?.[Annotation.CONTENT_DIGEST];
    if (expected && expected !== result.digest) {
      throw new ContentMismatchError(`directory "${title}" (uncompressed tar)`, { digest: expected }, { digest: result.digest, size: result.size });
    }
    const existing = await lstat(target).catch(() => undefined);
    if (existing) await rename(target, retired);
    await rename(temporary, target);
  } finally {
    await rm(temporary, { recursive: true, force: true });
    await rm(retired, { recursive: true, force: true });
  }
}
