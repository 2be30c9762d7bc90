import { JsonPatch } from 'cdk8s';
import * as kplus from 'cdk8s-plus-27';

/** Who a hardened container runs as: a uid and gid, or root (only where the job needs it). */
export interface HardenedUser {
  readonly user?: number;
  readonly group?: number;
  /** Refuse to start as root (default true). */
  readonly nonRoot?: boolean;
  /** Default true. */
  readonly readOnlyRootFilesystem?: boolean;
}

/**
 * The securityContext of every container cdk8s-oras writes, as Kubernetes
 * JSON: its user, no privilege escalation, not privileged, every capability
 * dropped, and a read-only root filesystem unless asked otherwise.
 * @internal
 */
export function hardenedSecurityContext(who: HardenedUser = {}): kplus.k8s.SecurityContext {
  return {
    ...(who.user !== undefined ? { runAsUser: who.user } : {}),
    ...(who.group !== undefined ? { runAsGroup: who.group } : {}),
    runAsNonRoot: who.nonRoot ?? true,
    readOnlyRootFilesystem: who.readOnlyRootFilesystem ?? true,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ['ALL'] },
  };
}

/**
 * The same for a cdk8s-plus-27 container. Its props cannot drop
 * capabilities, so `dropAllCapabilities` patches that in.
 * @internal
 */
export function hardenedContainerProps(uid: number): kplus.ContainerSecurityContextProps {
  return { user: uid, group: uid, ensureNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false };
}

/**
 * JSON patches that drop every capability of the containers at these JSON
 * pointers (`/spec/template/spec/containers/0`).
 * @internal
 */
export function dropAllCapabilities(...containers: string[]): JsonPatch[] {
  return containers.map((path) => JsonPatch.add(`${path}/securityContext/capabilities`, { drop: ['ALL'] }));
}
