import { PROVENANCE } from '../../src/provenance';
import { Annotation } from '../oci/media-types';
import { Reporter } from '../oci/progress';
import { RegistryClient } from '../oci/registry-client';
import { memoTag } from '../step/memo';

export interface RetentionPolicy {
  /** Keep this many of each workflow's newest runs. */
  readonly keepLast?: number;
  /** Keep the runs younger than this (ms). */
  readonly keepForMs?: number;
}

export interface PruneOptions extends RetentionPolicy {
  /** Only repositories whose name starts with one of these (default every repository). */
  readonly prefixes?: readonly string[];
  /** List what would go, delete nothing. */
  readonly dryRun?: boolean;
  /** The time runs are aged against; default now. */
  readonly now?: Date;
  readonly reporter: Reporter;
  readonly signal?: AbortSignal;
}

/** One manifest a workflow run stored, and the tags that point at it. */
interface RunManifest {
  readonly repository: string;
  readonly digest: string;
  readonly tags: string[];
  readonly workflow: string;
  readonly run: string;
  readonly created: number;
}

export interface PruneResult {
  /** The runs kept and deleted, per workflow, newest first. */
  readonly runs: { workflow: string; run: string; created: string; kept: boolean }[];
  /** `<repository>@<digest>` of every manifest deleted (or, with dryRun, that would be). */
  readonly deleted: string[];
}

/**
 * Deletes the outputs of expired workflow runs through the registry API.
 * A run is a workflow's run id, as the step outputs' annotations record
 * them; it is as old as its newest output. Of each workflow, the newest
 * `keepLast` runs and those younger than `keepForMs` stay (either keeps a
 * run). A manifest is deleted only when its run expired and every tag on it
 * is one a run gives (`<run>-…` or `memo-…`): a tag someone added by hand
 * keeps it. Manifests without a run (pushed by anything else) are never
 * touched. The blobs stay until the registry's garbage collection.
 */
export async function prune(client: RegistryClient, options: PruneOptions): Promise<PruneResult> {
  if (options.keepLast === undefined && options.keepForMs === undefined) {
    throw new Error('a retention policy needs --keep-last, --keep-for or both; without either every run would go');
  }
  const { signal, reporter } = options;
  const repositories = (await client.catalog({ signal }))
    .filter((name) => !options.prefixes?.length || options.prefixes.some((prefix) => name.startsWith(prefix)));
  const manifests: RunManifest[] = [];
  for (const repository of repositories) {
    const byDigest = new Map<string, { tags: string[]; annotations: Record<string, string> }>();
    for (const tag of await client.tags(repository, { signal })) {
      const { descriptor, manifest } = await client.fetchManifest(repository, tag, undefined, { signal });
      const known = byDigest.get(descriptor.digest);
      if (known) known.tags.push(tag);
      else byDigest.set(descriptor.digest, { tags: [tag], annotations: manifest.annotations ?? {} });
    }
    for (const [digest, { tags, annotations }] of byDigest) {
      const workflow = annotations[PROVENANCE.WORKFLOW];
      const run = annotations[PROVENANCE.RUN_ID];
      const created = Date.parse(annotations[Annotation.CREATED] ?? '');
      if (workflow === undefined || run === undefined || Number.isNaN(created)) continue;
      manifests.push({ repository, digest, tags, workflow, run, created });
    }
  }

  const now = (options.now ?? new Date()).getTime();
  const runs: PruneResult['runs'] = [];
  const expired = new Set<string>();
  for (const workflow of [...new Set(manifests.map((m) => m.workflow))].sort()) {
    const newest = new Map<string, number>();
    for (const m of manifests.filter((x) => x.workflow === workflow)) newest.set(m.run, Math.max(newest.get(m.run) ?? 0, m.created));
    const ordered = [...newest].sort(([, a], [, b]) => b - a);
    ordered.forEach(([run, created], index) => {
      const kept = (options.keepLast !== undefined && index < options.keepLast)
        || (options.keepForMs !== undefined && now - created < options.keepForMs);
      runs.push({ workflow, run, created: new Date(created).toISOString(), kept });
      if (!kept) expired.add(JSON.stringify([workflow, run]));
    });
  }

  const deleted: string[] = [];
  for (const m of manifests) {
    if (!expired.has(JSON.stringify([m.workflow, m.run]))) continue;
    const foreign = m.tags.filter((tag) => !tag.startsWith(`${m.run}-`) && !tag.startsWith(memoTag('')));
    if (foreign.length > 0) {
      reporter.event('kept', { reference: `${m.repository}@${m.digest}`, message: `run ${m.run} expired, but tags no run gives keep it: ${foreign.join(', ')}` });
      continue;
    }
    if (!options.dryRun) await client.deleteManifest(m.repository, m.digest, { signal });
    deleted.push(`${m.repository}@${m.digest}`);
    reporter.event(options.dryRun ? 'would-delete' : 'deleted', { reference: `${m.repository}@${m.digest}`, workflow: m.workflow, run: m.run, tags: m.tags });
  }
  return { runs, deleted };
}
