import { spawnSync } from 'child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import * as grpc from '@grpc/grpc-js';
import { bindUnixSocket } from '../../../runtime/csi/socket';

describe('bindUnixSocket', () => {
  let dir: string;
  let server: grpc.Server;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'oras-csi-socket-'));
    server = new grpc.Server();
  });
  afterEach(() => {
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  test('creates an owner-only socket, whatever the umask', async () => {
    const umask = process.umask(0);
    try {
      await bindUnixSocket(server, join(dir, 'a.sock'));
    } finally {
      process.umask(umask);
    }
    expect(statSync(join(dir, 'a.sock')).isSocket()).toBe(true);
    expect(statSync(join(dir, 'a.sock')).mode & 0o777).toBe(0o600);
  });

  test('replaces the socket a killed process left behind', async () => {
    const path = join(dir, 'stale.sock');
    // SIGKILL: no chance to unlink it.
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(statSync(path).isSocket()).toBe(true);
    await bindUnixSocket(server, path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  test('leaves anything but a socket alone, and says so', async () => {
    writeFileSync(join(dir, 'file'), 'keep');
    await expect(bindUnixSocket(server, join(dir, 'file'))).rejects.toThrow(`${join(dir, 'file')} exists and is not a socket: remove it, or choose another path`);
    expect(readFileSync(join(dir, 'file'), 'utf8')).toBe('keep');
  });

  test('a missing directory is named', async () => {
    await expect(bindUnixSocket(server, join(dir, 'missing', 'a.sock'))).rejects.toThrow(`cannot serve ${join(dir, 'missing', 'a.sock')}: ${join(dir, 'missing')} is not a directory`);
  });
});
