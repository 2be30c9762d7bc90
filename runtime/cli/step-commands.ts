import { Command, UsageError } from './command';
import { parseDuration } from './duration';
import { clientFor, parseAnnotations, parseFlags, REGISTRY_OPTIONS, REGISTRY_USAGE } from './registry-flags';
import { defaultReporter } from '../oci/progress';
import { pullInputs } from '../step/pull-inputs';
import { pushOutput } from '../step/push-output';

const STEP_OPTIONS = {
  ...REGISTRY_OPTIONS,
  state: { type: 'string' },
  debug: { type: 'boolean' },
} as const;

function duration(value: string | undefined, flag: string, fallback: string): number {
  try {
    return parseDuration(value ?? fallback);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

function required(value: string | undefined, flag: string): string {
  if (!value) throw new UsageError(`${flag} is required`);
  return value;
}

async function stepPull(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args,
    options: { ...STEP_OPTIONS, wrapper: { type: 'string' }, timeout: { type: 'string' }, input: { type: 'string', multiple: true } },
  });
  const reporter = defaultReporter();
  const inputs = (values.input ?? []).map((pair) => {
    const eq = pair.lastIndexOf('=');
    if (eq <= 0) throw new UsageError(`--input "${pair}" must be <reference>=<directory>`);
    return { reference: pair.slice(0, eq), dir: pair.slice(eq + 1) };
  });
  if (values.debug) reporter.event('settings', { command: 'step pull', inputs, timeout: values.timeout, plainHttp: !!values['plain-http'], insecure: !!values.insecure });
  await pullInputs({
    state: required(values.state, '--state'),
    wrapper: required(values.wrapper, '--wrapper'),
    timeoutMs: duration(values.timeout, '--timeout', '10m'),
    inputs,
    clientFor: (reference) => clientFor(reference, values),
    reporter,
  });
  return 0;
}

async function stepPush(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args,
    options: {
      ...STEP_OPTIONS,
      'dir': { type: 'string' },
      'to': { type: 'string' },
      'failure-to': { type: 'string' },
      'no-unpack': { type: 'boolean' },
      'start-timeout': { type: 'string' },
      'annotation': { type: 'string', multiple: true },
    },
  });
  const reporter = defaultReporter();
  const annotations = parseAnnotations(values.annotation);
  if (values.debug) reporter.event('settings', { command: 'step push', to: values.to, failureTo: values['failure-to'], annotations });
  return pushOutput({
    state: required(values.state, '--state'),
    dir: required(values.dir, '--dir'),
    to: required(values.to, '--to'),
    failureTo: values['failure-to'],
    unpack: !values['no-unpack'],
    annotations,
    startTimeoutMs: duration(values['start-timeout'], '--start-timeout', '10m'),
    clientFor: (reference) => clientFor(reference, values),
    reporter,
  });
}

/** The commands the injected containers run. */
export const stepCommand: Command = {
  name: 'step',
  summary: 'what the containers injected into a step pod run',
  usage: [
    'Usage: oras-runtime step pull --state <dir> --wrapper <file> --timeout <duration> [--input <ref>=<dir>]... [options]',
    '       oras-runtime step push --state <dir> --dir <dir> --to <ref> [--failure-to <ref>] [--no-unpack]',
    '                              [--annotation k=v]... [--start-timeout <duration>] [options]',
    '',
    'step pull (init container): installs the command wrapper, waits for each input until the deadline and pulls it.',
    'step push (sidecar): waits for the command to end; pushes <dir> after exit code 0, or to --failure-to otherwise.',
    '',
    '  --debug                    log the resolved settings',
    REGISTRY_USAGE,
  ].join('\n'),
  async run(args) {
    const [verb, ...rest] = args;
    if (verb === 'pull') return stepPull(rest);
    if (verb === 'push') return stepPush(rest);
    throw new UsageError(`step needs "pull" or "push", not ${verb === undefined ? 'nothing' : `"${verb}"`}`);
  },
};
