import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, rmdir, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { NodeCache } from './cache';
import { CsiMetrics } from './metrics';
import { bindReadOnly, isMountPoint, unmount } from './mounter';
import { CsiError } from './protocol';
import { CSI_ATTRIBUTE } from '../../src/csi-attributes';
import { Credential, CredentialSource, credentialFromAuths, DockerConfig } from '../oci/auth/credentials';
import { isRetryableError } from '../oci/http';
import { SilentReporter } from '../oci/progress';
import { pull } from '../oci/pull';
import { parseReference, Reference } from '../oci/reference';
import { RegistryClient, RegistryError } from '../oci/registry-client';

type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

interface MountRecord {
  readonly volumeId: string;
  readonly key: string;
}

export interface NodeOptions {
  readonly nodeId: string;
  readonly cache: NodeCache;
  /** Where mount records live, so that a restarted plugin can still unpublish. */
  readonly stateDir: string;
  readonly metrics: CsiMetrics;
  /** Cache entries are shared only within a namespace (the default). */
  readonly isolateNamespaces: boolean;
}

function bool(value: string | undefined, name: string): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new CsiError(grpc.status.INVALID_ARGUMENT, `volume attribute ${name} must be "true" or "false", not "${value}"`);
}

/** Credentials from a dockerconfigjson secret passed through nodePublishSecretRef. */
function secretCredentials(secrets: Record<string, string>, registry: string): CredentialSource {
  return {
    async get(): Promise<Credential | undefined> {
      const text = secrets['.dockerconfigjson'] ?? secrets['config.json'];
      if (!text) return undefined;
      let config: DockerConfig;
      try {
        config = JSON.parse(text);
      } catch {
        throw new CsiError(grpc.status.INVALID_ARGUMENT, 'the nodePublishSecretRef Secret has no valid .dockerconfigjson');
      }
      return credentialFromAuths(config, registry, 'the nodePublishSecretRef Secret');
    },
  };
}

/** CSI errors for registry failures: what went wrong and what to do. */
function registryProblem(err: unknown, reference: string): CsiError {
  if (err instanceof CsiError) return err;
  if (err instanceof RegistryError) {
    if (err.status === 401 || err.status === 403) {
      return new CsiError(grpc.status.PERMISSION_DENIED, `${reference}: the registry refused this pod's credentials (${err.message}); `
        + 'set nodePublishSecretRef to a dockerconfigjson Secret that may read it');
    }
    if (err.status === 404) return new CsiError(grpc.status.NOT_FOUND, `${reference} does not exist in the registry (${err.message})`);
    return new CsiError(grpc.status.UNAVAILABLE, `${reference}: ${err.message}`);
  }
  return new CsiError(grpc.status.UNAVAILABLE, `${reference}: ${(err as Error).message}`);
}

