import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'fs';
import { join, relative } from 'path';
import { parseAllDocuments } from 'yaml';
import { KubeCluster } from '../util/kube-node';
import { expectValidKubernetes } from '../util/kubernetes-schema';
import { describeOnNode } from '../util/node';
import { PEERS_BIN, run } from '../util/peers';

const root = join(__dirname, '..', '..');

interface Block {
  readonly lang: string;
  readonly text: string;
  /** The `## ` heading the block sits under. */
  readonly section: string;
}

/** The fenced code blocks of README.md, in order. */
function readmeBlocks(): Block[] {
  const blocks: Block[] = [];
  let section = '';
  let open: { lang: string; indent: string; lines: string[] } | undefined;
  for (const line of readFileSync(join(root, 'README.md'), 'utf8').split('\n')) {
    const fence = /^( *)```(.*)$/.exec(line);
    if (open) {
      if (fence && fence[1] === open.indent && fence[2] === '') {
        blocks.push({ lang: open.lang, text: `${open.lines.join('\n')}\n`, section });
        open = undefined;
      } else {
        // Blocks inside list items are indented; the commands are not.
        open.lines.push(line.startsWith(open.indent) ? line.slice(open.indent.length) : line);
      }
    } else if (fence) {
      open = { lang: fence[2].trim(), indent: fence[1], lines: [] };
    } else if (line.startsWith('## ')) {
      section = line.slice(3);
    }
  }
  return blocks;
}

/** Shell blocks that the tests do not run, each with the reason. */
const NOT_RUN: Record<string, string> = {
  'npm ci && npx projen synth:examples': 'the set-up command; .ci/run runs the build, and a test compares dist/ with a fresh synth',
  'bash scripts/install-peers.sh && npm ci && npx projen build': 'the test command itself, which .ci/run runs',
  'npm install cdk8s-oras cdk8s cdk8s-plus-27 constructs': 'cdk8s-oras is not on npm yet; the test compiles the quick start against src/',
  'bash scripts/release-dry-run.sh --offline-image': 'lib-tests/release.test.ts runs its packages part; its image part is runtime/image/build.sh --offline, which every node run builds',
  [[
    'npx projen runtime:image            # bundles if needed, then podman build on node:24.19.0-bookworm-slim',
    'npx projen runtime:image --offline  # on a base made from this machine\'s node and busybox-static (what the tests use)',
  ].join('\n')]: 'docker.io (the default base) is out of reach here; every test run builds the image with runtime/image/build.sh --offline',
};

/**
 * Runs a README shell block as written, in bash with -e, in `cwd`, with the
 * node's kubeconfig and the test peers (kubectl, oras) first on PATH. Every
 * `# prints: <text>` comment must be in the output.
 */
function runBlock(cluster: KubeCluster, block: Block, cwd: string): string {
  const result = run('bash', ['-euo', 'pipefail', '-c', block.text], {
    cwd, env: { ...cluster.env(), PATH: `${PEERS_BIN}:${process.env.PATH}` }, timeoutMs: 900_000,
  });
  if (result.status !== 0) {
    const namespaces = (cluster.getJson(['get', 'namespaces']).items as any[]).map((n) => n.metadata.name).filter((n) => !n.startsWith('kube-'));
    throw new Error(`README block under "${block.section}" failed (${result.status}):\n${block.text}\n${result.output}\n${namespaces.map((n) => cluster.describe(n)).join('\n')}`);
  }
  for (const expected of block.text.matchAll(/# prints: (.+)$/gm)) expect(result.stdout).toContain(expected[1]);
  return result.output;
}

/** A directory inside the repository (so that imports resolve), with dist/ linked to the repository's. */
function scratch(): string {
  const base = join(root, '.cache');
  mkdirSync(base, { recursive: true });
  return mkdtempSync(join(base, 'readme-'));
}

describe('README.md code blocks', () => {
  test('every shell block is run on the node or listed here with its reason', () => {
    const shell = readmeBlocks().filter((b) => b.lang === 'sh');
    const unlisted = shell.filter((b) => !NOT_RUN[b.text.trim()] && !b.section.startsWith('Quick start'));
    expect(unlisted.map((b) => `${b.section}: ${b.text}`)).toEqual([]);
    expect(Object.keys(NOT_RUN).filter((text) => !shell.some((b) => b.text.trim() === text))).toEqual([]);
  });

  test.each(readmeBlocks().filter((b) => b.lang === 'ts').map((b, i) => [i, b.section, b] as const))(
    'TypeScript block %i (%s) compiles and synthesizes valid objects', (_i, _section, block) => {
      const dir = scratch();
      try {
        writeFileSync(join(dir, 'main.ts'), block.text.replace(/from 'cdk8s-oras'/g, `from '${relative(dir, join(root, 'src'))}'`));
        const synth = run(process.execPath, [require.resolve('ts-node/dist/bin'), '--project', join(root, 'scripts', 'tsconfig.json'), 'main.ts'], { cwd: dir });
        expect(synth.output).toBe('');
        const objects = readdirSync(join(dir, 'dist')).flatMap((file) => parseAllDocuments(readFileSync(join(dir, 'dist', file), 'utf8')).map((d) => d.toJSON()))
          .filter(Boolean);
        expect(objects.length).toBeGreaterThan(0);
        expectValidKubernetes(objects);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
});

describeOnNode('README.md quick starts, run as written on the node', (cluster: KubeCluster) => {
  const blocks = readmeBlocks();
  const quickStart = (section: string, lang: string) => blocks.filter((b) => b.section === section && b.lang === lang && !NOT_RUN[b.text.trim()]);
  let dir = '';

  beforeAll(() => {
    dir = scratch();
  });

  afterAll(async () => {
    // Consumers and claims of the CSI driver go before the driver.
    await cluster.deleteCsiClaims();
    cluster.kubectl(['delete', 'namespace', 'experiments', 'my-workflows', '--ignore-not-found', '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
    cluster.kubectl(['delete', '-f', join(root, 'dist', 'oras-csi-driver.yaml'), '-f', join(root, 'dist', 'oras-webhook.yaml'), '--ignore-not-found', '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
    cluster.kubectl(['delete', '-n', 'default', '-f', join(root, 'dist', 'oras-registry.yaml'), '--ignore-not-found', '--wait=true', '--timeout=60s']);
    cluster.kubectl(['delete', 'persistentvolume', 'readme-registry', '--ignore-not-found']);
    rmSync(dir, { recursive: true, force: true });
  });

  test('cdk8s users: main.ts synthesizes, applies, and the sum step prints 5050', () => {
    const [program] = quickStart('Quick start: cdk8s users', 'ts');
    const commands = quickStart('Quick start: cdk8s users', 'sh');
    expect(commands).toHaveLength(1);
    // What "a free PersistentVolume in your cluster" means on this node.
    const volume = join(dir, 'volume');
    mkdirSync(volume, { mode: 0o777 });
    run('chmod', ['0777', volume]);
    cluster.apply({
      objects: [{
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: 'readme-registry' },
        spec: { capacity: { storage: '50Gi' }, accessModes: ['ReadWriteOnce'], persistentVolumeReclaimPolicy: 'Retain', hostPath: { path: volume, type: 'Directory' } },
      }],
    });
    const project = join(dir, 'cdk8s-user');
    mkdirSync(project);
    writeFileSync(join(project, 'main.ts'), program.text.replace(/from 'cdk8s-oras'/g, `from '${relative(project, join(root, 'src'))}'`));
    runBlock(cluster, commands[0], project);
  });

  test('dist/ users: the registry and the hello workflow, the webhook with an annotated pod, the CSI demo', () => {
    const commands = quickStart('Quick start: `kubectl apply -f dist/` users', 'sh');
    expect(commands).toHaveLength(3);
    const work = join(dir, 'dist-user');
    mkdirSync(work);
    symlinkSync(join(root, 'dist'), join(work, 'dist'));
    for (const block of commands) runBlock(cluster, block, work);
  });
});
