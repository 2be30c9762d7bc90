import { cdk8s, javascript } from 'projen';

const CDK8S_VERSION = '2.70.106';
const CDK8S_PLUS_VERSION = '2.9.5';
const CONSTRUCTS_VERSION = '10.4.2';

const project = new cdk8s.ConstructLibraryCdk8s({
  name: 'cdk8s-oras',
  description: 'cdk8s constructs for an in-cluster ORAS artifact cache: registry, workflow steps, admission webhook and CSI driver.',
  author: 'cdk8s-oras',
  authorAddress: 'cdk8s-oras@users.noreply.github.com',
  repositoryUrl: 'https://github.com/cdk8s-oras/cdk8s-oras.git',
  keywords: ['cdk8s', 'kubernetes', 'oras', 'oci', 'registry', 'workflow', 'csi'],
  defaultReleaseBranch: 'main',
  packageManager: javascript.NodePackageManager.NPM,
  projenrcTs: true,
  jsiiVersion: '~6.0.0',
  cdk8sVersion: CDK8S_VERSION,
  constructsVersion: CONSTRUCTS_VERSION,
  cdk8sPlusVersionPinning: true,
  peerDeps: [`cdk8s-plus-27@^${CDK8S_PLUS_VERSION}`],
  devDeps: [
    `cdk8s-plus-27@${CDK8S_PLUS_VERSION}`,
    // The cdk8s-plus of the current `cdk8s init` template: lib-tests/plus33.test.ts proves apps on it can use every construct.
    'cdk8s-plus-33@2.5.57',
    // Bundled into the runtime (client-node 1.4 is the line that runs on Node 20).
    '@kubernetes/client-node@~1.4.0',
    'node-forge@^1.3.1',
    '@grpc/grpc-js@^1.14.0',
    'protobufjs@^7.5.0',
    '@types/node-forge@^1.3.14',
    'esbuild@^0.28.0',
    'fast-json-patch@^3.1.1',
    'yaml@^2.8.0',
  ],
  // dist/ holds the committed install bundles; packages go elsewhere.
  artifactsDirectory: 'dist-packages',
  // jsii targets: Python (tested in lib-tests/python.test.ts with cdk8s from PyPI).
  publishToPypi: { distName: 'cdk8s-oras', module: 'cdk8s_oras' },
  testdir: 'lib-tests',
  github: false,
  release: false,
  eslintOptions: {
    dirs: ['src'],
    devdirs: ['lib-tests', 'examples', 'scripts', 'runtime', 'bench'],
  },
  jestOptions: {
    updateSnapshot: javascript.UpdateSnapshot.NEVER,
    passWithNoTests: false,
    jestConfig: {
      // Tests that start registries and pods share one machine; run files serially.
      maxWorkers: 1,
      testTimeout: 120_000,
      // The tests on a Kubernetes node run apart (test:node), around one node.
      testPathIgnorePatterns: ['/node_modules/', '<rootDir>/lib-tests/node/'],
    },
  },
  gitignore: ['/runtime/build/', '/.cache/', '/dist-packages/'],
});

project.package.addVersion('0.1.0');
for (const p of ['/runtime/*', '!/runtime/build/', '/examples/', '/bench/', '/.ci/', '/scripts/', '/dist-packages/', '/dist/', '/.dockerignore', '/.kube-linter.yaml', '/.cache/', '/rosetta/']) {
  project.addPackageIgnore(p);
}
project.addFields({ bin: { 'oras-runtime': 'bin/oras-runtime.js' } });

// The runtime is a separate program: type-checked with its own tsconfig and bundled with esbuild.
const runtimeCheck = project.addTask('runtime:check', {
  description: 'Type-check the runtime program',
  exec: 'tsc -p runtime/tsconfig.json --noEmit',
});
const runtimeBundle = project.addTask('runtime:bundle', {
  description: 'Bundle the runtime program into runtime/build/oras-runtime.cjs',
  exec: 'node runtime/bundle.mjs',
});
project.postCompileTask.spawn(runtimeCheck);
project.postCompileTask.spawn(runtimeBundle);

// The runtime image, from runtime/Dockerfile, tagged as OrasRuntimeImage.default() references it.
// It bundles first when the bundles are stale. --offline (or ORAS_RUNTIME_BASE_IMAGE) picks the base.
project.addTask('runtime:image', {
  description: 'Build the runtime image from runtime/Dockerfile (--offline: on a base made from this machine\'s node)',
  exec: 'bash runtime/image/build.sh',
  receiveArgs: true,
});

project.addTask('bench:oci', {
  description: 'Benchmark oras-runtime push/pull against the oras CLI on one registry',
  exec: 'ts-node --project bench/tsconfig.json bench/oci.ts',
  receiveArgs: true,
});

project.addTask('bench:node', {
  description: 'Benchmark on a Kubernetes node: step overhead against bare Jobs, and kubectl apply -f dist/ to Ready (as root)',
  exec: 'ts-node --project bench/tsconfig.json bench/node.ts',
  receiveArgs: true,
});
project.addTask('bench:dag', {
  description: 'Benchmark on a Kubernetes node: a 200-step DAG with suspended Jobs against pods that wait for their inputs (as root)',
  exec: 'ts-node --project bench/tsconfig.json bench/dag.ts',
  receiveArgs: true,
});
project.addTask('bench:synth', {
  description: 'Benchmark the synth time of a generated 500-step workflow',
  exec: 'ts-node --project bench/tsconfig.json bench/synth.ts',
  receiveArgs: true,
});

project.addTask('bench:webhook', {
  description: 'Benchmark admission latency at 200 and 1000 requests per second',
  exec: 'ts-node --project bench/tsconfig.json bench/webhook.ts',
  receiveArgs: true,
});

project.addTask('bench:csi', {
  description: 'Benchmark CSI publish latency, cold publish vs raw pull, and 50 concurrent publishes (as root)',
  exec: 'ts-node --project bench/tsconfig.json bench/csi.ts',
  receiveArgs: true,
});

// Install bundles in dist/ are synthesized from examples/.
project.addTask('synth:examples', {
  description: 'Synthesize every example into dist/',
  exec: 'ts-node --project scripts/tsconfig.json scripts/synth-examples.ts',
});

// Tests are type-checked whole (ts-jest checks one file at a time).
project.testTask.prependExec('tsc -p lib-tests/tsconfig.json --noEmit');

// End to end on a real single-node cluster that lib-tests/node/global-setup.ts
// brings up once for all of its files (as root; CI=true fails without its peers).
const testNode = project.addTask('test:node', {
  description: 'Run lib-tests/node on a real Kubernetes node (kubelet, containerd, kube-apiserver, ...)',
  exec: 'jest --config lib-tests/node/jest.config.json --runInBand',
  receiveArgs: true,
});
project.testTask.spawn(testNode);

// File modes, tar headers and digests need bit operations.
project.eslint?.addRules({ 'no-bitwise': 'off' });

// dist/ holds committed install bundles, not build output.
project.gitignore.removePatterns('/dist/');

// The API in Python too, with the examples translated by jsii-rosetta (compiled against rosetta/default.ts-fixture).
project.tasks.tryFind('docgen')!.exec('jsii-docgen -l python -o API.python.md');

project.synth();
