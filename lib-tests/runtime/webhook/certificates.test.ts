import { X509Certificate } from 'crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { CertificateProblem, CertificateReason, issueCertificates, problemWith } from '../../../runtime/webhook/certificates';
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

  test('says why a stored set cannot serve, as a reason callers decide by', () => {
    const reason = (stored: Partial<typeof set>, until = new Date(), who = identity) => {
      const problem = problemWith(stored, who, until);
      return problem && { reason: problem.reason, caUsable: problem.caUsable, message: problem.message };
    };
    expect(reason({})).toEqual({ reason: CertificateReason.MISSING, caUsable: false, message: 'no certificate yet' });
    expect(reason(set, new Date(Date.now() + 400 * DAY))).toEqual({
      reason: CertificateReason.SERVING_EXPIRES, caUsable: true, message: expect.stringMatching(/^the serving certificate expires on /),
    });
    expect(reason(set, new Date(), { dnsNames: ['other.svc'], ipAddresses: [] })).toEqual({
      reason: CertificateReason.NAMES_MISSING, caUsable: true, message: 'the serving certificate lacks DNS:other.svc',
    });
    const other = issueCertificates(identity);
    expect(reason({ ...set, caCert: other.caCert })).toEqual({
      reason: CertificateReason.NOT_SIGNED_BY_CA, caUsable: false, message: 'the serving certificate is not signed by the stored CA',
    });
    expect(reason({ ...set, cert: 'garbage' })).toEqual({
      reason: CertificateReason.UNREADABLE, caUsable: false, message: expect.stringMatching(/^the stored certificates cannot be read/),
    });
  });

  test('when the CA expires too, the CA is replaced, not kept for a new serving certificate', () => {
    const caExpiry = new Date(new X509Certificate(set.caCert).validTo);
    const problem = problemWith(set, identity, new Date(caExpiry.getTime() + DAY));
    expect(problem).toBeInstanceOf(CertificateProblem);
    expect(problem?.reason).toBe(CertificateReason.CA_EXPIRES);
    expect(problem?.caUsable).toBe(false);
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
