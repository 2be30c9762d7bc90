import { KubeCalls, loadBundled } from './bundled';
import { cancellable, Command, UsageError } from './command';
import { clientFor, durationFlag, parseFlags, positiveInteger, REGISTRY_OPTIONS, REGISTRY_USAGE } from './registry-flags';
import { defaultReporter } from '../oci/progress';
import { parseReference } from '../oci/reference';
import { prune } from '../retention/prune';

export const pruneCommand: Command = {
  name: 'prune',
  summary: 'delete the outputs of expired workflow runs from a registry',
  usage: [
    'Usage: oras-runtime prune <registry> (--keep-last <n> | --keep-for <duration>)... [options]',
    '',
    'A run is a workflow\'s run id, as its step outputs record it (annotations org.cdk8s-oras.workflow',
    'and org.cdk8s-oras.run-id); it is as old as its newest output. Of each workflow, the newest',
    '--keep-last runs and the runs younger than --keep-for stay; the other runs\' manifests are deleted',
    'through the registry API (their tags go with them). A manifest that also has a tag no run gives',
    'stays, and manifests without a run are never touched. The blobs stay until the registry\'s garbage',
    'collection: --collect-garbage restarts the registry Deployment, whose init container collects',
    'before the registry serves again.',
    '',
    '  --keep-last <n>              keep each workflow\'s n newest runs',
    '  --keep-for <duration>        keep the runs younger than this, for example 168h',
    '  --repository-prefix <p>      only repositories whose name starts with p (repeatable; default all)',
    '  --dry-run                    print what would be deleted, delete nothing',
    '  --collect-garbage <ns>/<deployment>  after deleting, restart that registry Deployment (in cluster)',
    '  --kubeconfig <file>          for --collect-garbage outside a cluster',
    REGISTRY_USAGE,
  ].join('\n'),
  async run(args) {
    const { values, positionals } = parseFlags({
      args,
      allowPositionals: true,
      options: {
        ...REGISTRY_OPTIONS,
        'keep-last': { type: 'string' },
        'keep-for': { type: 'string' },
        'repository-prefix': { type: 'string', multiple: true },
        'dry-run': { type: 'boolean' },
        'collect-garbage': { type: 'string' },
        'kubeconfig': { type: 'string' },
      },
    });
    if (positionals.length !== 1) throw new UsageError('prune takes exactly one registry (host[:port])');
    const host = positionals[0];
    if (host.includes('/')) throw new UsageError(`"${host}" is not a registry host: give host[:port] only; --repository-prefix narrows the repositories`);
    const keepLast = values['keep-last'] === undefined ? undefined : positiveInteger(values['keep-last'], '--keep-last', 1);
    const keepForMs = durationFlag(values['keep-for'], '--keep-for');
    if (keepLast === undefined && keepForMs === undefined) throw new UsageError('give --keep-last, --keep-for or both; without either every run would go');
    const target = values['collect-garbage'];
    const [namespace, deployment, ...extra] = target?.split('/') ?? [];
    if (target !== undefined && (!namespace || !deployment || extra.length > 0)) throw new UsageError(`--collect-garbage must be <namespace>/<deployment>, not "${target}"`);
    const reporter = defaultReporter();
    const client = clientFor(parseReference(`${host}/probe:latest`), values);
    try {
      const result = await cancellable((signal) => prune(client, {
        keepLast, keepForMs, prefixes: values['repository-prefix'], dryRun: values['dry-run'], reporter, signal,
      }));
      reporter.event('pruned', {
        runsKept: result.runs.filter((r) => r.kept).length,
        runsExpired: result.runs.filter((r) => !r.kept).length,
        manifestsDeleted: values['dry-run'] ? 0 : result.deleted.length,
      });
      if (target !== undefined && result.deleted.length > 0 && !values['dry-run']) {
        const restart = loadBundled<KubeCalls>('oras-runtime-kube.cjs', '../kube/client');
        await restart.requestCollection(namespace, deployment, values.kubeconfig);
        reporter.event('garbage-collection', { deployment: target, message: 'the registry restarts; its init container collects unreferenced blobs before it serves' });
      }
      return 0;
    } finally {
      client.close();
    }
  },
};
