import { ApiObject, Cron, Duration, JsonPatch, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';
import { Construct } from 'constructs';
import { CaBundle } from './ca-bundle';
import { dropAllCapabilities, hardenedContainerProps } from './hardening';
import { RUNTIME_UID } from './injection';
import { OrasRuntimeImage } from './runtime-image';

/**
 * How long an `OrasRegistry` keeps workflow runs. A run is an
 * `OrasWorkflow`'s run id, as its step outputs record it; it is as old as
 * its newest output. Of each workflow, the `keepLast` newest runs and the
 * runs younger than `keepFor` stay (either keeps a run); the manifests of
 * the others are deleted through the registry API by a CronJob
 * (`oras-runtime prune`). Artifacts that no workflow pushed are never
 * touched, nor a run's manifest that also carries a tag no run gives.
 *
 * With persistent storage the registry's own garbage collection then frees
 * the blobs: the CronJob restarts the registry Deployment when it deleted
 * something, and an init container runs `registry garbage-collect` before
 * the registry serves again. The Deployment's Recreate strategy stops the
 * old pod first, so no push runs during the collection; a push cut off by
 * the restart fails and leaves nothing behind that a manifest refers to.
 * With emptyDir storage the restart would lose everything: the manifests
 * go, and their blobs stay until the pod is replaced.
 */
export interface RegistryRetention {
  /**
   * Keep each workflow's newest runs, this many.
   *
   * @default - no count limit: `keepFor` alone decides (one of the two is required)
   */
  readonly keepLast?: number;

  /**
   * Keep the runs younger than this.
   *
   * @default - no age limit: `keepLast` alone decides (one of the two is required)
   */
  readonly keepFor?: Duration;

  /**
   * When the prune job runs (UTC).
   *
   * @default Cron.schedule({ minute: '0', hour: '3' }) - every day at 03:00
   */
  readonly schedule?: Cron;

  /**
   * Only repositories whose name starts with one of these, such as a workflow's repository prefix.
   *
   * @default - every repository of the registry
   */
  readonly repositoryPrefixes?: string[];

  /**
   * The image of the prune job.
   *
   * @default OrasRuntimeImage.default()
   */
  readonly runtimeImage?: OrasRuntimeImage;
}

/** What the prune job needs of its registry. */
export interface RetentionTarget {
  readonly name: string;
  readonly namespace?: string;
  readonly host: string;
  readonly plainHttp: boolean;
  readonly insecure: boolean;
  readonly credentials?: kplus.ISecret;
  readonly caBundle?: CaBundle;
  readonly deployment: kplus.Deployment;
  readonly labels: Record<string, string>;
  /** Whether the storage outlives the pod, so that a restart may collect garbage. */
  readonly persistent: boolean;
}

/**
 * Checks a retention policy and adds its CronJob, service account and Role
 * to `scope`. Returns the CronJob.
 * @internal
 */
export function addRetention(scope: Construct, target: RetentionTarget, retention: RegistryRetention, where: string): kplus.CronJob {
  const { keepLast, keepFor } = retention;
  if (keepLast === undefined && keepFor === undefined) {
    throw new Error(`${where}: retention needs keepLast, keepFor or both; without either every run would be deleted.`);
  }
  if (keepLast !== undefined && (!Number.isInteger(keepLast) || keepLast < 1)) {
    throw new Error(`${where}: retention.keepLast must be a whole number of at least 1, not ${keepLast}.`);
  }
  if (keepFor !== undefined && keepFor.toSeconds() < 60) {
    throw new Error(`${where}: retention.keepFor is ${keepFor.toSeconds()} s; keep runs for at least a minute, or a run still pushing could go.`);
  }
  const image = (retention.runtimeImage ?? OrasRuntimeImage.default()).image;
  const metadata = { name: `${target.name}-prune`, namespace: target.namespace, labels: { ...target.labels, 'app.kubernetes.io/component': 'prune' } };

  const volumes: { mount: string; volume: kplus.Volume; flag: string }[] = [];
  if (target.credentials) {
    volumes.push({
      mount: '/oras-registry-auth',
      flag: '--registry-config=/oras-registry-auth/config.json',
      volume: kplus.Volume.fromSecret(scope, 'PruneAuth', target.credentials, { name: 'registry-auth', items: { '.dockerconfigjson': { path: 'config.json' } } }),
    });
  }
  if (target.caBundle) {
    const ca = target.caBundle;
    const items = { [ca.key]: { path: 'ca.crt' } };
    volumes.push({
      mount: '/oras-ca',
      flag: '--ca-file=/oras-ca/ca.crt',
      volume: ca.configMapName !== undefined
        ? kplus.Volume.fromConfigMap(scope, 'PruneCa', kplus.ConfigMap.fromConfigMapName(scope, 'PruneCaMap', ca.configMapName), { name: 'ca', items })
        : kplus.Volume.fromSecret(scope, 'PruneCa', kplus.Secret.fromSecretName(scope, 'PruneCaSecret', ca.secretName!), { name: 'ca', items }),
    });
  }

  const serviceAccount = target.persistent ? new kplus.ServiceAccount(scope, 'PruneServiceAccount', { metadata, automountToken: true }) : undefined;
  if (serviceAccount) {
    // Only the restart that starts the garbage collection: patch on this one Deployment.
    const role = new kplus.Role(scope, 'PruneRole', { metadata });
    role.allow(['patch'], target.deployment);
    new kplus.RoleBinding(scope, 'PruneRoleBinding', { metadata, role }).addSubjects(serviceAccount);
  }

  const args = [
    'prune', target.host,
    ...(keepLast !== undefined ? ['--keep-last', String(keepLast)] : []),
    ...(keepFor !== undefined ? ['--keep-for', `${keepFor.toSeconds()}s`] : []),
    ...(retention.repositoryPrefixes ?? []).flatMap((prefix) => ['--repository-prefix', prefix]),
    ...(target.plainHttp ? ['--plain-http'] : []),
    ...(target.insecure ? ['--insecure'] : []),
    ...volumes.map((v) => v.flag),
    ...(target.persistent ? ['--collect-garbage', `$(POD_NAMESPACE)/${target.deployment.name}`] : []),
  ];
  const cronJob = new kplus.CronJob(scope, 'Prune', {
    metadata,
    schedule: retention.schedule ?? Cron.schedule({ minute: '0', hour: '3' }),
    concurrencyPolicy: kplus.ConcurrencyPolicy.FORBID,
    successfulJobsRetained: 1,
    failedJobsRetained: 3,
    backoffLimit: 2,
    restartPolicy: kplus.RestartPolicy.NEVER,
    serviceAccount,
    automountServiceAccountToken: serviceAccount !== undefined,
    securityContext: { user: RUNTIME_UID, group: RUNTIME_UID, ensureNonRoot: true },
    containers: [{
      name: 'prune',
      image,
      imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
      args,
      envVariables: { POD_NAMESPACE: kplus.EnvValue.fromFieldRef(kplus.EnvFieldPaths.POD_NAMESPACE) },
      volumeMounts: volumes.map((v) => ({ path: v.mount, volume: v.volume, readOnly: true })),
      resources: {
        cpu: { request: kplus.Cpu.millis(50), limit: kplus.Cpu.units(1) },
        memory: { request: Size.mebibytes(64), limit: Size.mebibytes(512) },
      },
      securityContext: hardenedContainerProps(RUNTIME_UID),
    }],
  });
  ApiObject.of(cronJob).addJsonPatch(
    JsonPatch.add('/spec/jobTemplate/spec/template/spec/securityContext/seccompProfile', { type: 'RuntimeDefault' }),
    ...dropAllCapabilities('/spec/jobTemplate/spec/template/spec/containers/0'),
  );
  return cronJob;
}
