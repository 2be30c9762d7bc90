import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, realpathSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { lstat, mkdir, readFile, rmdir, stat, statfs } from 'node:fs/promises';
import type { Agent } from 'node:http';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CacheFullError, Filler, NodeCache } from './cache';
import { CsiMetrics } from './metrics';
import { bindReadOnly, isBindMountOf, isMountPoint, unmount } from './mounter';
import { CsiError } from './protocol';
import { kubeletPath, parsePublish, Publish, RequestOptions, required, secretCredentials } from './requests';
import { withDeadline as withTimeout } from '../oci/deadline';
import {
  asDiskFull, AuthError, CancelledError, ContentMismatchError, DiskFullError, InvalidManifestError, InvalidReferenceError, InvalidTarError,
  LimitError, PathEscapeError, RegistryError, TimeoutError,
} from '../oci/errors';
import { createAgent } from '../oci/http';
import { Reporter, SilentReporter } from '../oci/progress';
import { pull } from '../oci/pull';
import { parseReference } from '../oci/reference';
import { RegistryClient } from '../oci/registry-client';
import { isTransient } from '../oci/retry';

/** Changes the journal holds before the records are written whole again. */
const JOURNAL_LINES = 1000;

interface MountRecord {
  readonly volumeId: string;
  readonly key: string;
  /** What the volume asked for (see `Publish.artifact`); absent in records of older versions. */
  readonly artifact?: string;
  /** Mounted ahead, before the registry confirmed the tag: the publish that made it confirms or undoes it, and any other undoes it. */
  readonly tentative?: boolean;
}

/** Where the cache remembers what `p`'s tag resolved to last. */
function resolvedAs(p: Publish): string {
  return `${p.scope}\n${p.reference.text}`;
}

/** The cache entry of `digest` as `p` reaches it. The source is part of the key: a registry that names a digest proves nothing about what others hold under it. */
function entryKey(p: Publish, digest: string): string {
  const { reference } = p;
  return createHash('sha256').update(JSON.stringify([
    p.plainHttp, p.insecure, reference.registry, reference.repository, digest, p.mediaTypes ?? [], p.scope,
  ])).digest('hex');
}

export interface NodeOptions extends RequestOptions {
  readonly nodeId: string;
  readonly cache: NodeCache;
  /** Where mount records live, so that a restarted plugin can still unpublish. */
  readonly stateDir: string;
  readonly metrics: CsiMetrics;
  /** A publish answers within this (ms), below the kubelet's 2 minutes; its download goes on for the retry. */
  readonly publishTimeoutMs: number;
  /** A download that nobody finished within this (ms) is cancelled. */
  readonly pullTimeoutMs: number;
  readonly reporter?: Reporter;
  /** PEM certificates every registry client trusts besides the system's (`--ca-file`). */
  readonly ca?: string;
}

/**
 * CSI errors for registry, content and disk failures: what went wrong and
 * what to do. `secretRef` names where the credentials come from.
 */
export function registryProblem(err: unknown, reference: string, secretRef = 'nodePublishSecretRef'): CsiError {
  if (err instanceof CsiError) return err;
  const problem = (code: grpc.status, advice = '') => new CsiError(code, `${reference}: ${(err as Error).message}${advice}`);
  if (err instanceof AuthError || (err instanceof RegistryError && (err.status === 401 || err.status === 403))) {
    return problem(grpc.status.PERMISSION_DENIED, `; the registry refused these credentials: set ${secretRef} to a dockerconfigjson Secret that may read it`);
  }
  if (err instanceof RegistryError && err.status === 404) return problem(grpc.status.NOT_FOUND, ' (it does not exist in the registry)');
  if (err instanceof CacheFullError || asDiskFull(err, 'the node cache') instanceof DiskFullError) {
    return problem(grpc.status.RESOURCE_EXHAUSTED, '; free room on the node, or raise --cache-max-size');
  }
  // The artifact breaks a rule or a limit: retrying the same content cannot help.
  if (err instanceof LimitError || err instanceof InvalidManifestError || err instanceof PathEscapeError || err instanceof InvalidTarError
    || (err instanceof ContentMismatchError && !isTransient(err))) {
    return problem(grpc.status.FAILED_PRECONDITION);
  }
  if (err instanceof InvalidReferenceError) return problem(grpc.status.INVALID_ARGUMENT);
  if (err instanceof TimeoutError) return problem(grpc.status.DEADLINE_EXCEEDED);
  if (err instanceof CancelledError) return problem(grpc.status.ABORTED);
  return problem(grpc.status.UNAVAILABLE);
}

