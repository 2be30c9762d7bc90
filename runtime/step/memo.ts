import { createHash } from 'node:crypto';
import { PROVENANCE } from '../../src/provenance';
import { RegistryError } from '../oci/errors';
import { Annotation, Manifest, MediaType } from '../oci/media-types';
import { Reporter } from '../oci/progress';
import { Reference } from '../oci/reference';
import { FetchedManifest, RegistryClient } from '../oci/registry-client';

/** The tag a step's output is also stored under, in the output's repository, so that the next run with the same key finds it. */
export function memoTag(key: string): string {
  return `memo-${key}`;
}

/**
 * What an input holds, independent of who stored it when: the sha256 of its
 * manifest without the manifest's own annotations (provenance, creation
 * time). A memoized output (the same layers under new annotations) has the
 * content of the output it reuses, so its consumers stay memoized too.
 */
export function contentDigest(manifest: Manifest): string {
  const { annotations: _provenance, ...content } = manifest;
  return `sha256:${createHash('sha256').update(JSON.stringify(content)).digest('hex')}`;
}

/** The full key: the step's definition (computed at synth time) and each input's content, in order. */
export function memoKey(definition: string, inputs: readonly string[]): string {
  return createHash('sha256').update(JSON.stringify({ v: 1, definition, inputs })).digest('hex');
}

export interface ReuseOptions {
  readonly client: RegistryClient;
  /** The output reference of this run. */
  readonly to: Reference;
  readonly key: string;
  /** Annotations of this run's output (step, image, workflow, run id), and the inputs as pulled. */
  readonly annotations: Record<string, string>;
  readonly reporter: Reporter;
  readonly signal?: AbortSignal;
}

/**
 * Looks up the output stored for `key` and, when there is one, stores it
 * again under this run's tag: the same config and layers (already in the
 * repository, so no blob moves), with this run's annotations and
 * `memoized-from` naming the original. The memo tag then follows to it, so
 * the newest run holds the memo (and retention keeps it as long as that run).
 * Resolves to the original's `<repository>@<digest>`, or undefined when the key has no output.
 */
export async function reuseOutput(options: ReuseOptions): Promise<string | undefined> {
  const { client, to, signal } = options;
  const tag = memoTag(options.key);
  let found: FetchedManifest;
  try {
    found = await client.fetchManifest(to.repository, tag, undefined, { signal });
  } catch (err) {
    if (err instanceof RegistryError && err.status === 404) return undefined;
    throw err;
  }
  const from = `${to.registry}/${to.repository}@${found.descriptor.digest}`;
  const original = found.manifest.annotations ?? {};
  const reused: Manifest = {
    ...found.manifest,
    annotations: {
      ...original,
      ...options.annotations,
      [Annotation.CREATED]: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      [PROVENANCE.EXIT_CODE]: '0',
      [PROVENANCE.MEMO_KEY]: options.key,
      // A chain of reuses names the output that ran the command.
      [PROVENANCE.MEMOIZED_FROM]: original[PROVENANCE.MEMOIZED_FROM] ?? from,
    },
  };
  const raw = Buffer.from(JSON.stringify(reused));
  const mediaType = found.manifest.mediaType ?? MediaType.OCI_MANIFEST;
  const digest = await client.pushManifest(to.repository, to.manifestReference, raw, mediaType, { signal });
  await client.pushManifest(to.repository, tag, raw, mediaType, { signal });
  options.reporter.event('memoized', { reference: to.text, digest, from: reused.annotations![PROVENANCE.MEMOIZED_FROM], key: options.key });
  return reused.annotations![PROVENANCE.MEMOIZED_FROM];
}