/** The CSI Node service: publish mounts an artifact from the node cache, read-only; unpublish undoes it. */
export class OrasNode {
  private mounts = new Map<string, MountRecord>();
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Keys between cache fill and mount: collection must not take them. */
  private readonly pinned = new Map<string, number>();
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly options: NodeOptions) {}

  private get mountsPath(): string {
    return join(this.options.stateDir, 'mounts.json');
  }

  /** Cache keys that mounts still use (the cache keeps them when it opens). */
  public get mountedKeys(): Set<string> {
    return new Set([...this.mounts.values()].map((m) => m.key));
  }

  /** Loads the mount records a previous run left. */
  public async open(): Promise<void> {
    await mkdir(this.options.stateDir, { recursive: true });
    const saved = await readFile(this.mountsPath, 'utf8').then((t) => JSON.parse(t) as Record<string, MountRecord>, () => ({}));
    this.mounts = new Map(Object.entries(saved));
    this.options.metrics.mounts = this.mounts.size;
  }

  /** Writes the mount records, one save after another, each with the records current when it runs. */
  private saveMounts(): Promise<void> {
    this.saving = this.saving.catch(() => undefined).then(async () => {
      const tmp = `${this.mountsPath}.${randomBytes(4).toString('hex')}`;
      await writeFile(tmp, JSON.stringify(Object.fromEntries(this.mounts)));
      await rename(tmp, this.mountsPath);
      this.options.metrics.mounts = this.mounts.size;
    });
    return this.saving;
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

  public getInfo(): object {
    return { node_id: this.options.nodeId, max_volumes_per_node: 0 };
  }

  public getCapabilities(): object {
    return { capabilities: [{ rpc: { type: 'GET_VOLUME_STATS' } }] };
  }

  /** Usage of a published volume: the filesystem of the node cache, where its tree lives. */
  public async volumeStats(request: any): Promise<object> {
    const volumeId: string = request.volume_id;
    const path: string = request.volume_path;
    if (!volumeId) throw new CsiError(grpc.status.INVALID_ARGUMENT, 'volume_id is required');
    if (!path) throw new CsiError(grpc.status.INVALID_ARGUMENT, 'volume_path is required');
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

  public async publish(request: any): Promise<object> {
    const volumeId: string = request.volume_id;
    const target: string = request.target_path;
    if (!volumeId) throw new CsiError(grpc.status.INVALID_ARGUMENT, 'volume_id is required');
    if (!target) throw new CsiError(grpc.status.INVALID_ARGUMENT, 'target_path is required');
    const capability = request.volume_capability;
    if (!capability) throw new CsiError(grpc.status.INVALID_ARGUMENT, 'volume_capability is required');
    if (capability.block) throw new CsiError(grpc.status.INVALID_ARGUMENT, 'block access is not supported: an artifact is mounted as a read-only directory');
    const context: Record<string, string> = request.volume_context ?? {};
    const referenceText = context[CSI_ATTRIBUTE.REFERENCE];
    if (!referenceText) {
      throw new CsiError(grpc.status.INVALID_ARGUMENT, `the volume attribute ${CSI_ATTRIBUTE.REFERENCE} is required (the artifact to mount, for example registry:5000/models/demo:v1)`);
    }
    let reference: Reference;
    try {
      reference = parseReference(referenceText);
    } catch (err) {
      throw new CsiError(grpc.status.INVALID_ARGUMENT, `${CSI_ATTRIBUTE.REFERENCE}: ${(err as Error).message}`);
    }
    const plainHttp = bool(context[CSI_ATTRIBUTE.PLAIN_HTTP], CSI_ATTRIBUTE.PLAIN_HTTP) ?? false;
    const insecure = bool(context[CSI_ATTRIBUTE.INSECURE], CSI_ATTRIBUTE.INSECURE) ?? false;
    const pullAlways = bool(context[CSI_ATTRIBUTE.PULL_ALWAYS], CSI_ATTRIBUTE.PULL_ALWAYS) ?? false;
    const policyText = context[CSI_ATTRIBUTE.PULL_POLICY] ?? (pullAlways ? 'Always' : 'IfNotPresent');
    if (!['Always', 'IfNotPresent', 'Never'].includes(policyText)) {
      throw new CsiError(grpc.status.INVALID_ARGUMENT, `${CSI_ATTRIBUTE.PULL_POLICY} must be Always, IfNotPresent or Never, not "${policyText}"`);
    }
    const policy = policyText as PullPolicy;
    const concurrencyText = context[CSI_ATTRIBUTE.CONCURRENCY];
    const concurrency = concurrencyText === undefined ? 3 : Number(concurrencyText);
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new CsiError(grpc.status.INVALID_ARGUMENT, `${CSI_ATTRIBUTE.CONCURRENCY} must be a positive integer, not "${concurrencyText}"`);
    }
    const mediaTypes = context[CSI_ATTRIBUTE.MEDIA_TYPES]?.split(',').map((m) => m.trim()).filter(Boolean);
    const scope = this.options.isolateNamespaces ? (context[CSI_ATTRIBUTE.POD_NAMESPACE] ?? '') : '';

    return this.serialized(target, async () => {
      // Idempotent first: the same volume on the same target is done, whatever the registry says now.
      const existing = this.mounts.get(target);
      if (existing) {
        const mounted = await isMountPoint(target);
        if (mounted && existing.volumeId === volumeId) return {};
        if (mounted) throw new CsiError(grpc.status.ALREADY_EXISTS, `target ${target} already holds volume ${existing.volumeId}`);
        // The record outlived its mount (a node reboot): forget it and publish anew.
        this.mounts.delete(target);
        await this.saveMounts();
      }
      const started = Date.now();
      const credentials = secretCredentials(request.secrets ?? {}, reference.registry);
      const client = new RegistryClient(reference.registry, { plainHttp, insecure, credentials, attempts: 3 });
      let pinnedKey: string | undefined;
      try {
        const digest = await this.resolve(client, reference, policy, scope);
        const key = createHash('sha256').update(`${digest}\n${(mediaTypes ?? []).join(',')}\n${scope}`).digest('hex');
        pinnedKey = key;
        this.pinned.set(key, (this.pinned.get(key) ?? 0) + 1);
        const { entry, hit } = await this.options.cache.ensure(key, async (dir) => {
          const pulled = await pull(client, parseReference(`${reference.registry}/${reference.repository}@${digest}`), dir, {
            concurrency, mediaTypes, reporter: new SilentReporter(),
          });
          const size = pulled.layers.reduce((sum, l) => sum + l.descriptor.size, 0);
          this.options.metrics.pulled(size, (Date.now() - started) / 1000);
          return { digest, reference: reference.text, size, private: await this.isPrivate(reference, digest, plainHttp, insecure) };
        }).catch((err) => {
          throw registryProblem(err, reference.text);
        });
        if (hit) this.options.metrics.cacheHits++;
        if (entry.private) {
          // A private tree is served only after this pod's credentials pass the registry, whatever the policy.
          if (policy === 'Never') {
            throw new CsiError(grpc.status.FAILED_PRECONDITION, `${reference.text} is private, and pull policy Never cannot check this pod's credentials against the registry`);
          }
          await client.resolve(reference.repository, digest).catch((err) => {
            throw registryProblem(err, `${reference.text} (private, cached)`);
          });
        }
        await mkdir(target, { recursive: true });
        await bindReadOnly(this.options.cache.path(key), target);
        this.mounts.set(target, { volumeId, key });
        await this.saveMounts();
        return {};
      } catch (err) {
        this.options.metrics.error(err instanceof CsiError ? grpc.status[err.code] : 'INTERNAL');
        throw err;
      } finally {
        if (pinnedKey) {
          const count = (this.pinned.get(pinnedKey) ?? 1) - 1;
          if (count > 0) this.pinned.set(pinnedKey, count);
          else this.pinned.delete(pinnedKey);
        }
        client.close();
      }
    });
  }

  /** The digest to mount, as the pull policy allows finding it. */
  private async resolve(client: RegistryClient, reference: Reference, policy: PullPolicy, scope: string): Promise<string> {
    const remembered = `${scope}\n${reference.text}`;
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
      const { digest } = await client.resolve(reference.repository, reference.manifestReference);
      await this.options.cache.remember(remembered, digest);
      return digest;
    } catch (err) {
      // The registry is out of reach: IfNotPresent may serve what the cache has, unless it is private.
      const unreachable = isRetryableError((err as { cause?: unknown }).cause ?? err) || (err instanceof RegistryError && err.status >= 500);
      const digest = this.options.cache.lastResolved(remembered);
      if (policy === 'IfNotPresent' && unreachable && digest) return digest;
      throw registryProblem(err, reference.text);
    }
  }

  private async isPrivate(reference: Reference, digest: string, plainHttp: boolean, insecure: boolean): Promise<boolean> {
    const anonymous = new RegistryClient(reference.registry, { plainHttp, insecure, attempts: 1 });
    try {
      await anonymous.resolve(reference.repository, digest);
      return false;
    } catch {
      return true;
    } finally {
      anonymous.close();
    }
  }

  public async unpublish(request: any): Promise<object> {
    const volumeId: string = request.volume_id;
    const target: string = request.target_path;
    if (!volumeId) throw new CsiError(grpc.status.INVALID_ARGUMENT, 'volume_id is required');
    if (!target) throw new CsiError(grpc.status.INVALID_ARGUMENT, 'target_path is required');
    return this.serialized(target, async () => {
      if (await isMountPoint(target)) await unmount(target);
      const exists = await stat(target).then(() => true, () => false);
      if (exists) await rmdir(target).catch(() => rm(target, { force: true }));
      if (this.mounts.delete(target)) await this.saveMounts();
      await this.options.cache.collect(new Set([...this.mountedKeys, ...this.pinned.keys()]));
      return {};
    });
  }
}