/**
 * `work`, or DEADLINE_EXCEEDED once `ms` have passed. `work` itself goes on:
 * the caller decides what to cancel.
 */
function answerWithin<T>(work: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new CsiError(grpc.status.DEADLINE_EXCEEDED, message())), ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

/** The CSI Node service: publish mounts an artifact from the node cache, read-only; unpublish undoes it. */
export class OrasNode {
  private mounts = new Map<string, MountRecord>();
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Keys between cache fill and mount: collection must not take them. */
  private readonly pinned = new Map<string, number>();
  /** The journal of changes to the mount records since the snapshot (a file descriptor, open for appending). */
  private journal?: number;
  private journalLines = 0;
  private readonly reporter: Reporter;
  /** Keep-alive connections to registries, shared by every publish: a warm publish resolves its tag on an open one. */
  private readonly agents = new Map<string, Agent>();

  constructor(private readonly options: NodeOptions) {
    this.reporter = options.reporter ?? new SilentReporter();
  }

  private get mountsPath(): string {
    return join(this.options.stateDir, 'mounts.json');
  }

  private get journalPath(): string {
    return join(this.options.stateDir, 'mounts.journal');
  }

  /** How many volumes this plugin has published and not yet unpublished. */
  public get publishedVolumes(): number {
    return this.mounts.size;
  }

  /** Cache keys that mounts still use (the cache keeps them when it opens). */
  public get mountedKeys(): Set<string> {
    return new Set([...this.mounts.values()].map((m) => m.key));
  }

  /** Keys that collection must leave: mounted, or about to be. */
  private get keysInUse(): Set<string> {
    return new Set([...this.mountedKeys, ...this.pinned.keys()]);
  }

  /** Loads the mount records a previous run left: the snapshot, then the changes in the journal. */
  public async open(): Promise<void> {
    await mkdir(this.options.stateDir, { recursive: true });
    const saved = await readFile(this.mountsPath, 'utf8').then((t) => JSON.parse(t) as Record<string, MountRecord>, () => ({}));
    this.mounts = new Map(Object.entries(saved));
    for (const line of (await readFile(this.journalPath, 'utf8').catch(() => '')).split('\n')) {
      if (!line) continue;
      let change: { target: string; record?: MountRecord };
      try {
        change = JSON.parse(line);
      } catch {
        break; // A line a crash cut short: the change was not acknowledged, so neither was its mount.
      }
      if (change.record) this.mounts.set(change.target, change.record);
      else this.mounts.delete(change.target);
    }
    this.compact();
  }

