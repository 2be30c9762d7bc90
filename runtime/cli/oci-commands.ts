import { readFile, writeFile } from 'node:fs/promises';
import { ParseArgsConfig } from 'node:util';
import { cancellable, Command, UsageError } from './command';
import {
  clientFor, durationFlag, ORAS_OPTIONS, ORAS_USAGE, parseAnnotations, parseFlags, positiveInteger, REGISTRY_OPTIONS, REGISTRY_USAGE, RegistryFlags,
  reporterFor, sizeFlag,
} from './registry-flags';
import { Reporter } from '../oci/progress';
import { pull } from '../oci/pull';
import { AnnotationMap, parsePushItem, push } from '../oci/push';
import { parseReference, Reference } from '../oci/reference';
import { RegistryClient } from '../oci/registry-client';
import { waitFor } from '../oci/wait';

function reference(text: string | undefined, command: string) {
  if (!text) throw new UsageError(`${command} needs an artifact reference such as registry.example.com:5000/team/data:v1`);
  try {
    return parseReference(text);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** A push reference with oras's several tags (`registry/repo:v1,latest`): the first tag, and the others. */
function taggedReference(text: string | undefined): { ref: Reference; moreTags: string[] } {
  const slash = text?.lastIndexOf('/') ?? -1;
  const colon = text === undefined || text.includes('@') ? -1 : text.indexOf(':', slash + 1);
  if (colon < 0 || slash < 0) return { ref: reference(text, 'push'), moreTags: [] };
  const [first, ...more] = text!.slice(colon + 1).split(',');
  const ref = reference(`${text!.slice(0, colon)}:${first}`, 'push');
  for (const tag of more) reference(`${text!.slice(0, colon)}:${tag}`, 'push');
  return { ref, moreTags: more };
}

/** `--format`: `json`, as in oras; its Go templates have no equivalent here. */
function formatFlag(value: string | undefined): 'json' | undefined {
  if (value === undefined || value === 'json') return value;
  throw new UsageError(`--format ${value} is not supported: use --format json (oras's go-template and --template have no equivalent here)`);
}

/** The flags of every command here: the registry's, and `--timeout`. */
const OPTIONS = { ...REGISTRY_OPTIONS, ...ORAS_OPTIONS, timeout: { type: 'string' } } as const;
const OPTIONS_USAGE = [
  '  --timeout <duration>       give up after this long, for example 90s or 10m (default: no limit; stalled transfers fail anyway)',
  REGISTRY_USAGE,
  ORAS_USAGE,
].join('\n');

/** A command's own flags and OPTIONS, with positionals. */
function parseCommand<T extends ParseArgsConfig['options']>(args: string[], own: T) {
  return parseFlags({ args, allowPositionals: true, options: { ...OPTIONS, ...own } });
}

/**
 * Runs one verb against the reference's registry and prints the digest it resolves to. SIGTERM and
 * SIGINT cancel it (it cleans up first); errors get the verb and reference in front.
 */
async function printDigest(
  verb: string, ref: Reference, flags: RegistryFlags, reporter: Reporter, work: (client: RegistryClient, signal: AbortSignal) => Promise<string>,
): Promise<number> {
  const client = clientFor(ref, flags, reporter);
  try {
    process.stdout.write(`${await cancellable((signal) => work(client, signal))}\n`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new Error(`${verb} ${ref.text}: ${(err as Error).message}`, { cause: err });
  } finally {
    client.close();
  }
}

async function readAnnotationFile(path: string): Promise<AnnotationMap> {
  const text = await readFile(path, 'utf8').catch((err: Error) => {
    throw new UsageError(`--annotation-file ${path}: ${err.message}`);
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Never echo file content (JSON.parse quotes it).
    throw new UsageError(`--annotation-file ${path} is not valid JSON`);
  }
  const valid = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
    && Object.values(parsed).every((v) => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((s) => typeof s === 'string'));
  if (!valid) throw new UsageError(`--annotation-file ${path} must map "$manifest", "$config" or file titles to objects of string values`);
  return parsed as AnnotationMap;
}

export const pushCommand: Command = {
  name: 'push',
  summary: 'push files and directories as an ORAS artifact',
  usage: [
    'Usage: oras-runtime push <reference> <file|dir>[:mediaType]... [options]',
    '',
    'Files become layers titled with their path; directories become tar+gzip layers that pullers unpack.',
    'Prints the manifest digest on stdout; progress goes to stderr.',
    '',
    '  --artifact-type <type>     the manifest artifactType (default application/vnd.unknown.artifact.v1)',
    '  --annotation-file <file>   oras annotation file: {"$manifest": {...}, "$config": {...}, "<title>": {...}}',
    '  --annotation, -a <k=v>     a manifest annotation (repeatable)',
    '  --no-unpack                push directories without the unpack annotation (pullers keep the tarball)',
    '  --export-manifest <file>   also write the pushed manifest to <file>',
    '  --format json              print what was pushed as oras --format json does, instead of the digest',
    '  A reference may name several tags, as in oras: registry/repo:v1,latest',
    OPTIONS_USAGE,
  ].join('\n'),
  async run(args) {
    const { values, positionals } = parseCommand(args, {
      'artifact-type': { type: 'string' },
      'annotation-file': { type: 'string' },
      'annotation': { type: 'string', short: 'a', multiple: true },
      'no-unpack': { type: 'boolean' },
      'export-manifest': { type: 'string' },
      'format': { type: 'string' },
    } as const);
    const [refText, ...paths] = positionals;
    const { ref, moreTags } = taggedReference(refText);
    if (!ref.tag && !ref.digest) throw new UsageError('push needs a tag');
    const format = formatFlag(values.format);
    const annotations: AnnotationMap = values['annotation-file'] ? await readAnnotationFile(values['annotation-file']) : {};
    const extra = parseAnnotations(values.annotation);
    if (Object.keys(extra).length > 0) annotations.$manifest = { ...annotations.$manifest, ...extra };
    const concurrency = positiveInteger(values.concurrency, '--concurrency', 3);
    const timeoutMs = durationFlag(values.timeout, '--timeout');
    const reporter = reporterFor(values);
    return printDigest('push', ref, values, reporter, async (client, signal) => {
      const pushed = await push(client, ref, paths.map(parsePushItem), {
        artifactType: values['artifact-type'],
        annotations,
        unpack: !values['no-unpack'],
        concurrency,
        reporter,
        signal,
        timeoutMs,
        alsoTags: moreTags,
      });
      if (values['export-manifest']) await writeFile(values['export-manifest'], pushed.raw);
      if (format !== 'json') return pushed.digest;
      const repository = `${ref.registry}/${ref.repository}`;
      return JSON.stringify({
        reference: `${repository}@${pushed.digest}`,
        mediaType: pushed.manifest.mediaType,
        digest: pushed.digest,
        size: pushed.size,
        annotations: pushed.manifest.annotations ?? {},
        artifactType: pushed.manifest.artifactType,
        referenceAsTags: [ref.tag, ...moreTags].filter((tag) => tag !== undefined).map((tag) => `${repository}:${tag}`),
      }, null, 2);
    });
  },
};

export const pullCommand: Command = {
  name: 'pull',
  summary: 'pull an ORAS artifact into a directory',
  usage: [
    'Usage: oras-runtime pull <reference> -o <dir> [options]',
    '',
    'Writes every titled layer under <dir>; directory layers are unpacked into what is there, as oras pull does.',
    'Everything is verified in a staging directory before it appears under its name; a failed or cancelled',
    'pull leaves nothing behind. Prints the manifest digest on stdout; progress goes to stderr.',
    '',
    '  --output, -o <dir>         where to write (default: the current directory)',
    '  --media-type <type>        keep only layers of this media type (repeatable)',
    '  --no-unpack                keep directory layers as tarballs',
    '  --max-unpacked-size <size> largest size a directory layer may unpack to',
    '                             (default 100 times its compressed size, at least 1GiB)',
    '  --format json              print the files written as oras --format json does, instead of the digest',
    OPTIONS_USAGE,
  ].join('\n'),
  async run(args) {
    const { values, positionals } = parseCommand(args, {
      'output': { type: 'string', short: 'o' },
      'media-type': { type: 'string', multiple: true },
      'no-unpack': { type: 'boolean' },
      'max-unpacked-size': { type: 'string' },
      'format': { type: 'string' },
    } as const);
    if (positionals.length !== 1) throw new UsageError('pull takes exactly one reference');
    const ref = reference(positionals[0], 'pull');
    const format = formatFlag(values.format);
    const concurrency = positiveInteger(values.concurrency, '--concurrency', 3);
    const timeoutMs = durationFlag(values.timeout, '--timeout');
    const maxUnpackedBytes = sizeFlag(values['max-unpacked-size'], '--max-unpacked-size');
    const reporter = reporterFor(values);
    return printDigest('pull', ref, values, reporter, async (client, signal) => {
      const pulled = await pull(client, ref, values.output ?? '.', {
        concurrency,
        unpack: !values['no-unpack'],
        mediaTypes: values['media-type'],
        reporter,
        maxUnpackedBytes,
        signal,
        timeoutMs,
      });
      if (format !== 'json') return pulled.digest;
      const repository = `${ref.registry}/${ref.repository}`;
      return JSON.stringify({
        reference: `${repository}@${pulled.digest}`,
        files: pulled.layers.map(({ path, unpacked, descriptor }) => ({
          path: unpacked ? `${path}/` : path,
          reference: `${repository}@${descriptor.digest}`,
          mediaType: descriptor.mediaType,
          digest: descriptor.digest,
          size: descriptor.size,
          annotations: descriptor.annotations ?? {},
        })),
      }, null, 2);
    });
  },
};

export const resolveCommand: Command = {
  name: 'resolve',
  summary: 'print the manifest digest of a reference',
  usage: ['Usage: oras-runtime resolve <reference> [options]', '', OPTIONS_USAGE].join('\n'),
  async run(args) {
    const { values, positionals } = parseCommand(args, {});
    if (positionals.length !== 1) throw new UsageError('resolve takes exactly one reference');
    const ref = reference(positionals[0], 'resolve');
    const timeoutMs = durationFlag(values.timeout, '--timeout');
    return printDigest('resolve', ref, values, reporterFor(values), async (client, signal) => (await client.resolve(ref.repository, ref.manifestReference, { signal, timeoutMs })).digest);
  },
};

export const waitCommand: Command = {
  name: 'wait',
  summary: 'wait until an artifact exists, then print its digest',
  usage: [
    'Usage: oras-runtime wait <reference> --timeout <duration> [options]',
    '',
    'Retries with backoff while the registry answers "not found" or cannot be reached.',
    'Authentication errors end the wait at once; at the deadline a request in flight is cut short.',
    '',
    '  --timeout <duration>       how long to wait, for example 90s, 10m or 1h (default 5m)',
    REGISTRY_USAGE,
  ].join('\n'),
  async run(args) {
    const { values, positionals } = parseCommand(args, {});
    if (positionals.length !== 1) throw new UsageError('wait takes exactly one reference');
    const ref = reference(positionals[0], 'wait');
    const timeoutMs = durationFlag(values.timeout, '--timeout', '5m');
    const reporter = reporterFor(values);
    return printDigest('wait', ref, values, reporter, (client, signal) => waitFor(
      async (deadline) => (await client.resolve(ref.repository, ref.manifestReference, { signal: deadline })).digest,
      { timeoutMs, signal, onRetry: (message) => reporter.event('waiting', { reference: ref.text, message }) },
    ));
  },
};
