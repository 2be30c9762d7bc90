import { isDigest } from './digest';
import { InvalidManifestError } from './errors';
import { Manifest } from './media-types';

type Json = Record<string, unknown>;

/**
 * Parses a manifest or index and checks the type of every field we use before anything acts on it: a
 * wrong type is a permanent InvalidManifestError naming the field, never a retry.
 */
export function parseManifest(raw: Buffer, what: string): Manifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new InvalidManifestError(what, 'the document', 'is not JSON');
  }
  const check = new Checker(what);
  const manifest = check.object(parsed, 'the document');
  if (manifest.schemaVersion !== 2) check.fail('schemaVersion', `must be 2, not ${shown(manifest.schemaVersion)}`);
  check.optionalString(manifest, 'mediaType', '');
  check.optionalString(manifest, 'artifactType', '');
  check.stringMap(manifest.annotations, 'annotations');
  for (const key of ['config', 'subject']) {
    if (manifest[key] !== undefined) check.descriptor(manifest[key], key);
  }
  for (const key of ['layers', 'blobs', 'manifests']) {
    const list = manifest[key];
    if (list === undefined) continue;
    if (!Array.isArray(list)) check.fail(key, `must be an array, not ${shown(list)}`);
    (list as unknown[]).forEach((item, i) => check.descriptor(item, `${key}[${i}]`));
  }
  return manifest as unknown as Manifest;
}

class Checker {
  constructor(private readonly what: string) {}

  fail(field: string, problem: string): never {
    throw new InvalidManifestError(this.what, field, problem);
  }

  object(value: unknown, field: string): Json {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(field, `must be an object, not ${shown(value)}`);
    return value as Json;
  }

  optionalString(parent: Json, key: string, prefix: string): void {
    const value = parent[key];
    if (value !== undefined && typeof value !== 'string') this.fail(`${prefix}${key}`, `must be a string, not ${shown(value)}`);
  }

  stringMap(value: unknown, field: string): void {
    if (value === undefined) return;
    for (const [key, item] of Object.entries(this.object(value, field))) {
      if (typeof item !== 'string') this.fail(`${field}[${JSON.stringify(key)}]`, `must be a string, not ${shown(item)}`);
    }
  }

  descriptor(value: unknown, field: string): void {
    const descriptor = this.object(value, field);
    if (typeof descriptor.mediaType !== 'string') this.fail(`${field}.mediaType`, `must be a string, not ${shown(descriptor.mediaType)}`);
    if (!isDigest(descriptor.digest)) this.fail(`${field}.digest`, `must be a sha256 or sha512 digest, not ${shown(descriptor.digest)}`);
    const size = descriptor.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) this.fail(`${field}.size`, `must be a non-negative integer, not ${shown(size)}`);
    this.optionalString(descriptor, 'artifactType', `${field}.`);
    this.optionalString(descriptor, 'data', `${field}.`);
    this.stringMap(descriptor.annotations, `${field}.annotations`);
  }
}

/** A value as an error shows it: its JSON, cut short, and its type when JSON hides it (13 vs "13"). */
function shown(value: unknown): string {
  if (value === undefined) return 'missing';
  const json = JSON.stringify(value) ?? String(value);
  const cut = json.length > 80 ? `${json.slice(0, 77)}...` : json;
  return typeof value === 'string' ? `${cut} (a string)` : cut;
}