  /**
   * Writes all records as the snapshot (a new file renamed over the old),
   * then empties the journal. A crash in between leaves changes that replay
   * to the same records.
   */
  private compact(): void {
    const tmp = `${this.mountsPath}.${randomBytes(4).toString('hex')}`;
    writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.mounts)));
    renameSync(tmp, this.mountsPath);
    if (this.journal !== undefined) closeSync(this.journal);
    this.journal = openSync(this.journalPath, 'w');
    this.journalLines = 0;
    this.options.metrics.mounts = this.mounts.size;
  }

  /**
   * Sets (or, without `record`, deletes) the record of `target`, on disk
   * before it returns: one line appended to the journal, synchronously. A
   * rewrite of every record, through the thread pool, was a sixth of a warm publish.
   */
  private record(target: string, record?: MountRecord): void {
    if (record) this.mounts.set(target, record);
    else if (!this.mounts.delete(target)) return;
    if (this.journal === undefined || this.journalLines >= JOURNAL_LINES) return this.compact();
    writeSync(this.journal, `${JSON.stringify({ target, record })}\n`);
    this.journalLines++;
    this.options.metrics.mounts = this.mounts.size;
  }

  /** The shared agent for registries reached as `p` says. */
  private agentFor(p: { plainHttp: boolean; insecure: boolean }): Agent {
    const key = `${p.plainHttp}/${p.insecure}`;
    let agent = this.agents.get(key);
    if (!agent) this.agents.set(key, agent = createAgent({ plainHttp: p.plainHttp, insecure: p.insecure, ca: this.options.ca }));
    return agent;
  }

  /** Runs calls for one target path one at a time. */
  private async serialized<T>(target: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(target) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.then(() => undefined, () => undefined);
    this.locks.set(target, settled);
    void settled.then(() => {
      if (this.locks.get(target) === settled) this.locks.delete(target);
    });
    return next;
  }

  private pin(key: string): void {
    this.pinned.set(key, (this.pinned.get(key) ?? 0) + 1);
  }

  private unpin(key: string): void {
    const count = (this.pinned.get(key) ?? 1) - 1;
    if (count > 0) this.pinned.set(key, count);
    else this.pinned.delete(key);
  }

  public getInfo(): object {
    return { node_id: this.options.nodeId, max_volumes_per_node: 0 };
  }

  public getCapabilities(): object {
    return { capabilities: [{ rpc: { type: 'GET_VOLUME_STATS' } }] };
  }

  /** Usage of a published volume: the filesystem of the node cache, where its tree lives. */
  public async volumeStats(request: any): Promise<object> {
    const volumeId = required(request.volume_id, 'volume_id');
    // Looked up only among the records, which hold validated targets: any other path is NOT_FOUND.
    const path = required(request.volume_path, 'volume_path');
    const record = this.mounts.get(path);
    if (!record || record.volumeId !== volumeId) throw new CsiError(grpc.status.NOT_FOUND, `volume ${volumeId} is not published at ${path}`);
    if (!await stat(path).then(() => true, () => false)) throw new CsiError(grpc.status.NOT_FOUND, `${path} does not exist`);
    const fs = await statfs(path);
    return {
      usage: [
        { unit: 'BYTES', total: fs.blocks * fs.bsize, available: fs.bavail * fs.bsize, used: (fs.blocks - fs.bfree) * fs.bsize },
        { unit: 'INODES', total: fs.files, available: fs.ffree, used: fs.files - fs.ffree },
      ],
    };
  }

  /**
   * True when the volume is already published at the target (idempotent),
   * false when the target is free. A target that holds another volume, or
   * this volume with another artifact, is ALREADY_EXISTS.
   */
  private async published(p: Publish): Promise<boolean> {
    const existing = this.mounts.get(p.target);
    if (!existing) return false;
    if (existing.tentative) {
      // An earlier call mounted ahead and did not finish (it failed, or the plugin stopped).
      await this.settleAhead(p.target);
      return false;
    }
    if (!await isMountPoint(p.target)) {
      // The record outlived its mount (a node reboot): forget it and publish anew.
      this.record(p.target);
      return false;
    }
    if (existing.volumeId !== p.volumeId) throw new CsiError(grpc.status.ALREADY_EXISTS, `target ${p.target} already holds volume ${existing.volumeId}`);
    if (existing.artifact !== undefined && existing.artifact !== p.artifact) {
      throw new CsiError(grpc.status.ALREADY_EXISTS, `volume ${p.volumeId} is already published at ${p.target} with other attributes; `
        + `unpublish it before publishing ${p.reference.text} there`);
    }
    // The same volume on the same target is done, whatever the registry says now.
    return true;
  }

  public async publish(request: any): Promise<object> {
    const p = parsePublish(request, this.options);
    try {
      if (await this.serialized(p.target, () => this.published(p))) return {};
      // Not under the target's lock: an unpublish never waits for a download.
      const call = new AbortController();
      const preparing = this.prepare(p, call.signal);
      this.mountAhead(p);
      const seconds = this.options.publishTimeoutMs / 1000;
      const key = await answerWithin(preparing, this.options.publishTimeoutMs, () => `${p.reference.text} is not ready after ${seconds} s; `
        + 'its download goes on in the background, and the next NodePublishVolume uses it').catch(async (err) => {
        // This call's own requests stop; the shared download does not, and its entry stays in the cache.
        call.abort(err);
        preparing.then((late) => this.unpin(late), () => undefined);
        // A failed publish leaves no mount made ahead. Its record stays if the undo fails, and the next call at the target tries again.
        const undo = this.serialized(p.target, () => this.settleAhead(p.target));
        if (err instanceof CsiError && err.code === grpc.status.DEADLINE_EXCEEDED) {
          // The answer cannot wait for the target's lock (a long unpublish may hold it); the kubelet calls again.
          undo.catch(() => undefined);
          throw err;
        }
        await undo.catch((undoErr: Error) => {
          // Not final, so that the kubelet calls again (or unpublishes) instead of forgetting the mount.
          throw new CsiError(grpc.status.UNAVAILABLE, `${(err as Error).message}; the mount made ahead at ${p.target} could not be undone `
            + `(${undoErr.message}), and the next call at this target tries again`);
        });
        throw err;
      });
      try {
        return await this.serialized(p.target, async () => {
          await this.settleAhead(p.target, key);
          return this.mount(p, key);
        });
      } finally {
        this.unpin(key);
      }
    } catch (err) {
      this.options.metrics.error(err instanceof CsiError ? grpc.status[err.code] : 'INTERNAL');
      throw err;
    }
  }

  /**
   * While the registry resolves the tag, mounts the public entry it resolved
   * to last on this node, tentatively: a warm publish then waits for the
   * registry or the mount, not both. Nothing reads the target before the
   * publish answers, and the answer confirms the mount only when the
   * registry named the same entry (settleAhead). Private entries wait for
   * the pod's credentials to pass, as ever.
   */
  private mountAhead(p: Publish): void {
    if (p.reference.digest || p.policy === 'Never') return;
    const digest = this.options.cache.lastResolved(resolvedAs(p));
    if (!digest) return;
    const key = entryKey(p, digest);
    const entry = this.options.cache.get(key);
    if (entry?.private !== false) return;
    entry.lastUsed = Date.now();
    this.pin(key);
    // A failure here is met again, and reported, by the mount that follows the answer.
    void this.serialized(p.target, () => this.mount(p, key, true)).catch(() => undefined).finally(() => this.unpin(key));
  }

  /**
   * Settles a tentative mount at `target`: confirmed when it holds `key`,
   * otherwise unmounted and forgotten. Call it on the target's lock.
   */
  private async settleAhead(target: string, key?: string): Promise<void> {
    const record = this.mounts.get(target);
    if (!record?.tentative) return;
    const { tentative: _, ...confirmed } = record;
    if (record.key === key) return this.record(target, confirmed);
    await this.unmountRecorded(target, record);
    this.record(target);
  }

  /**
   * Resolves the artifact, fills its cache entry if needed and checks this
   * pod's access to it; resolves to the entry's key, pinned. `signal` stops
   * this call's own requests; the fill, which other calls may share, has its
   * own deadline (--pull-timeout).
   */
  private async prepare(p: Publish, signal: AbortSignal): Promise<string> {
    const { reference } = p;
    const credentials = secretCredentials(p.secrets, reference.registry);
    const client = new RegistryClient(reference.registry, {
      plainHttp: p.plainHttp, insecure: p.insecure, ca: this.options.ca, credentials, attempts: 3, agent: this.agentFor(p),
    });
    try {
      const digest = await this.resolve(client, p, signal);
      const key = entryKey(p, digest);
      this.pin(key);
      try {
        const fill: Filler = (dir, reserve) => this.fill(client, p, digest, dir, reserve);
        const { entry, hit } = await this.options.cache.ensure(key, fill, () => this.keysInUse).catch((err) => {
          throw registryProblem(err, reference.text);
        });
        if (hit) this.options.metrics.cacheHits++;
        if (entry.private) {
          // A private tree is served only after this pod's credentials pass its source registry, whatever the policy.
          if (p.policy === 'Never') {
            throw new CsiError(grpc.status.FAILED_PRECONDITION, `${reference.text} is private, and pull policy Never cannot check this pod's credentials against the registry`);
          }
          await client.resolve(reference.repository, digest, { signal }).catch((err) => {
            throw registryProblem(err, `${reference.text} (private, cached)`);
          });
        }
        return key;
      } catch (err) {
        this.unpin(key);
        throw err;
      }
    } finally {
      client.close();
    }
  }

  /**
   * Pulls the artifact `digest` into `dir` for the cache, within
   * --pull-timeout, after the cache made room for its layers.
   */
  private fill(client: RegistryClient, p: Publish, digest: string, dir: string, reserve: (bytes: number) => Promise<void>) {
    const { reference } = p;
    const started = Date.now();
    return withTimeout(`pull ${reference.text}`, { timeoutMs: this.options.pullTimeoutMs }, async (signal) => {
      const pulled = await pull(client, parseReference(`${reference.registry}/${reference.repository}@${digest}`), dir, {
        concurrency: p.concurrency,
        mediaTypes: p.mediaTypes,
        reporter: new SilentReporter(),
        signal,
        beforeTransfer: (layers) => reserve(layers.reduce((sum, l) => sum + l.size, 0)),
      });
      const size = pulled.layers.reduce((sum, l) => sum + l.descriptor.size, 0);
      this.options.metrics.pulled(size, (Date.now() - started) / 1000);
      return { digest, reference: reference.text, private: await this.isPrivate(p, digest, signal) };
    });
  }

  /** Mounts the entry `key` on the target, recording it first: a mount without a record is never ours. */
  private async mount(p: Publish, key: string, tentative = false): Promise<object> {
    if (await this.published(p)) return {};
    const { target } = p;
    // Synchronous metadata calls: each is microseconds, and a trip through the thread pool costs more.
    try {
      mkdirSync(target, { recursive: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw code === 'EEXIST' || code === 'ENOTDIR' ? new CsiError(grpc.status.FAILED_PRECONDITION, `target_path ${target} exists and is not a directory`) : err;
    }
    const real = realpathSync(target);
    if (real !== target) throw new CsiError(grpc.status.INVALID_ARGUMENT, `target_path ${target} leads through a symbolic link to ${real}`);
    if (await isMountPoint(target)) {
      throw new CsiError(grpc.status.FAILED_PRECONDITION, `target_path ${target} is already a mount point that this plugin did not make; unmount it first`);
    }
    this.record(target, { volumeId: p.volumeId, key, artifact: p.artifact, ...(tentative ? { tentative } : {}) });
    try {
      await bindReadOnly(this.options.cache.path(key), target);
    } catch (err) {
      this.record(target);
      throw err;
    }
    return {};
  }

  /** The digest to mount, as the pull policy allows finding it. */
  private async resolve(client: RegistryClient, p: Publish, signal: AbortSignal): Promise<string> {
    const { reference, policy } = p;
    const remembered = resolvedAs(p);
    if (reference.digest) return reference.digest;
    if (policy === 'Never') {
      const digest = this.options.cache.lastResolved(remembered);
      if (!digest) {
        throw new CsiError(grpc.status.FAILED_PRECONDITION, `pull policy Never: ${reference.text} is not in this node's cache. `
          + 'Pull it once with IfNotPresent or Always, or change the policy.');
      }
      return digest;
    }
    try {
      const { digest } = await client.resolve(reference.repository, reference.manifestReference, { signal });
      await this.options.cache.remember(remembered, digest);
      return digest;
    } catch (err) {
      // The registry is out of reach: IfNotPresent may serve what the cache has, unless it is private.
      const digest = this.options.cache.lastResolved(remembered);
      if (policy === 'IfNotPresent' && isTransient(err) && digest) return digest;
      throw registryProblem(err, reference.text);
    }
  }

  private async isPrivate(p: Publish, digest: string, signal?: AbortSignal): Promise<boolean> {
    const anonymous = new RegistryClient(p.reference.registry, { plainHttp: p.plainHttp, insecure: p.insecure, ca: this.options.ca, attempts: 1 });
    try {
      await anonymous.resolve(p.reference.repository, digest, { signal });
      return false;
    } catch {
      return true;
    } finally {
      anonymous.close();
    }
  }

  /** Unmounts the recorded mount at `target`, if it is still there; refuses a mount that is not the record's cache entry. */
  private async unmountRecorded(target: string, record: MountRecord): Promise<void> {
    if (!await isMountPoint(target)) return;
    if (!await isBindMountOf(target, this.options.cache.path(record.key))) {
      throw new CsiError(grpc.status.FAILED_PRECONDITION, `${target} holds a mount that is not volume ${record.volumeId}'s cache entry; nothing was unmounted`);
    }
    await unmount(target);
  }

  /**
   * Unmounts what this plugin mounted for this volume at the target, and
   * removes the target if it is then an empty directory. A mount it did not
   * make, another volume's mount, and files are left alone.
   */
  public async unpublish(request: any): Promise<object> {
    const volumeId = required(request.volume_id, 'volume_id');
    const target = kubeletPath(request.target_path, 'target_path', this.options.kubeletDir);
    return this.serialized(target, async () => {
      const record = this.mounts.get(target);
      if (record && record.volumeId !== volumeId) {
        throw new CsiError(grpc.status.NOT_FOUND, `volume ${volumeId} is not published at ${target} (volume ${record.volumeId} is); nothing was unmounted`);
      }
      if (record) await this.unmountRecorded(target, record);
      // Only an empty directory: rmdir fails on anything else, and that is left in place.
      if ((await lstat(target).catch(() => undefined))?.isDirectory() && !await isMountPoint(target)) {
        await rmdir(target).catch((err: NodeJS.ErrnoException) => this.reporter.event('unpublish', { target, message: `left in place: ${err.code}` }));
      }
      this.record(target);
      await this.options.cache.collect(() => this.keysInUse);
      return {};
    });
  }
}
