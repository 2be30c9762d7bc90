import { readFileSync } from 'fs';
import { join } from 'path';
import { OrasRuntimeImage } from '../src';

const version = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')).version;

describe('OrasRuntimeImage', () => {
  test('the default is the project repository tagged with the package version', () => {
    expect(OrasRuntimeImage.default().image).toBe(`ghcr.io/cdk8s-oras/oras-runtime:${version}`);
    expect(version).not.toBe('0.0.0');
  });

  test('fromRepository keeps the package version', () => {
    expect(OrasRuntimeImage.fromRepository('mirror.example.com/oras-runtime').image).toBe(`mirror.example.com/oras-runtime:${version}`);
    expect(OrasRuntimeImage.fromRepository('localhost:5000/oras-runtime').image).toBe(`localhost:5000/oras-runtime:${version}`);
    expect(() => OrasRuntimeImage.fromRepository('mirror.example.com/oras-runtime:1.0')).toThrow(/without tag or digest/);
  });

  test('fromImage must be pinned', () => {
    expect(OrasRuntimeImage.fromImage('localhost:5000/rt:dev-1').image).toBe('localhost:5000/rt:dev-1');
    expect(() => OrasRuntimeImage.fromImage('localhost:5000/rt')).toThrow(/not pinned/);
    expect(() => OrasRuntimeImage.fromImage('rt:latest')).toThrow(/not pinned/);
  });
});
