import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { parse } from 'yaml';
import { OrasRuntimeImage } from '../src';
import { describeWithPeers, run } from './util/peers';

const root = join(__dirname, '..');
const workflowPath = join(root, '.github', 'workflows', 'release.yml');
const version: string = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;

interface Step {
  readonly id?: string;
  readonly name?: string;
  readonly uses?: string;
  readonly run?: string;
  readonly with?: Record<string, unknown>;
  readonly env?: Record<string, string>;
}
interface Job {
  readonly needs?: string | string[];
  readonly permissions?: Record<string, string>;
  readonly steps: Step[];
}

const workflow = () => parse(readFileSync(workflowPath, 'utf8')) as { on: any; permissions: unknown; jobs: Record<string, Job> };
const step = (job: string, name: string): Step => {
  const found = workflow().jobs[job].steps.find((s) => s.name === name || s.id === name || s.uses?.startsWith(name));
  if (!found) throw new Error(`no step "${name}" in job ${job}`);
  return found;
};
/** Runs a step's `run:` script in bash -e, as GitHub does, with `env` and a GITHUB_OUTPUT file; returns its status and outputs. */
function runStep(script: string, env: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'oras-release-step-'));
  try {
    const output = join(dir, 'output');
    const result = run('bash', ['-e', '-c', script], { cwd: root, env: { ...process.env, ...env, GITHUB_OUTPUT: output } });
    const outputs = Object.fromEntries(readFileSync(output, { encoding: 'utf8', flag: 'a+' }).split('\n').filter(Boolean).map((l) => l.split(/=(.*)/s).slice(0, 2)));
    return { status: result.status, outputs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the release workflow (.github/workflows/release.yml)', () => {
  test('runs on version tags, after the whole CI, and publishes each package from that one build', () => {
    const { on, jobs } = workflow();
    expect(on).toEqual({ push: { tags: ['v*.*.*'] } });
    expect(jobs.test.steps.map((s) => s.run).join('\n')).toMatch(/CI=true bash \.ci\/run/);
    const needs = Object.fromEntries(Object.entries(jobs).map(([name, job]) => [name, [job.needs ?? []].flat()]));
    expect(needs).toEqual({ test: [], packages: ['test'], npm: ['packages'], pypi: ['packages'], image: ['test'], release: ['npm', 'pypi', 'image'] });
    // The packages job runs exactly what the test below runs.
    expect(step('packages', 'Build, then check the packages as the release would publish them').run).toBe('bash scripts/release-dry-run.sh --packages-only');
  });

  test('least privilege: no permission by default; OIDC only where publishing with provenance needs it', () => {
    const { permissions, jobs } = workflow();
    expect(permissions).toEqual({});
    const granted = Object.fromEntries(Object.entries(jobs).map(([name, job]) => [name, job.permissions]));
    expect(granted).toEqual({
      test: { contents: 'read' },
      packages: { contents: 'read' },
      npm: { 'contents': 'read', 'id-token': 'write' },
      pypi: { 'id-token': 'write' },
      image: { contents: 'read', packages: 'write' },
      release: { contents: 'write' },
    });
  });

  test('every action is pinned to a commit, with its version beside it', () => {
    const uses = readFileSync(workflowPath, 'utf8').split('\n').filter((l) => /^\s*(- )?uses:/.test(l));
    expect(uses.length).toBeGreaterThan(10);
    expect(uses.filter((l) => !/uses: [\w.-]+\/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$/.test(l.trim()))).toEqual([]);
  });

  test('npm with provenance, PyPI by trusted publishing, the image for amd64 and arm64 with SLSA provenance and an SBOM', () => {
    expect(workflow().jobs.npm.steps.map((s) => s.run).filter(Boolean)).toEqual(['npm publish dist-packages/js/*.jsii.tgz --provenance --access public']);
    expect(step('pypi', 'pypa/gh-action-pypi-publish').with).toEqual({ 'packages-dir': 'dist-packages/python/' });
    const build = step('image', 'docker/build-push-action').with!;
    expect(build).toMatchObject({
      file: 'runtime/Dockerfile',
      platforms: 'linux/amd64,linux/arm64',
      provenance: 'mode=max',
      sbom: true,
      push: true,
      tags: '${{ steps.meta.outputs.image }}',
      ['build-args']: 'VERSION=${{ steps.meta.outputs.version }}\n',
    });
  });

  test('its tag check and image name, run here: v<version> passes and names the image the constructs reference; another tag fails', () => {
    const check = step('test', 'The tag names the package version').run!;
    expect(runStep(check, { GITHUB_REF_NAME: `v${version}` }).status).toBe(0);
    expect(runStep(check, { GITHUB_REF_NAME: 'v99.0.0' }).status).not.toBe(0);
    const meta = runStep(step('image', 'The tag the constructs reference').run!, { GITHUB_REF_NAME: `v${version}` });
    expect(meta).toEqual({ status: 0, outputs: { version, image: OrasRuntimeImage.default().image } });
  });
});

// The image half of the dry run is lib-tests/runtime-image.test.ts (the same runtime/image/build.sh).
describeWithPeers(['python3'], 'scripts/release-dry-run.sh (what the packages job runs)', () => {
  test('the npm package holds the library, its docs and the runtime bundles, and nothing else; npm publish --dry-run and twine check --strict pass', () => {
    const result = run('bash', [join(root, 'scripts', 'release-dry-run.sh'), '--packages-only', '--no-compile'], { cwd: root, timeoutMs: 600_000 });
    expect({ status: result.status, stdout: result.stdout.slice(-300) }).toEqual({ status: 0, stdout: expect.stringContaining(`ready to release ${version}`) });
    expect(result.output).toContain(`cdk8s-oras@${version}`);
    const files = [...result.output.matchAll(/npm notice [\d.]+[kMG]?B (\S+)/g)].map((m) => m[1]);
    expect(files).toEqual(expect.arrayContaining(['.jsii', 'API.md', 'README.md', 'LICENSE', 'package.json', 'lib/index.js', 'lib/index.d.ts',
      'bin/oras-runtime.js', 'runtime/build/oras-runtime.cjs', 'runtime/build/oras-runtime-csi.cjs']));
    expect(files.filter((f) => /^(src|lib-tests|examples|dist|bench|scripts|\.cache|\.github|runtime\/(?!build\/))\b/.test(f))).toEqual([]);
    expect(result.output.match(/Checking dist-packages\/python\/\S+: \S*PASSED/g)).toHaveLength(2);
  });
});
