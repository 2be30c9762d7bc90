import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import { requirePeer, run } from './peers';
import { runAsync } from './run-async';

/**
 * The oras e2e test data (`../shared/fixtures/oras-e2e` next to the repo),
 * or `$ORAS_FIXTURES`. Throws a clear error when it is missing.
 */
export function fixturesDir(): string {
  const dir = resolve(process.env.ORAS_FIXTURES ?? join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'oras-e2e'));
  if (!existsSync(join(dir, 'SUMMARY.txt'))) {
    throw new Error(`The oras e2e fixtures are not at ${dir} (no SUMMARY.txt). Set ORAS_FIXTURES to the oras-e2e directory.`);
  }
  return dir;
}

/** Whether fixturesDir() would succeed. */
export function fixturesAvailable(): boolean {
  try {
    fixturesDir();
    return true;
  } catch {
    return false;
  }
}

/** The OCI image layouts the oras CLI e2e tests use (`zot/command/<name>`). */
export type FixtureLayout = 'artifacts' | 'images' | 'blobs';

/** Directory of an OCI image layout, for `oci:<dir>:<tag>`. */
export function fixtureLayout(name: FixtureLayout): string {
  return join(fixturesDir(), 'zot', 'command', name);
}

/** The distribution storage roots in `distribution/mount/<name>.tar.gz`. */
export type FixtureStorage = 'artifacts' | 'artifacts_index' | 'images';

const extracted = new Set<string>();
let cleanupRegistered = false;

/**
 * Extracts `distribution/mount/<name>.tar.gz` into a new temporary directory
 * and returns it: the storage rootdirectory (it holds `docker/registry/v2/…`)
 * to pass as `Distribution.start({ storageRoot })`. Remove it with
 * removeFixtureStorageRoot() (also done when the process exits).
 */
export function fixtureStorageRoot(name: FixtureStorage): string {
  const archive = join(fixturesDir(), 'distribution', 'mount', `${name}.tar.gz`);
  if (!existsSync(archive)) throw new Error(`No fixture storage archive ${archive}`);
  const root = mkdtempSync(join(tmpdir(), `oras-fixture-${name}-`));
  extracted.add(root);
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    process.once('exit', () => extracted.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  }
  const result = run('tar', ['-xzf', archive, '-C', root, '--no-same-owner', '--no-same-permissions']);
  if (result.status !== 0) {
    removeFixtureStorageRoot(root);
    throw new Error(`tar could not extract ${archive}:\n${result.output}`);
  }
  if (!existsSync(join(root, 'docker', 'registry', 'v2', 'repositories'))) {
    removeFixtureStorageRoot(root);
    throw new Error(`${archive} does not hold docker/registry/v2/repositories at its top`);
  }
  return root;
}

/** Removes a directory fixtureStorageRoot() created. */
export function removeFixtureStorageRoot(root: string): void {
  rmSync(root, { recursive: true, force: true });
  extracted.delete(root);
}

