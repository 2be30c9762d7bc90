import { Command, signalExitCode, UsageError } from './command';
import { csiCommand } from './csi-command';
import { loginCommand, logoutCommand } from './login-command';
import { pullCommand, pushCommand, resolveCommand, waitCommand } from './oci-commands';
import { pruneCommand } from './prune-command';
import { stepCommand } from './step-commands';
import { closest } from './suggest';
import { RUNTIME_VERSION } from './version';
import { webhookCommand } from './webhook-command';
import { CancelledError } from '../oci/errors';
import { printable } from '../oci/printable';

/** Every sub-command. */
const COMMANDS: readonly Command[] = [
  pushCommand, pullCommand, resolveCommand, waitCommand, loginCommand, logoutCommand, stepCommand, pruneCommand, webhookCommand, csiCommand,
];

function usage(): string {
  const width = Math.max(8, ...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    `oras-runtime ${RUNTIME_VERSION}: the in-cluster program of cdk8s-oras`,
    '',
    'Usage: oras-runtime <command> [options]',
    '       oras-runtime --version | --help',
    '',
    'Commands:',
    ...(lines.length > 0 ? lines : ['  (none in this build)']),
    '',
    'Run "oras-runtime <command> --help" for the options of a command.',
  ].join('\n');
}

/** An error and the errors it wraps (`cause`). */
function causes(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && chain.length < 10; e = (e as { cause?: unknown } | null)?.cause) chain.push(e);
  return chain;
}

export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    process.stdout.write(usage() + '\n');
    return first === undefined ? 2 : 0;
  }
  if (first === '--version' || first === '-v' || first === 'version') {
    process.stdout.write(RUNTIME_VERSION + '\n');
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === first);
  if (!command) {
    const suggestion = first.startsWith('-') ? undefined : closest(first, COMMANDS.map((c) => c.name));
    process.stderr.write(`oras-runtime: unknown command "${first}"${suggestion ? `; did you mean "${suggestion}"?` : '.'} Run "oras-runtime --help" for the list.\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(command.usage + '\n');
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    // By name: the webhook bundle has its own copy of the class.
    if (err instanceof UsageError || (err as Error | undefined)?.name === 'UsageError') {
      process.stderr.write(`oras-runtime ${command.name}: ${printable((err as Error).message)}\nRun "oras-runtime ${command.name} --help" for usage.\n`);
      return 2;
    }
    process.stderr.write(`oras-runtime: ${printable(err instanceof Error ? err.message : String(err))}\n`);
    // Stopped by a signal, after cleaning up.
    const cancelled = causes(err).find((e): e is CancelledError => e instanceof CancelledError);
    return cancelled?.signal ? signalExitCode(cancelled.signal) : 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (err) => {
      process.stderr.write(`oras-runtime: ${String(err instanceof Error ? err.stack : err).split('\n').map(printable).join('\n')}\n`);
      process.exitCode = 1;
    },
  );
}
