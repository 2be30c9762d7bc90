import { join } from 'path';
import { describeWithPeers, requirePeer, run } from '../../util/peers';

const bundle = join(__dirname, '..', '..', '..', 'runtime', 'build', 'oras-runtime.cjs');

/** The oras v1.2.3 flags we do not have, each with the reason. Any other flag of oras must work here. */
const OMITTED: Record<'push' | 'pull' | 'login' | 'logout', Record<string, string>> = {
  push: {
    '--cert-file': 'client certificates (mutual TLS) are not supported yet',
    '--key-file': 'client certificates (mutual TLS) are not supported yet',
    '--config': 'artifacts here carry the empty config; a custom config blob is not supported',
    '--disable-path-validation': 'titles are always the relative paths given; nothing to disable',
    '--header': 'custom request headers are not supported yet',
    '--identity-token': 'refresh tokens come from the docker config (credential helpers), never from the command line',
    '--identity-token-stdin': 'refresh tokens come from the docker config (credential helpers)',
    '--image-spec': 'manifests are always OCI image manifests v1.1 with artifactType',
    '--oci-layout': 'the target is always a registry, never an OCI image layout',
    '--resolve': 'DNS overrides are not supported; use the cluster\'s DNS or /etc/hosts',
    '--template': 'Go templates have no equivalent here; --format json is supported',
  },
  pull: {
    '--allow-path-traversal': 'refused on purpose: a pull never writes outside its output directory',
    '--cert-file': 'client certificates (mutual TLS) are not supported yet',
    '--key-file': 'client certificates (mutual TLS) are not supported yet',
    '--config': 'the config blob is not written out',
    '--header': 'custom request headers are not supported yet',
    '--identity-token': 'refresh tokens come from the docker config (credential helpers), never from the command line',
    '--identity-token-stdin': 'refresh tokens come from the docker config (credential helpers)',
    '--include-subject': 'referrers and subjects are not followed',
    '--keep-old-files': 'existing files are replaced, as oras does by default; keeping them is not supported yet',
    '--oci-layout': 'the source is always a registry, never an OCI image layout',
    '--platform': 'ORAS artifacts have no platform; an index is pulled whole',
    '--resolve': 'DNS overrides are not supported; use the cluster\'s DNS or /etc/hosts',
    '--template': 'Go templates have no equivalent here; --format json is supported',
  },
  login: {
    '--cert-file': 'client certificates (mutual TLS) are not supported yet',
    '--key-file': 'client certificates (mutual TLS) are not supported yet',
    '--header': 'custom request headers are not supported yet',
    '--identity-token': 'login stores a user name and password; identity tokens are not supported',
    '--identity-token-stdin': 'login stores a user name and password; identity tokens are not supported',
    '--resolve': 'DNS overrides are not supported; use the cluster\'s DNS or /etc/hosts',
  },
  logout: {},
};

/** Fewer flags than this in `oras <verb> --help` means its help was not read right. */
const AT_LEAST: Record<keyof typeof OMITTED, number> = { push: 20, pull: 20, login: 15, logout: 2 };

interface OrasFlag {
  readonly long: string;
  readonly short?: string;
  /** The value's type as oras prints it (string, int, stringArray, path...), or undefined for a switch. */
  readonly type?: string;
}

/** The flags of `oras <verb> --help`, read from the real CLI. */
function orasFlags(verb: string): OrasFlag[] {
  const help = run(requirePeer('oras'), [verb, '--help']).stdout;
  const flags: OrasFlag[] = [];
  for (const line of help.slice(help.indexOf('Flags:')).split('\n')) {
    const match = /^\s+(?:-(\w), )?(--[\w-]+)(?: (\S+))?\s{2,}/.exec(line);
    if (match) flags.push({ long: match[2], short: match[1] ? `-${match[1]}` : undefined, type: match[3] });
  }
  return flags;
}

/** A value the flag accepts, so that parsing gets past it. */
function sample(flag: OrasFlag): string[] {
  if (flag.type === undefined) return [];
  if (flag.type === 'int') return ['2'];
  if (flag.long === '--format') return ['json'];
  if (flag.long === '--annotation') return ['a=b'];
  return ['/nonexistent/value'];
}

describeWithPeers(['oras'], 'oras CLI parity: the flags of oras v1.2.3 push, pull, login and logout', () => {
  const cli = (args: string[]) => run(process.execPath, [bundle, ...args], { input: 'secret\n' });

  test.each(['push', 'pull', 'login', 'logout'] as const)('oras %s: every flag is ours or omitted with a reason', (verb) => {
    const flags = orasFlags(verb);
    expect(flags.length).toBeGreaterThan(AT_LEAST[verb]);
    const missing: string[] = [];
    for (const flag of flags) {
      if (flag.long === '--help') continue;
      if (OMITTED[verb][flag.long] !== undefined) continue;
      for (const spelling of [flag.long, ...(flag.short ? [flag.short] : [])]) {
        // An unreachable registry: the flag must get past the parser, to the reference or the network.
        const args = [verb, 'INVALID REFERENCE', spelling, ...sample(flag)];
        const result = cli(args);
        if (/unknown option|does not take an argument|argument missing/i.test(result.stderr)) missing.push(`${spelling}: ${result.stderr.trim()}`);
      }
    }
    expect(missing).toEqual([]);
  });

  test.each(['push', 'pull', 'login', 'logout'] as const)('oras %s: every omission names a flag oras has', (verb) => {
    const longs = new Set(orasFlags(verb).map((flag) => flag.long));
    expect(Object.keys(OMITTED[verb]).filter((flag) => !longs.has(flag))).toEqual([]);
  });
});
