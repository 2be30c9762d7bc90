import { chmod, lstat, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';

/**
 * Serves `server` on the unix socket at the absolute `path`. As
 * node-driver-registrar does, a socket left behind by an earlier run is
 * removed first; the new one is owner-only (the kubelet connects as root).
 */
export async function bindUnixSocket(server: grpc.Server, path: string): Promise<void> {
  const existing = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (existing && !existing.isSocket()) throw new Error(`${path} exists and is not a socket: remove it, or choose another path`);
  if (existing) await rm(path);
  // Else the bind fails with EACCES, which misleads.
  if (!(await stat(dirname(path)).catch(() => undefined))?.isDirectory()) throw new Error(`cannot serve ${path}: ${dirname(path)} is not a directory`);
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  await chmod(path, 0o600);
}
