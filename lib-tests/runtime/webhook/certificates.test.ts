import { X509Certificate } from 'crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { issueCertificates, problemWith } from '../../../runtime/webhook/certificates';
import { describeWithPeers, requirePeer, run } from '../../util/peers';

const identity = { dnsNames: ['oras-webhook.oras-system.svc', 'oras-webhook.oras-system.svc.cluster.local'], ipAddresses: ['127.0.0.1'] };
const DAY = 24 * 3600 * 1000;

describe('webhook certificates', () => {
  const set = issueCertificates(identity);

  test('a CA and a serving certificate with every name, valid for a year', () => {
    const cert = new X509Certificate(set.cert);
    expect(cert.subjectAltName).toBe('DNS:oras-webhook.oras-system.svc, DNS:oras-webhook.oras-system.svc.cluster.local, IP Address:127.0.0.1');
    expect(cert.verify(new X509Certificate(set.caCert).publicKey)).toBe(true);
    expect(new Date(cert.validTo).getTime() - Date.now()).toBeGreaterThan(360 * DAY);
    expect(new X509Certificate(set.caCert).ca).toBe(true);
    expect(problemWith(set, identity, new Date(Date.now() + 30 * DAY))).toBeUndefined();
  });

  test('renewal keeps the CA and signs a new certificate', () => {
    const renewed = issueCertificates(identity, { cert: set.caCert, key: set.caKey });
    expect(renewed.caCert).toBe(set.caCert);
    expect(renewed.cert).not.toBe(set.cert);
    expect(problemWith(renewed, identity, new Date())).toBeUndefined();
  });

  test('says why a stored set cannot serve', () => {
    expect(problemWith({}, identity, new Date())).toBe('no certificate yet');
    expect(problemWith(set, identity, new Date(Date.now() + 400 * DAY))).toMatch(/^the serving certificate expires on /);
    expect(problemWith(set, { dnsNames: ['other.svc'], ipAddresses: [] }, new Date())).toBe('the serving certificate lacks DNS:other.svc');
    const other = issueCertificates(identity);
    expect(problemWith({ ...set, caCert: other.caCert }, identity, new Date())).toBe('the serving certificate is not signed by the stored CA');
    expect(problemWith({ ...set, cert: 'garbage' }, identity, new Date())).toMatch(/^the stored certificates cannot be read/);
  });
});

describeWithPeers(['openssl'], 'webhook certificates with openssl', () => {
  test('openssl verifies the chain for the service name', () => {
    const set = issueCertificates(identity);
    const dir = mkdtempSync(join(tmpdir(), 'oras-cert-'));
    try {
      writeFileSync(join(dir, 'ca.crt'), set.caCert);
      writeFileSync(join(dir, 'tls.crt'), set.cert);
      const result = run(requirePeer('openssl'), ['verify', '-CAfile', join(dir, 'ca.crt'), '-verify_hostname', 'oras-webhook.oras-system.svc', join(dir, 'tls.crt')]);
      expect(result.stdout).toContain(': OK');
      expect(result.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
