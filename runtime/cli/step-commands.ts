import { KubeCalls, loadBundled } from './bundled';
import { cancellable, Command, UsageError } from './command';
import { clientFor, durationFlag, parseAnnotations, parseFlags, REGISTRY_OPTIONS, REGISTRY_USAGE, sizeFlag } from './registry-flags';
import { PROVENANCE } from '../../src/provenance';
import { defaultReporter } from '../oci/progress';
import { Reference } from '../oci/reference';
import { pullInputs } from '../step/pull-inputs';
import { pushOutput } from '../step/push-output';

const STEP_OPTIONS = {
  ...REGISTRY_OPTIONS,
  'plain-http-host': { type: 'string', multiple: true },
  'insecure-host': { type: 'string', multiple: true },
  'state': { type: 'string' },
  'debug': { type: 'boolean' },
} as const;

function required(value: string | undefined, flag: string): string {
  if (!value) throw new UsageError(`${flag} is required`);
  return value;
}

async function stepPull(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args,
    options: {
      ...STEP_OPTIONS,
      'timeout': { type: 'string' },
      'input': { type: 'string', multiple: true },
      'max-unpacked-size': { type: 'string' },
      'memo-key': { type: 'string' },
      'memo-to': { type: 'string' },
      'annotation': { type: 'string', multiple: true },
    },
  });
  const memoDefinition = values['memo-key'];
  if (memoDefinition !== undefined && !/^[0-9a-f]{64}$/.test(memoDefinition)) throw new UsageError(`--memo-key must be 64 lowercase hex digits, not "${memoDefinition}"`);
  if ((memoDefinition === undefined) !== (values['memo-to'] === undefined)) throw new UsageError('--memo-key and --memo-to go together');
  const reporter = defaultReporter();
  const inputs = (values.input ?? []).map((pair) => {
    const eq = pair.lastIndexOf('=');
    if (eq <= 0) throw new UsageError(`--input "${pair}" must be <reference>=<directory>`);
    return { reference: pair.slice(0, eq), dir: pair.slice(eq + 1) };
  });
  if (values.debug) reporter.event('settings', { command: 'step pull', inputs, timeout: values.timeout, plainHttp: !!values['plain-http'], insecure: !!values.insecure });
  const settings = {
    state: required(values.state, '--state'),
    timeoutMs: durationFlag(values.timeout, '--timeout', '10m'),
    maxUnpackedBytes: sizeFlag(values['max-unpacked-size'], '--max-unpacked-size'),
    inputs,
    clientFor: (reference: Reference) => clientFor(reference, values),
    reporter,
    memo: memoDefinition === undefined ? undefined : { definition: memoDefinition, to: values['memo-to']!, annotations: parseAnnotations(values.annotation) },
  };
  await cancellable((signal) => pullInputs({ ...settings, signal }));
  return 0;
}

async function stepPush(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args,
    options: {
      ...STEP_OPTIONS,
      'dir': { type: 'string', multiple: true },
      'launcher': { type: 'string', multiple: true },
      'to': { type: 'string' },
      'failure-to': { type: 'string' },
      'no-unpack': { type: 'boolean' },
      'start-timeout': { type: 'string' },
      'annotation': { type: 'string', multiple: true },
      'memoize': { type: 'boolean' },
      'resume': { type: 'string', multiple: true },
      'block': { type: 'string', multiple: true },
    },
  });
  const resume = (values.resume ?? []).map((pair) => {
    const eq = pair.indexOf('=');
    if (eq <= 0 || eq === pair.length - 1) throw new UsageError(`--resume "${pair}" must be <job>=<reference>[,<reference>...]`);
    return { job: pair.slice(0, eq), needs: pair.slice(eq + 1).split(',') };
  });
  const block = values.block ?? [];
  const reporter = defaultReporter();
  const annotations = parseAnnotations(values.annotation);
  const step = annotations[PROVENANCE.STEP];
  if ((resume.length > 0 || block.length > 0) && step === undefined) {
    throw new UsageError(`--resume and --block need --annotation ${PROVENANCE.STEP}=<step>: blocked Jobs are labelled with the step's name`);
  }
  if (values.debug) reporter.event('settings', { command: 'step push', to: values.to, failureTo: values['failure-to'], annotations });
  const settings = {
    state: required(values.state, '--state'),
    dirs: values.dir?.length ? values.dir : [required(undefined, '--dir')],
    launchers: values.launcher ?? [],
    to: required(values.to, '--to'),
    failureTo: values['failure-to'],
    unpack: !values['no-unpack'],
    annotations,
    startTimeoutMs: durationFlag(values['start-timeout'], '--start-timeout', '10m'),
    clientFor: (reference: Reference) => clientFor(reference, values),
    reporter,
    memoize: !!values.memoize,
    advance: step !== undefined && (resume.length > 0 || block.length > 0) ? {
      step,
      resume,
      block,
      jobs: loadBundled<KubeCalls>('oras-runtime-kube.cjs', '../kube/client'),
    } : undefined,
  };
  return cancellable((signal) => pushOutput({ ...settings, signal }));
}

/** The commands the injected containers run. */
export const stepCommand: Command = {
  name: 'step',
  summary: 'what the containers injected into a step pod run',
  usage: [
    'Usage: oras-runtime step pull --state <dir> --timeout <duration> [--input <ref>=<dir>]... [options]',
    '                              [--max-unpacked-size <size>] [--memo-key <hex> --memo-to <ref> [--annotation k=v]...]',
    '       oras-runtime step push --state <dir> --dir <dir>... [--launcher <name>]... --to <ref> [--failure-to <ref>] [--no-unpack]',
    '                              [--annotation k=v]... [--start-timeout <duration>] [--memoize]',
    '                              [--resume <job>=<ref>[,<ref>]...]... [--block <job>]... [options]',
    '',
    'step pull (first container): waits for each input until the deadline (--timeout) and pulls it, then tells the',
    'command wrapper in the state directory that the command may start (inputs.json) or why not (pull.failed);',
    'SIGTERM removes what is staged before it exits. With --memo-key (the step\'s definition), it first looks for an output',
    'made for the same key (memo-<key> in the repository of --memo-to); when there is one, it stores it under --memo-to',
    'and nothing is pulled or run (memoized), else oras-push also tags the output memo-<key> (--memoize).',
    'step push (last container): waits for the command to end; pushes <dir> after exit code 0, or to --failure-to otherwise.',
    'Several --dir are merged (a file in two is an error); with --launcher, it waits for the wrapper of each app container.',
    'Once the output exists (pushed or memoized), it resumes each --resume Job (suspended) whose references all exist;',
    'when it does not, it labels each --block Job oras.land/blocked-by=<step>. Both use the pod\'s service account.',
    '',
    '  --debug                    log the resolved settings',
    '  --plain-http-host <host>   speak plain HTTP to this registry only (repeatable)',
    '  --insecure-host <host>     skip certificate verification for this registry only (repeatable)',
    REGISTRY_USAGE,
  ].join('\n'),
  async run(args) {
    const [verb, ...rest] = args;
    if (verb === 'pull') return stepPull(rest);
    if (verb === 'push') return stepPush(rest);
    throw new UsageError(`step needs "pull" or "push", not ${verb === undefined ? 'nothing' : `"${verb}"`}`);
  },
};