/** One tag in a distribution storage tree. */
export interface StoredTag {
  readonly repository: string;
  readonly tag: string;
  /** Content of `_manifests/tags/<tag>/current/link`. */
  readonly digest: string;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Repositories in a storage root (directories under docker/registry/v2/repositories holding `_manifests`), sorted. */
export function listStorageRepositories(root: string): string[] {
  const base = join(root, 'docker', 'registry', 'v2', 'repositories');
  const found: string[] = [];
  const walk = (relative: string[]) => {
    const dir = join(base, ...relative);
    for (const entry of readdirSync(dir)) {
      if (entry.startsWith('_') || !isDirectory(join(dir, entry))) continue;
      const path = [...relative, entry];
      if (isDirectory(join(base, ...path, '_manifests'))) found.push(path.join('/'));
      walk(path);
    }
  };
  if (isDirectory(base)) walk([]);
  return found.sort();
}

/** Every tagged manifest in a storage root, sorted by repository and tag: what a test iterates for "every tagged artifact". */
export function listStorageTags(root: string): StoredTag[] {
  const tags: StoredTag[] = [];
  for (const repository of listStorageRepositories(root)) {
    const dir = join(root, 'docker', 'registry', 'v2', 'repositories', ...repository.split('/'), '_manifests', 'tags');
    if (!isDirectory(dir)) continue;
    for (const tag of readdirSync(dir).sort()) {
      const link = join(dir, tag, 'current', 'link');
      if (!existsSync(link)) continue;
      tags.push({ repository, tag, digest: readFileSync(link, 'utf8').trim() });
    }
  }
  return tags;
}

/** One layer (or index child) line of SUMMARY.txt. */
export interface SummaryDescriptor {
  readonly mediaType: string;
  /** The first 12 hex digits, as SUMMARY.txt prints them: `sha256:2c26b46b68ff`. */
  readonly digestPrefix: string;
  readonly size: number;
  /** `org.opencontainers.image.title`, when set. */
  readonly title?: string;
  /** The blob's content when SUMMARY.txt shows it (small text blobs). */
  readonly content?: Buffer;
}

/** One manifest of SUMMARY.txt. */
export interface SummaryManifest {
  /** `zot/command/artifacts` etc. */
  readonly layout: string;
  /** Undefined for untagged manifests (referrers, index children). */
  readonly tag?: string;
  /** `sha256:` and the first 12 hex digits. */
  readonly digestPrefix: string;
  readonly size: number;
  /** Empty when the manifest sets none. */
  readonly artifactType: string;
  /** Config media type; undefined for an index. */
  readonly configMediaType?: string;
  readonly hasSubject: boolean;
  /** Layers of a manifest, or the manifests of an index. */
  readonly entries: SummaryDescriptor[];
}

/** Decodes a Python bytes literal body (`foo\n`, `\x00`, `\'`). */
function pythonBytes(literal: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < literal.length; i++) {
    const c = literal[i];
    if (c !== '\\') {
      bytes.push(...Buffer.from(c, 'utf8'));
      continue;
    }
    const next = literal[++i];
    const simple: Record<string, number> = { 'n': 10, 't': 9, 'r': 13, '0': 0, '\\': 92, '\'': 39, '"': 34 };
    if (next === 'x') {
      bytes.push(parseInt(literal.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (next in simple) {
      bytes.push(simple[next]);
    } else {
      bytes.push(92, next.charCodeAt(0));
    }
  }
  return Buffer.from(bytes);
}

function pythonString(value: string): string | undefined {
  if (value === 'None') return undefined;
  return value.replace(/^'(.*)'$/, '$1');
}

/** Parses SUMMARY.txt: the manifests of the oras e2e OCI layouts with their layers. */
export function readSummary(): SummaryManifest[] {
  const text = readFileSync(join(fixturesDir(), 'SUMMARY.txt'), 'utf8');
  const manifests: SummaryManifest[] = [];
  let layout = '';
  const manifestLine = /^- (\S+): \S+ (sha256:[0-9a-f]+) size=(\d+) artifactType='([^']*)' config=(\S+) subject=(yes|no)$/;
  const entryLine = /^ {4}(\S+) (sha256:[0-9a-f]+) (\d+) title=('(?:[^'\\]|\\.)*'|None) (.*)$/;
  for (const line of text.split('\n')) {
    const section = /^## (\S+)/.exec(line);
    if (section) {
      layout = section[1];
      continue;
    }
    const m = manifestLine.exec(line);
    if (m) {
      manifests.push({
        layout,
        tag: m[1] === '<untagged>' ? undefined : m[1],
        digestPrefix: m[2],
        size: Number(m[3]),
        artifactType: m[4],
        configMediaType: m[5] === 'None' ? undefined : m[5],
        hasSubject: m[6] === 'yes',
        entries: [],
      });
      continue;
    }
    const e = entryLine.exec(line);
    if (e && manifests.length > 0) {
      const content = /^b'(.*)'$/.exec(e[5]) ?? /^b"(.*)"$/.exec(e[5]);
      manifests[manifests.length - 1].entries.push({
        mediaType: e[1],
        digestPrefix: e[2],
        size: Number(e[3]),
        title: pythonString(e[4]),
        content: content ? pythonBytes(content[1]) : undefined,
      });
    }
  }
  return manifests;
}

/** Where to copy an OCI layout to: a registry started by Distribution, or any host with its CA. */
export interface SeedTarget {
  /** `host:port` */
  readonly host: string;
  readonly scheme?: 'http' | 'https';
  /** PEM of the CA to trust for HTTPS; without it, TLS is not verified. */
  readonly caPem?: string;
}

export interface SeedOptions {
  /** Registry credentials, written to a temporary auth file (never on the command line). */
  readonly username?: string;
  readonly password?: string;
  /** Default 60 s. */
  readonly timeoutMs?: number;
}

/**
 * Copies `<layoutDir>:<tag>` to `<host>/<repository>:<tag>` with skopeo
 * (`--all --preserve-digests`, so indexes keep every child and every digest
 * stays as oras wrote it). skopeo 1.9 copies oras artifacts with non-image
 * config media types unchanged. Asynchronous, so a TokenIssuer in the same
 * process can answer skopeo. Rejects with skopeo's output on failure.
 */
export async function seedFromOciLayout(
  layoutDir: string, tag: string, registry: SeedTarget, repository: string, options: SeedOptions = {},
): Promise<void> {
  const skopeo = requirePeer('skopeo');
  const scratch = mkdtempSync(join(tmpdir(), 'oras-seed-'));
  try {
    const args = ['--insecure-policy', 'copy', '--quiet', '--all', '--preserve-digests', '--retry-times', '0'];
    if ((registry.scheme ?? 'http') === 'https' && registry.caPem) {
      writeFileSync(join(scratch, 'ca.crt'), registry.caPem);
      args.push('--dest-cert-dir', scratch);
    } else {
      args.push('--dest-tls-verify=false');
    }
    if (options.username !== undefined) {
      const auth = Buffer.from(`${options.username}:${options.password ?? ''}`).toString('base64');
      const authFile = join(scratch, 'auth.json');
      writeFileSync(authFile, JSON.stringify({ auths: { [registry.host]: { auth } } }), { mode: 0o600 });
      args.push('--dest-authfile', authFile);
    }
    args.push(`oci:${layoutDir}:${tag}`, `docker://${registry.host}/${repository}:${tag}`);
    // HOME and XDG_RUNTIME_DIR point at the scratch directory so no credentials of the machine's user are used
    const result = await runAsync(skopeo, args, { env: { ...process.env, HOME: scratch, XDG_RUNTIME_DIR: scratch }, timeoutMs: options.timeoutMs });
    if (result.status !== 0) {
      throw new Error(`skopeo could not copy oci:${layoutDir}:${tag} to ${registry.host}/${repository}:${tag} (exit ${result.status}):\n${result.output}`);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
